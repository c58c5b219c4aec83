"""Address allocation under contention, and what it costs over a plain write.

    python bench/ipam.py [--rounds 5] [--processes 4] [--allocations 200]

Each round, several processes (each with its own etcd connection) start at
the same moment and together make 200 allocations on one /24 (253 usable
addresses) through cloudstate.ipam, every one of them concurrently. The
round checks that all 200 addresses are distinct and that etcd holds exactly
those 200 reservations. Baseline, in the same run and shape: the same
processes each doing the same number of plain etcd puts of a reservation
record (no read, no comparison, no retry). Figures are medians over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid as uuidlib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from cloudstate import ipam, tls  # noqa: E402
from cloudstate.config import parse_endpoints  # noqa: E402
from cloudstate.etcd import Etcd  # noqa: E402
from cloudstate.keys import Keys  # noqa: E402
from cloudstate.model import AddressReservation  # noqa: E402
from deploy.localetcd import LocalEtcd  # noqa: E402

NETBLOCK = "10.0.0.0/24"


def _reservation(address: str) -> AddressReservation:
    return AddressReservation(address=address, type="instance", user=["interface", address],
                              network_uuid="bench")


def _client(endpoint: str, pki_dir: str) -> Etcd:
    return Etcd(parse_endpoints(endpoint), tls=tls.portal(Path(pki_dir)))


async def _worker(endpoint: str, pki_dir: str, prefix: str, count: int, mode: str,
                  start_at: float) -> tuple[list[tuple[str, float, int]], float]:
    """(address or key, seconds, attempts) for each of ``count`` concurrent
    operations, and when the last one finished."""
    etcd = _client(endpoint, pki_dir)
    keys = Keys(prefix)
    pool = ipam.Pool.for_network("bench", NETBLOCK)
    await etcd.revision()  # connect before the clock starts
    await asyncio.sleep(max(0.0, start_at - time.time()))

    async def allocate() -> tuple[str, float, int]:
        attempts = 0

        def reservation(address: str) -> AddressReservation:
            nonlocal attempts
            attempts += 1
            return _reservation(address)

        started = time.perf_counter()
        address, _ = await ipam.allocate(etcd, keys, pool, reservation)
        return address, time.perf_counter() - started, attempts

    async def put() -> tuple[str, float, int]:
        key = keys.address("baseline", str(uuidlib.uuid4()))
        started = time.perf_counter()
        await etcd.put(key, _reservation("10.0.0.2").to_json())
        return key, time.perf_counter() - started, 1

    operation = allocate if mode == "ipam" else put
    try:
        done = list(await asyncio.gather(*(operation() for _ in range(count))))
        return done, time.time()
    finally:
        await etcd.close()


def _process(endpoint: str, pki_dir: str, prefix: str, count: int, mode: str,
             start_at: float, results: multiprocessing.Queue) -> None:
    results.put(asyncio.run(_worker(endpoint, pki_dir, prefix, count, mode, start_at)))


def _round(endpoint: str, pki_dir: str, mode: str, processes: int,
           total: int) -> dict[str, float]:
    prefix = f"/bench-ipam-{uuidlib.uuid4().hex[:8]}"
    context = multiprocessing.get_context("spawn")  # gRPC and fork don't mix
    results: multiprocessing.Queue = context.Queue()
    shares = [total // processes + (1 if i < total % processes else 0) for i in range(processes)]
    start_at = time.time() + 3.0  # every process connected and waiting by then
    workers = [context.Process(target=_process, args=(endpoint, pki_dir, prefix, share, mode,
                                                       start_at, results)) for share in shares]
    for worker in workers:
        worker.start()
    done: list[tuple[str, float, int]] = []
    finished = start_at
    for _ in workers:
        part, finished_at = results.get(timeout=120)
        done += part
        finished = max(finished, finished_at)
    for worker in workers:
        worker.join()
    wall = finished - start_at

    async def check() -> int:
        etcd = _client(endpoint, pki_dir)
        try:
            stored = await ipam.taken(etcd, Keys(prefix), "bench")
            await etcd.delete_prefix(prefix + "/")
            return len(stored)
        finally:
            await etcd.close()

    stored = asyncio.run(check())
    names = [name for name, _, _ in done]
    if mode == "ipam":
        assert len(names) == total and len(set(names)) == total, "an address was given twice"
        assert stored == total, f"etcd holds {stored} reservations, not {total}"
    latencies = [seconds for _, seconds, _ in done]
    return {
        "median": statistics.median(latencies),
        "p95": sorted(latencies)[int(0.95 * (len(latencies) - 1))],
        "attempts": statistics.mean(attempts for _, _, attempts in done),
        "per_op": wall / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--allocations", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="sfcloud-bench-ipam-") as tmp:
        etcd = LocalEtcd.standalone(Path(tmp) / "data", name="bench-ipam")
        etcd.start()
        try:
            rounds: dict[str, list[dict[str, float]]] = {"ipam": [], "put": []}
            for _ in range(args.rounds):
                # Alternate, so load from elsewhere on the machine hits both.
                for mode in ("ipam", "put"):
                    rounds[mode].append(_round(etcd.endpoint, str(etcd.pki_dir), mode,
                                               args.processes, args.allocations))
        finally:
            etcd.stop()

    def med(mode: str, field: str) -> float:
        return statistics.median(r[field] for r in rounds[mode])

    print(f"{args.allocations} concurrent allocations on a /24 from {args.processes} processes, "
          f"{args.rounds} rounds: every round all {args.allocations} addresses distinct, and "
          f"exactly that many reservations in etcd")
    print(f"  ipam.allocate   latency median {med('ipam', 'median') * 1000:.1f} ms, "
          f"p95 {med('ipam', 'p95') * 1000:.1f} ms; {med('ipam', 'attempts'):.2f} attempts "
          f"per allocation; {med('ipam', 'per_op') * 1000:.2f} ms of wall time per allocation")
    print(f"  baseline put    latency median {med('put', 'median') * 1000:.1f} ms, "
          f"p95 {med('put', 'p95') * 1000:.1f} ms; "
          f"{med('put', 'per_op') * 1000:.2f} ms of wall time per put")
    print(f"  ratio           latency {med('ipam', 'median') / med('put', 'median'):.2f}x, "
          f"wall time per operation {med('ipam', 'per_op') / med('put', 'per_op'):.2f}x")


if __name__ == "__main__":
    main()
