"""cloud-init's own code, from Debian's package, to read our config drives
exactly as a Debian 12 cloud image does at boot.

The .deb is fetched once with ``apt-get download`` and unpacked (not
installed: it would add boot services to this machine) under the test
cache; its Python package is then importable.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support.fixtures_images import guest_image_cache_root

PACKAGE = "cloud-init"


def cloudinit_path() -> Path:
    """The unpacked package's dist-packages directory (fetched if missing)."""
    root = guest_image_cache_root().parent / "cloud-init"
    site = root / "unpacked" / "usr" / "lib" / "python3" / "dist-packages"
    if (site / "cloudinit" / "sources" / "DataSourceConfigDrive.py").exists():
        return site
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(2):
        result = subprocess.run(["apt-get", "download", PACKAGE], cwd=root,
                                capture_output=True, text=True, check=False)
        if result.returncode == 0:
            break
        if attempt == 0:  # the package lists may be missing or stale
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=False)
    else:
        raise RuntimeError(f"apt-get download {PACKAGE} failed: {result.stderr.strip()}")
    debs = sorted(root.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise RuntimeError(f"apt-get download left no {PACKAGE} package in {root}")
    target = root / "unpacked.tmp"
    subprocess.run(["rm", "-rf", str(target)], check=True)
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(target)], check=True)
    target.rename(root / "unpacked")
    return site


def import_cloudinit() -> None:
    site = str(cloudinit_path())
    if site not in sys.path:
        sys.path.append(site)
