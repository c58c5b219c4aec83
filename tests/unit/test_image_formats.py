"""The format of a downloaded file, read from its header in Python (before
qemu-img sees it), and the sandbox qemu-img then runs in."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from nodeagent.images import formats
from nodeagent.images.errors import ImageError
from nodeagent.images.sandbox import Sandbox, SandboxBroken


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "fetched"
    path.write_bytes(data)
    return path


def _qcow2(version: int = 3, backing: int = 0, crypt: int = 0, incompatible: int = 0) -> bytes:
    header = bytearray(512)
    struct.pack_into(">4sIQI", header, 0, b"QFI\xfb", version, backing, 0)
    struct.pack_into(">I", header, 20, 16)
    struct.pack_into(">I", header, 32, crypt)
    if version == 3:
        struct.pack_into(">Q", header, 72, incompatible)
        struct.pack_into(">I", header, 100, 104)
    return bytes(header)


def _vmdk(capacity: int = 8192, descriptor: bytes = b"") -> bytes:
    data = bytearray(4096)
    struct.pack_into("<4sII", data, 0, b"KDMV", 1, 3)
    struct.pack_into("<QQQQ", data, 12, capacity, 128, 1, 4)  # descriptor: sectors 1-4
    data[512:512 + len(descriptor)] = descriptor
    return bytes(data)


GOOD_DESCRIPTOR = (b'# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n'
                   b'createType="monolithicSparse"\nRW 8192 SPARSE "x.vmdk"\n')


@pytest.mark.parametrize("data,fmt", [
    (_qcow2(3), "qcow2"),
    (_qcow2(2), "qcow2"),
    (_vmdk(descriptor=GOOD_DESCRIPTOR), "vmdk"),
    (_vmdk(descriptor=GOOD_DESCRIPTOR.replace(b"monolithicSparse", b"streamOptimized")),
     "vmdk"),
    (b"vhdxfile" + bytes(1000), "vhdx"),
    (b"conectix" + bytes(52) + struct.pack(">I", 3) + bytes(500), "vpc"),
    (bytes(64) + struct.pack("<IIII", 0xBEDA107F, 0x10001, 400, 1) + bytes(500), "vdi"),
    (bytes(510) + b"\x55\xaa" + bytes(512), "raw"),
])
def test_formats_read_from_the_header(tmp_path: Path, data: bytes, fmt: str) -> None:
    assert formats.sniff(_write(tmp_path, data)).format == fmt


@pytest.mark.parametrize("data,reason", [
    (_qcow2(3, backing=512), "backing file"),
    (_qcow2(2, backing=512), "backing file"),
    (_qcow2(3, crypt=1), "encrypted"),
    (_qcow2(3, incompatible=1 << 2), "separate file"),
    (_qcow2(3, incompatible=1 << 1), "corrupt"),
    (_qcow2(3, incompatible=1 << 9), "features this node does not know"),
    (_qcow2(7), "version 7"),
    (b"QFI\xfb" + struct.pack(">IQ", 1, 64) + bytes(100), "backing file"),
    (_vmdk(capacity=0, descriptor=GOOD_DESCRIPTOR), "embedded descriptor"),
    (_vmdk(descriptor=GOOD_DESCRIPTOR.replace(b"monolithicSparse", b"monolithicFlat")),
     "type monolithicFlat"),
    (_vmdk(descriptor=GOOD_DESCRIPTOR + b'parentFileNameHint="/etc/shadow"\n'), "parent"),
    (b"# Disk DescriptorFile\nversion=1\ncreateType=\"monolithicFlat\"\n"
     b'RW 2048 FLAT "/etc/shadow" 0\n', "VMDK descriptor"),
    (b"\n\n  createType = \"vmfs\"\nRW 1 VMFS \"/dev/sda\"\n", "VMDK descriptor"),
    (b"COWD" + bytes(600), "COWD"),
    (b"LUKS\xba\xbe" + bytes(600), "LUKS"),
    (b"QED\x00" + bytes(600), "QED"),
    (b"conectix" + bytes(52) + struct.pack(">I", 4) + bytes(500), "differencing"),
    (bytes(64) + struct.pack("<IIII", 0xBEDA107F, 0x10001, 400, 4) + bytes(500), "parent"),
])
def test_files_naming_other_files_are_refused(tmp_path: Path, data: bytes, reason: str) -> None:
    with pytest.raises(ImageError, match=reason) as caught:
        formats.sniff(_write(tmp_path, data))
    assert "/etc" not in caught.value.message and "/dev" not in caught.value.message


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_the_sandbox_reaches_its_own_files_and_nothing_of_the_agents(tmp_path: Path) -> None:
    private = tmp_path / "agent-only"
    private.write_bytes(b"root's")
    private.chmod(0o600)
    with Sandbox(tmp_path / ".partial", "job", "nobody") as box:
        assert box.confined
        box.path("mine").write_bytes(b"the download")
        box.hand_over("mine")

        def run(*argv: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(box.command(list(argv)), capture_output=True,
                                  pass_fds=box.pass_fds)

        assert run("cat", box.inner("mine")).stdout == b"the download"
        assert run("cat", str(box.path("mine"))).returncode != 0  # only through the descriptor
        assert run("cat", str(private)).returncode != 0
        assert run("id", "-u").stdout.strip() != b"0"
        assert run("sh", "-c", f"echo made > {box.inner('out')}").returncode == 0
        assert box.take_back("out").stat().st_uid == 0
    assert not box.dir.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_what_the_sandbox_is_lent_it_reads_and_never_changes(tmp_path: Path) -> None:
    """A blob lent to qemu-img stays the agent's: readable, not writable, and
    what comes back must be that very file, the agent's alone again."""
    with Sandbox(tmp_path / ".partial", "job", "nobody") as box:
        lent = box.path("blob")
        lent.write_bytes(b"the blob's bytes")
        box.hand_over("blob")

        def run(*argv: str) -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(box.command(list(argv)), capture_output=True,
                                  pass_fds=box.pass_fds)

        assert run("cat", box.inner("blob")).stdout == b"the blob's bytes"
        assert run("sh", "-c", f"echo changed > {box.inner('blob')}").returncode != 0
        assert run("chmod", "666", box.inner("blob")).returncode != 0
        details = box.take_back("blob").stat()
        assert (details.st_uid, details.st_gid, details.st_mode & 0o777) == (0, 0, 0o600)
        assert lent.read_bytes() == b"the blob's bytes"

        # Something put in the place of a lent file (the directory is the
        # sandbox user's) is refused, and nothing is followed through a link.
        private = tmp_path / "agent-only"
        private.write_bytes(b"root's")
        private.chmod(0o600)
        box.hand_over("blob")
        assert run("sh", "-c", f"rm -f {box.inner('blob')} && "
                               f"ln -s {private} {box.inner('blob')}").returncode == 0
        with pytest.raises(SandboxBroken):
            box.take_back("blob")
        assert run("sh", "-c", f"ln -s {private} {box.inner('made')}").returncode == 0
        with pytest.raises(SandboxBroken):
            box.take_back("made")
        assert private.stat().st_uid == 0 and private.stat().st_mode & 0o777 == 0o600
