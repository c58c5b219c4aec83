"""A release: one build of sfcloud, as the nodes install it.

Built on the deploy machine from an sfcloud checkout (``source`` in
cloud.yml): the checkout's files (git's tracked files, or every file but
the venv and state for a plain copy) packed into ``sfcloud-<id>.tar.gz``
with a ``RELEASE`` file naming it, and a wheelhouse of every Python package
it depends on (``wheels-<deps>.tar``). The nodes need no access to PyPI:
they make their venv from the wheelhouse (``pip --no-index``), which is
shared by every release with the same dependencies. Nodes run Debian's
Python (``NODE_PYTHON``), and the wheelhouse is collected by that same
Python on the deploy machine (in a venv of its own under ``releases/``), so
the packages chosen for it are the ones a node's Python needs: environment
markers differ even between patch releases (redis wants async-timeout below
3.11.3).

A release's id is a hash of its files' contents, so building the same code
twice gives the same release and installing it again changes nothing. On a
node (deploy/ansible/roles/release):

    /opt/sfcloud-releases/<id>/          the release's files; .venv -> its venv
    /opt/sfcloud-venvs/<deps>/           a venv per set of dependencies
    /opt/sfcloud -> /opt/sfcloud-releases/<id>   the current release, where the
                                         systemd units (deploy/systemd) run it
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# What a plain copy (no git) leaves out: environments, state, caches.
_SKIP_DIRS = {".git", ".venv", "var", "__pycache__", ".pytest_cache", ".ruff_cache",
              "node_modules", "test-results"}
_EXTRAS = ("multi",)  # several portals: PostgreSQL and Redis
NODE_PYTHON = "/usr/bin/python3"


class ReleaseError(Exception):
    """A release can't be built; the message says why."""


@dataclass(frozen=True)
class Release:
    id: str
    deps_id: str
    source: Path
    tarball: Path
    wheelhouse: Path  # a tar of the wheels and requirements.txt

    def facts(self) -> dict[str, str]:
        """What the Ansible roles need to install it."""
        return {"sfcloud_release": self.id, "sfcloud_deps": self.deps_id,
                "sfcloud_release_tarball": str(self.tarball),
                "sfcloud_wheelhouse": str(self.wheelhouse)}


def source_files(source: Path) -> list[str]:
    """The files of the checkout, relative, sorted."""
    if (source / ".git").exists():
        listed = subprocess.run(["git", "-C", str(source), "ls-files", "-z", "--cached",
                                 "--others", "--exclude-standard"],
                                capture_output=True, check=True)
        names = [name for name in listed.stdout.decode().split("\0") if name]
        return sorted(name for name in names if (source / name).is_file())
    found = []
    for directory, dirnames, filenames in os.walk(source):
        dirnames[:] = [d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info")]
        for filename in filenames:
            if not filename.endswith(".pyc"):
                found.append(str((Path(directory) / filename).relative_to(source)))
    return sorted(found)


def requirements(source: Path) -> list[str]:
    """The Python packages the checkout needs on a node (its extras for
    several portals included), from its pyproject.toml."""
    try:
        project = tomllib.loads((source / "pyproject.toml").read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        raise ReleaseError(f"{source} is not an sfcloud checkout (pyproject.toml: {exc})"
                           ) from None
    wanted = list(project.get("dependencies", []))
    for extra in _EXTRAS:
        wanted += project.get("optional-dependencies", {}).get(extra, [])
    return sorted(set(wanted))


def _digest(parts: Iterable[bytes]) -> str:
    hashed = hashlib.sha256()
    for part in parts:
        hashed.update(hashlib.sha256(part).digest())
    return hashed.hexdigest()[:12]


def build(source: Path, releases: Path, *, say: Callable[[str], object] = print) -> Release:
    """The release of ``source``, built into ``releases`` unless it is there."""
    source = source.resolve()
    names = source_files(source)
    if "pyproject.toml" not in names or "nodeagent/__main__.py" not in names:
        raise ReleaseError(f"{source} is not an sfcloud checkout")
    release_id = _digest(name.encode() + b"\0" + (source / name).read_bytes() for name in names)
    wanted = requirements(source)
    python_version = _node_python_version()
    deps_id = _digest([python_version.encode(), *(r.encode() for r in wanted)])
    releases.mkdir(parents=True, exist_ok=True)
    tarball = releases / f"sfcloud-{release_id}.tar.gz"
    if not tarball.exists():
        say(f"packing release {release_id} from {source}")
        _pack(source, names, release_id, tarball)
    wheelhouse = releases / f"wheels-{deps_id}.tar"
    if not wheelhouse.exists():
        say(f"collecting the Python packages a node needs ({len(wanted)} requirements; "
            "the first time this downloads them)")
        _wheelhouse(wanted, wheelhouse, _build_env(releases, python_version))
    return Release(release_id, deps_id, source, tarball, wheelhouse)


def _pack(source: Path, names: list[str], release_id: str, tarball: Path) -> None:
    partial = tarball.with_name(f".{tarball.name}.partial")
    with tarfile.open(partial, "w:gz") as tar:
        for name in names:
            tar.add(source / name, arcname=name, recursive=False, filter=_as_git_keeps_it)
        stamp = f"{release_id}\n".encode()
        info = tarfile.TarInfo("RELEASE")
        info.size = len(stamp)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(stamp))
    partial.replace(tarball)


def _as_git_keeps_it(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """A file's mode as git records it (executable or not), whatever the
    working tree's umask made it: a file written 0600 on the build machine
    must still be readable by the service users of the nodes."""
    executable = info.mode & 0o100
    info.mode = 0o755 if info.isdir() or executable else 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def _node_python_version() -> str:
    try:
        found = subprocess.run([NODE_PYTHON, "-c", "import platform; "
                                "print(platform.python_version())"],
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise ReleaseError(f"{NODE_PYTHON} (Debian's Python, which the nodes run) is "
                           f"missing here: {exc}") from None
    return found.stdout.strip()


def _build_env(releases: Path, python_version: str) -> Path:
    """A venv of the nodes' Python, for collecting their packages."""
    env = releases / f"buildenv-{python_version}"
    if not (env / "bin" / "pip").exists():
        result = subprocess.run([NODE_PYTHON, "-m", "venv", str(env)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise ReleaseError(f"can't make a venv of {NODE_PYTHON} (is python3-venv "
                               f"installed?): {result.stderr.strip()}")
    return env


def _wheelhouse(wanted: list[str], target: Path, build_env: Path) -> None:
    directory = target.with_name(f".{target.stem}.d")
    directory.mkdir(exist_ok=True)
    (directory / "requirements.txt").write_text("\n".join(wanted) + "\n")
    result = subprocess.run(
        [str(build_env / "bin" / "python"), "-m", "pip", "wheel", "--quiet",
         "--disable-pip-version-check", "--wheel-dir", str(directory),
         "-r", str(directory / "requirements.txt")],
        capture_output=True, text=True)
    if result.returncode != 0:
        raise ReleaseError("collecting the Python packages failed:\n" + result.stderr[-3000:])
    (directory / "manifest.json").write_text(json.dumps(sorted(
        p.name for p in directory.glob("*.whl")), indent=1))
    partial = target.with_name(f".{target.name}.partial")
    with tarfile.open(partial, "w") as tar:
        for path in sorted(directory.iterdir()):
            tar.add(path, arcname=path.name)
    partial.replace(target)
