"""ensure_guest_image's caching, atomicity and locking, with fake build scripts (fast)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy import guestimage
from deploy.guestimage import GuestImageBuildError, ensure_guest_image, script_digest

REPO_ROOT = Path(__file__).resolve().parents[2]


def fake_script(tmp_path: Path, *, sleep: float = 0.0, fail: bool = False, tag: str = "") -> Path:
    """A build script that makes the expected files and appends a line to runs.log per run."""
    script = tmp_path / f"fake-build{tag}.sh"
    runs = tmp_path / "runs.log"
    script.write_text(
        "#!/bin/bash\nset -e\n"
        f"# {tag}\n"
        f'echo run >> "{runs}"\n'
        'out="$1"\n'
        'echo partial > "$out/disk.qcow2"\n'
        f"sleep {sleep}\n"
        + ("echo 'kernel package not found' >&2; exit 3\n" if fail else "")
        + 'echo qcow > "$out/disk.qcow2"; echo k > "$out/vmlinuz"; echo i > "$out/initrd.gz"\n'
        'echo \'{"kernel_version": "6.1.0-test"}\' > "$out/image.json"\n'
    )
    return script


def runs(tmp_path: Path) -> int:
    log = tmp_path / "runs.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_builds_once_and_reuses(tmp_path: Path) -> None:
    script = fake_script(tmp_path)
    cache = tmp_path / "cache"
    first = ensure_guest_image(cache, script=script)
    assert first == cache.resolve() / script_digest(script)
    assert (first / "disk.qcow2").read_text() == "qcow\n"
    info = json.loads((first / "image.json").read_text())
    assert info["kernel_version"] == "6.1.0-test"
    assert info["build_script_sha256_prefix"] == script_digest(script)
    assert info["sizes"]["vmlinuz"] == 2
    assert oct(first.stat().st_mode & 0o777) == "0o755"  # QEMU must reach the disk

    assert ensure_guest_image(cache, script=script) == first
    assert runs(tmp_path) == 1


def test_a_changed_script_gets_its_own_directory(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    old = ensure_guest_image(cache, script=fake_script(tmp_path, tag="a"))
    new = ensure_guest_image(cache, script=fake_script(tmp_path, tag="b"))
    assert old != new
    assert old.is_dir() and new.is_dir()  # the old build stays for whoever still uses it
    assert runs(tmp_path) == 2


def test_failed_build_leaves_nothing_that_looks_complete(tmp_path: Path) -> None:
    script = fake_script(tmp_path, fail=True)
    cache = tmp_path / "cache"
    with pytest.raises(GuestImageBuildError, match="kernel package not found"):
        ensure_guest_image(cache, script=script)
    assert not (cache / script_digest(script)).exists()
    assert not list(cache.glob(".build-*"))


def test_leftovers_of_a_killed_build_are_ignored_and_removed(tmp_path: Path) -> None:
    script = fake_script(tmp_path, sleep=30)
    cache = tmp_path / "cache"
    code = (
        "import sys; from pathlib import Path; from deploy.guestimage import ensure_guest_image; "
        "ensure_guest_image(Path(sys.argv[1]), script=Path(sys.argv[2]))"
    )
    # A session of its own, so the kill takes the build script down with the Python process.
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(cache), str(script)],
        cwd=REPO_ROOT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not list(cache.glob(".build-*/disk.qcow2")):
            assert time.monotonic() < deadline, "the build never started"
            assert proc.poll() is None
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    assert list(cache.glob(".build-*"))  # the half-made build is still there...
    assert not (cache / script_digest(script)).exists()  # ...but not under the final name

    script.write_text(script.read_text().replace("sleep 30", "sleep 0"))
    result = ensure_guest_image(cache, script=script)
    assert (result / "disk.qcow2").read_text() == "qcow\n"
    assert not list(cache.glob(".build-*"))


def test_concurrent_callers_build_once(tmp_path: Path) -> None:
    script = fake_script(tmp_path, sleep=1)
    cache = tmp_path / "cache"
    code = (
        "import sys; from pathlib import Path; from deploy.guestimage import ensure_guest_image; "
        "print(ensure_guest_image(Path(sys.argv[1]), script=Path(sys.argv[2])))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(cache), str(script)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [proc.communicate(timeout=60)[0].strip() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0]
    assert len(set(outputs)) == 1
    assert runs(tmp_path) == 1


def test_main_prints_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = fake_script(tmp_path)
    monkeypatch.setattr(guestimage, "BUILD_SCRIPT", script)
    assert guestimage.main([str(tmp_path / "cache")]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == str((tmp_path / "cache").resolve() / script_digest(script))


def test_real_build_script_is_what_the_cache_key_hashes() -> None:
    script = REPO_ROOT / "deploy" / "guest-image" / "build.sh"
    assert guestimage.BUILD_SCRIPT == script
    assert os.access(script, os.X_OK)
    assert len(script_digest()) == 20
