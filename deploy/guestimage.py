"""Build sfcloud's test guest image once and keep it in a cache directory.

The image is made by ``deploy/guest-image/build.sh``. A build is identified by a hash of that
script, so editing the script yields a new cache directory and old ones stay valid for whoever
still uses them (a running guest may have an overlay on one). A directory named after the hash
exists only when it is complete: it is built under a temporary name and renamed into place.

    python -m deploy.guestimage DIR     # builds if needed, prints the image directory
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().parent / "guest-image" / "build.sh"
IMAGE_FILES = ("disk.qcow2", "vmlinuz", "initrd.gz", "image.json")
_TEMP_PREFIX = ".build-"


class GuestImageBuildError(RuntimeError):
    """build.sh failed; the message carries the end of its output."""


def script_digest(script: Path | None = None) -> str:
    return hashlib.sha256((script or BUILD_SCRIPT).read_bytes()).hexdigest()[:20]


def is_complete(image_dir: Path) -> bool:
    return all((image_dir / name).is_file() for name in IMAGE_FILES)


def image_info(image_dir: Path) -> dict[str, object]:
    info: dict[str, object] = json.loads((image_dir / "image.json").read_text())
    return info


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    # flock is released by the kernel when the holder dies, so a killed build never wedges
    # later callers. The lock file itself is never deleted: unlinking it would let two
    # processes hold "the" lock on different inodes.
    with open(lock_path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_guest_image(cache_root: Path, *, script: Path | None = None) -> Path:
    """Return the directory holding disk.qcow2, vmlinuz, initrd.gz and image.json.

    Builds only when no complete build of the current script exists under cache_root. Safe to
    call from several processes at once: one builds, the others wait for it and reuse the result.
    """
    script = script or BUILD_SCRIPT
    cache_root = Path(cache_root).resolve()
    digest = script_digest(script)
    final = cache_root / digest
    if is_complete(final):
        return final

    cache_root.mkdir(parents=True, exist_ok=True)
    # One lock for the whole cache: builds are rare, and they share the kernel .deb cache.
    with _exclusive(cache_root / ".lock"):
        if is_complete(final):
            return final
        _remove_leftovers(cache_root, final)
        _build_into_place(cache_root, final, script, digest)
    return final


def _remove_leftovers(cache_root: Path, final: Path) -> None:
    # Only the lock holder builds, so any temporary build directory seen now belongs to a
    # build that was killed.
    for entry in cache_root.glob(_TEMP_PREFIX + "*"):
        shutil.rmtree(entry, ignore_errors=True)
    if final.exists():
        # Not made by us (we only rename complete builds here): not trustworthy.
        shutil.rmtree(final)


def _build_into_place(cache_root: Path, final: Path, script: Path, digest: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f"{_TEMP_PREFIX}{digest}-", dir=cache_root))
    try:
        env = dict(os.environ)
        env.setdefault("SFCLOUD_DEB_CACHE", str(cache_root / "debs"))
        log_path = tmp / "build.log"
        started = time.monotonic()
        with open(log_path, "wb") as log:
            result = subprocess.run(
                ["/bin/bash", str(script), str(tmp)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                check=False,
            )
        elapsed = time.monotonic() - started
        if result.returncode != 0 or not is_complete(tmp):
            tail = log_path.read_text(errors="replace")[-4000:]
            raise GuestImageBuildError(
                f"{script} exited with {result.returncode}; last output:\n{tail}"
            )
        _record_build(tmp, digest, elapsed)
        # mkdtemp makes the directory 0700; QEMU runs as another user and must reach the
        # disk through it to use it as a backing file.
        os.chmod(tmp, 0o755)  # noqa: S103
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _record_build(image_dir: Path, digest: str, elapsed: float) -> None:
    info = image_info(image_dir)
    info["build_script_sha256_prefix"] = digest
    info["built_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    info["build_seconds"] = round(elapsed, 2)
    info["sizes"] = {name: (image_dir / name).stat().st_size for name in IMAGE_FILES[:3]}
    staged = image_dir / "image.json.new"
    staged.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    staged.chmod(0o644)
    staged.replace(image_dir / "image.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deploy.guestimage",
        description="Build sfcloud's test guest image if needed and print its directory.",
    )
    parser.add_argument("cache_root", type=Path, help="cache directory (created if missing)")
    args = parser.parse_args(argv)
    try:
        path = ensure_guest_image(args.cache_root)
    except GuestImageBuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
