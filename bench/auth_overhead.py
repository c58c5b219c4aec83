"""What checking the caller costs on every API request.

    python bench/auth_overhead.py [--requests 300]

Interleaves, in the same run against one portal process:
  baseline   GET /api (the capabilities page: no token, no database)
  key        GET /api/auth/namespaces/system with a namespace key's token
             (signature check, key and nonce lookup, namespace read)
  person     the same with a person's personal token (digest lookup,
             expiry and account checks, their memberships read)
and prints medians and the difference per request.
"""

from __future__ import annotations

import argparse
import statistics
import time

import requests
from support import running_cloud

from tests.support.people import make_people


def timed(session: requests.Session, url: str, headers: dict[str, str]) -> float:
    start = time.perf_counter()
    response = session.get(url, headers=headers, timeout=30)
    elapsed = time.perf_counter() - start
    assert response.status_code == 200, response.text
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with running_cloud() as (cloud, _etcd, _images):
        made = make_people(cloud, [{"username": "bench", "password": "pw-bench-12345",
                                    "roles": {"system": "admin"}}],
                           [{"username": "bench", "name": "bench", "namespace": "system"}])
        key_token = requests.post(f"{cloud.api_url}/auth", timeout=10, json={
            "namespace": "system", "key": cloud.system_key}).json()["access_token"]
        kinds = {
            "baseline (GET /api, no auth)": (f"{cloud.api_url}", {}),
            "namespace key token": (f"{cloud.api_url}/auth/namespaces/system",
                                    {"Authorization": f"Bearer {key_token}"}),
            "personal token": (f"{cloud.api_url}/auth/namespaces/system",
                               {"Authorization": f"Bearer {made['tokens']['bench']}"}),
        }
        session = requests.Session()
        samples: dict[str, list[float]] = {name: [] for name in kinds}
        for _ in range(20):  # warm up
            for url, headers in kinds.values():
                timed(session, url, headers)
        for _ in range(args.requests):
            for name, (url, headers) in kinds.items():
                samples[name].append(timed(session, url, headers))
        base = statistics.median(samples["baseline (GET /api, no auth)"])
        for name, values in samples.items():
            median = statistics.median(values)
            print(f"{name:32s} median {median * 1000:6.2f} ms  "
                  f"(+{(median - base) * 1000:5.2f} ms, {median / base:4.2f}x baseline)  "
                  f"n={len(values)}")


if __name__ == "__main__":
    main()
