"""What the instance list page costs with ten thousand instances.

    python bench/instance_list.py [--instances 10000] [--requests 30]

One portal process; the instances are written straight into etcd (tests/support/fleet.py)
on a node no agent runs, each with a NIC's address and some with tags, so every column and
filter has something to show. Measured from a logged-in client on loopback, in the same run:

  baseline   the first page with 10 instances
  then, with --instances: the first page (newest first), sorted by name, a search by the
             start of an address, a state filter, page 100,
the first page again with an instance changed before each request (nothing kept from the
last one), and the portal's memory (RSS) before and after. Only one page is ever rendered:
the list is sorted and filtered over the live hub's mirror (parsed records cached by
revision, a query's ordering kept until something changes).
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import time
from collections.abc import Callable

import psutil
import requests
from support import percentile, running_cloud

from cloudstate.model import InstanceObserved
from tests.support.cloud import Cloud
from tests.support.consoles import web_login
from tests.support.fleet import Guest, put_fleet

GHOST = "bench-ghost-node"
CASES = {
    "first page": {},
    "sorted by name": {"sort": "name"},
    "search by address": {"q": "10.0.7."},
    "filter by state": {"state": "on"},
    "page 100": {"page": "100"},
}


def guests(start: int, count: int) -> list[Guest]:
    return [Guest(name=f"vm-{i:05d}", node=GHOST, tags=("blue",) if i % 10 == 0 else (),
                  address=f"10.{i // 62500}.{(i // 250) % 250}.{i % 250 + 2}",
                  power_state="off" if i % 3 == 0 else "on", created_at=1.7e9 + i)
            for i in range(start, start + count)]


def listed(session: requests.Session, url: str, total: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        page = session.get(f"{url}/instances/", timeout=60).text
        if re.search(rf"of {total} instances", page):
            return
        time.sleep(0.5)
    raise SystemExit(f"the list never showed {total} instances")


def timed(session: requests.Session, url: str, params: dict[str, str], n: int,
          before: Callable[[], None] | None = None) -> list[float]:
    times = []
    for _ in range(n):
        if before is not None:
            before()
        start = time.perf_counter()
        response = session.get(f"{url}/instances/", params=params, timeout=60)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, response.status_code
        assert response.text.count('<tr id="instance-') <= 50
    return times


def change_one(cloud: Cloud, made: dict[str, str]) -> None:
    """An instance's node reports a new power state (and the mirror moves on)."""
    uuid = random.choice(list(made.values()))
    observed = InstanceObserved(node=GHOST, state="created",
                                power_state=random.choice(["on", "off", "paused"]))
    cloud.etcd_call(lambda etcd: etcd.put(cloud.keys.observed_instance(uuid),
                                          observed.to_json()))
    time.sleep(0.05)  # for the portal's mirror to hear of it


def line(name: str, times: list[float]) -> str:
    return (f"{name:24s} median {statistics.median(times) * 1000:7.1f} ms  "
            f"p95 {percentile(times, 0.95) * 1000:7.1f} ms  (n={len(times)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=30)
    args = parser.parse_args()
    with running_cloud() as (cloud, _etcd, _images):
        assert cloud.portal is not None
        portal = psutil.Process(cloud.portal.pid)
        session = web_login(cloud.url, "admin", cloud.admin_password)
        put_fleet(cloud, "system", guests(0, 10))
        listed(session, cloud.url, 10)
        timed(session, cloud.url, {}, 5)
        baseline = timed(session, cloud.url, {}, args.requests)
        before = portal.memory_info().rss
        print(f"machine load: {' '.join(f'{x:.2f}' for x in psutil.getloadavg())}")
        print(line("baseline: 10 instances", baseline))
        written = time.monotonic()
        made = put_fleet(cloud, "system", guests(10, args.instances - 10))
        listed(session, cloud.url, args.instances)
        print(f"{args.instances} instances written and mirrored in "
              f"{time.monotonic() - written:.1f} s")
        for name, params in CASES.items():
            timed(session, cloud.url, params, 3)
            times = timed(session, cloud.url, params, args.requests)
            ratio = statistics.median(times) / statistics.median(baseline)
            print(f"{line(name, times)}  {ratio:.1f}x baseline")
        # The same again with an instance changed before each request: nothing kept from the
        # last one, the whole list matched and sorted again.
        changed = timed(session, cloud.url, {}, args.requests,
                        before=lambda: change_one(cloud, made))
        ratio = statistics.median(changed) / statistics.median(baseline)
        print(f"{line('first page, changed', changed)}  {ratio:.1f}x baseline")
        after = portal.memory_info().rss
        print(f"portal RSS {before / 2**20:.0f} MiB with 10 instances, {after / 2**20:.0f} MiB "
              f"with {args.instances} ({(after - before) / args.instances / 1024:.1f} KiB each)")


if __name__ == "__main__":
    main()
