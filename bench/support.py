"""A throwaway cloud for benchmarks: its own etcd, portal and node agent,
removed again when the benchmark ends (also on Ctrl-C)."""

from __future__ import annotations

import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from deploy.guestimage import ensure_guest_image  # noqa: E402
from deploy.localetcd import LocalEtcd  # noqa: E402
from deploy.localvirt import LocalLibvirt  # noqa: E402
from tests.support.cloud import Cloud  # noqa: E402
from tests.support.fixtures_images import guest_image_cache_root  # noqa: E402


@contextmanager
def running_cloud() -> Iterator[tuple[Cloud, LocalEtcd, Path]]:
    image_dir = ensure_guest_image(guest_image_cache_root())
    with tempfile.TemporaryDirectory(prefix="sfcloud-bench-etcd-") as tmp:
        libvirt = LocalLibvirt(Path(tmp) / "logs")
        libvirt.ensure()
        etcd = LocalEtcd.standalone(Path(tmp) / "data", name="bench")
        etcd.start()
        cloud = Cloud(etcd, demo_image=image_dir / "disk.qcow2")
        try:
            cloud.start()
            yield cloud, etcd, image_dir
        finally:
            cloud.stop()
            etcd.stop()
            libvirt.stop()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> str:
    return (f"median {statistics.median(values):.3f} s  p95 {percentile(values, 0.95):.3f} s  "
            f"min {min(values):.3f} s  max {max(values):.3f} s  (n={len(values)})")
