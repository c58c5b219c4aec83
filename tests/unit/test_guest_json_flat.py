"""The guest's awk JSON flattener, run under the host's busybox as the guest runs it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

BUILD_SH = Path(__file__).resolve().parents[2] / "deploy" / "guest-image" / "build.sh"
BUSYBOX = shutil.which("busybox")



@pytest.fixture(scope="module")
def flattener(tmp_path_factory: pytest.TempPathFactory) -> Path:
    match = re.search(
        r"cat > \"\$ROOT/sbin/sfcloud-json-flat\" <<'EOF'\n(.*?)\nEOF\n",
        BUILD_SH.read_text(),
        re.DOTALL,
    )
    assert match, "flattener heredoc not found in build.sh"
    bindir = tmp_path_factory.mktemp("bb")
    assert BUSYBOX is not None
    for applet in ("sh", "awk"):
        (bindir / applet).symlink_to(BUSYBOX)
    script = bindir / "sfcloud-json-flat"
    script.write_text(match.group(1) + "\n")
    script.chmod(0o755)
    return script


def flatten(flattener: Path, text: str) -> list[tuple[str, str]]:
    result = subprocess.run(
        [str(flattener.parent / "sh"), str(flattener)],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": str(flattener.parent)},  # busybox awk only, as in the guest
    )
    return [tuple(line.split("\t", 1)) for line in result.stdout.splitlines()]  # type: ignore[misc]


METADATA = {
    "uuid": "0b1c",
    "meta": {"hostname": "not-this-one", "role": "web"},
    "hostname": "vm-1.example",
    "public_keys": {
        "mykey": "ssh-ed25519 AAAAC3Nza+/x== me@host",
        "my.other-key": "ssh-rsa AAAAB3 other@host\n",
    },
    "keys": [{"name": "mykey", "type": "ssh", "data": "ssh-ed25519 AAAAC3Nza+/x== me@host"}],
    "launch_index": 0,
    "devices": [],
    "flag": True,
    "nothing": None,
    "url": "http://example.org/a/b",
}


@pytest.mark.parametrize(
    "dump",
    [
        lambda d: json.dumps(d),
        lambda d: json.dumps(d, indent=4),
        lambda d: json.dumps(d, separators=(",", ":")),
        lambda d: json.dumps(d, indent="\t").replace("\n", "\r\n"),
        lambda d: json.dumps(d).replace("/", "\\/"),  # escaped slashes are legal JSON
    ],
    ids=["default", "indented", "compact", "tabs-crlf", "escaped-slash"],
)
def test_flattens_config_drive_metadata(
    flattener: Path, dump: Callable[[dict[str, object]], str]
) -> None:
    pairs = flatten(flattener, dump(METADATA))
    assert pairs == [
        ("uuid", "0b1c"),
        ("meta/hostname", "not-this-one"),
        ("meta/role", "web"),
        ("hostname", "vm-1.example"),
        ("public_keys/mykey", "ssh-ed25519 AAAAC3Nza+/x== me@host"),
        ("public_keys/my.other-key", "ssh-rsa AAAAB3 other@host"),  # trailing \n dropped
        ("keys/0/name", "mykey"),
        ("keys/0/type", "ssh"),
        ("keys/0/data", "ssh-ed25519 AAAAC3Nza+/x== me@host"),
        ("launch_index", "0"),
        ("flag", "true"),
        ("nothing", "null"),
        ("url", "http://example.org/a/b"),
    ]


def test_nested_arrays_are_indexed(flattener: Path) -> None:
    assert flatten(flattener, '{"a": [1, [2, 3], {"b": "c"}], "d": {}}') == [
        ("a/0", "1"),
        ("a/1/0", "2"),
        ("a/1/1", "3"),
        ("a/2/b", "c"),
    ]
