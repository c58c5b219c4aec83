"""Boot sfcloud's test guest image under libvirt, for tests and benchmarks.

Only libvirt-python, qemu-img and pycdlib are used (no sfcloud code), so a failure here points at
the image or the host, not at the node agent. Other work shares this libvirtd: every domain is
named ``sfcloud-test-<random hex>`` and only domains created here are ever destroyed or undefined.
"""

from __future__ import annotations

import io
import json
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import libvirt
import pycdlib

LIBVIRT_URI = "qemu:///system"
# TCG on a shared two-core machine: a boot normally takes seconds, but leave room for load.
BOOT_TIMEOUT = 120.0


def unique_name(prefix: str = "sfcloud-test-") -> str:
    return prefix + secrets.token_hex(4)


def make_scratch_dir(prefix: str = "sfcloud-test-") -> Path:
    """A fresh directory that QEMU (user libvirt-qemu) can traverse but not list.

    pytest's tmp_path lives under a 0700 directory, which QEMU cannot enter.
    """
    path = Path("/var/tmp") / unique_name(prefix)
    path.mkdir(mode=0o711)
    path.chmod(0o711)  # mkdir's mode is filtered by the umask
    return path


def open_libvirt() -> libvirt.virConnect:
    # libvirt-python prints every error to stderr by default, even ones we handle.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    return libvirt.open(LIBVIRT_URI)


def make_config_drive(
    path: Path,
    *,
    hostname: str,
    public_keys: dict[str, str] | None = None,
    user_data: bytes | None = None,
    indent: int | None = None,
) -> dict[str, object]:
    """Write an OpenStack-style config drive ISO (volume id config-2) and return its metadata."""
    meta: dict[str, object] = {
        "uuid": str(uuid.uuid4()),
        "hostname": hostname,
        "name": hostname,
        "availability_zone": "sfcloud",
        "launch_index": 0,
        "meta": {},
        "public_keys": dict(public_keys or {}),
        "keys": [
            {"name": name, "type": "ssh", "data": key} for name, key in (public_keys or {}).items()
        ],
    }
    files = {
        "meta_data.json": json.dumps(meta, indent=indent).encode(),
        "network_data.json": json.dumps({"links": [], "networks": [], "services": []}).encode(),
        "vendor_data.json": b"{}",
    }
    if user_data is not None:
        files["user_data"] = user_data

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="config-2")
    iso.add_directory("/OPENSTACK", rr_name="openstack", joliet_path="/openstack")
    iso.add_directory("/OPENSTACK/LATEST", rr_name="latest", joliet_path="/openstack/latest")
    for number, (name, data) in enumerate(files.items()):
        # The guest reads Rock Ridge names; the ISO9660 names only need to be unique.
        iso.add_fp(
            io.BytesIO(data),
            len(data),
            f"/OPENSTACK/LATEST/F{number}.;1",
            rr_name=name,
            joliet_path=f"/openstack/latest/{name}",
        )
    iso.write(str(path))
    iso.close()
    return meta


def free_local_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class GuestSpec:
    disk_image: Path
    workdir: Path
    name: str = field(default_factory=unique_name)
    config_drive: Path | None = None
    config_drive_bus: str = "ide"  # "ide" (cdrom on machine pc) or "virtio" (a disk)
    # NICs are QEMU socket "server" backends on 127.0.0.1 (Guest.nics has their ports): the
    # guest sees a NIC with a link, and its frames reach only whoever connects to that port
    # (nobody, or a SocketDhcpServer), never a host network.
    nics: int = 0
    memory_mib: int = 256
    # Boot vmlinuz + initrd.gz (from the image directory) directly instead of BIOS + syslinux.
    direct_kernel: bool = False


@dataclass(frozen=True)
class SocketNic:
    mac: str
    port: int  # QEMU listens on 127.0.0.1:port; see tests/support/socketdhcp.py


def domain_xml(
    spec: GuestSpec,
    overlay: Path,
    serial_log: Path,
    nics: list[SocketNic],
    kernel: tuple[Path, Path] | None = None,
) -> str:
    # The base image is shared (a cache other guests use too). Named here with relabel='no',
    # libvirt leaves its owner alone; otherwise it chowns the base to the QEMU user and, as it
    # does for every backing file, never gives it back.
    devices = [
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file={quoteattr(str(overlay))}/>"
        "<backingStore type='file'><format type='qcow2'/>"
        f"<source file={quoteattr(str(spec.disk_image.resolve()))}>"
        "<seclabel model='dac' relabel='no'/></source><backingStore/></backingStore>"
        "<target dev='vda' bus='virtio'/></disk>",
    ]
    if spec.config_drive is not None:
        source = f"<source file={quoteattr(str(spec.config_drive))}/>"
        if spec.config_drive_bus == "ide":
            devices.append(
                "<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
                f"{source}<target dev='hdc' bus='ide'/><readonly/></disk>"
            )
        elif spec.config_drive_bus == "virtio":
            devices.append(
                "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                f"{source}<target dev='vdb' bus='virtio'/><readonly/></disk>"
            )
        else:
            raise ValueError(f"unknown config drive bus {spec.config_drive_bus!r}")
    for nic in nics:
        devices.append(
            f"<interface type='server'><mac address='{nic.mac}'/>"
            f"<source address='127.0.0.1' port='{nic.port}'/><model type='virtio'/></interface>"
        )
    devices += [
        "<serial type='pty'>"
        f"<log file={quoteattr(str(serial_log))} append='off'/><target port='0'/></serial>",
        "<console type='pty'><target type='serial' port='0'/></console>",
        "<memballoon model='none'/>",
    ]
    boot = "<boot dev='hd'/>"
    if kernel is not None:
        boot = (
            f"<kernel>{escape(str(kernel[0]))}</kernel><initrd>{escape(str(kernel[1]))}</initrd>"
            "<cmdline>console=tty1 console=ttyS0,115200n8</cmdline>"
        )
    return (
        "<domain type='qemu'>"
        f"<name>{spec.name}</name>"
        f"<memory unit='MiB'>{spec.memory_mib}</memory><vcpu>1</vcpu>"
        f"<os><type arch='x86_64' machine='pc'>hvm</type>{boot}</os>"
        "<features><acpi/></features>"
        "<on_poweroff>destroy</on_poweroff><on_reboot>restart</on_reboot>"
        "<on_crash>destroy</on_crash>"
        f"<devices>{''.join(devices)}</devices>"
        "</domain>"
    )


class SerialLog:
    """The guest's serial output as virtlogd writes it, read as lines without CR."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def text(self) -> str:
        try:
            return self.path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def lines(self) -> list[str]:
        return [line.rstrip("\r") for line in self.text().split("\n")]

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.lines()[-count:])

    def wait_for(
        self,
        predicate: Callable[[list[str]], bool],
        what: str,
        timeout: float = BOOT_TIMEOUT,
        poll: float = 0.05,
    ) -> float:
        """Poll until predicate(lines) holds; return the seconds waited."""
        started = time.monotonic()
        while True:
            if predicate(self.lines()):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"no {what} in the serial log after {timeout:.0f} s; log ends with:\n"
                    f"{self.tail()}"
                )
            time.sleep(poll)

    def wait_for_line(
        self, line: str, timeout: float = BOOT_TIMEOUT, count: int = 1, poll: float = 0.05
    ) -> float:
        return self.wait_for(lambda lines: lines.count(line) >= count, repr(line), timeout, poll)


def _unwrapped(text: str) -> str:
    return text.replace("\r", "").replace("\n", "")


class Guest:
    """A running domain on a fresh qcow2 overlay; closing it removes everything it made."""

    def __init__(self, conn: libvirt.virConnect, spec: GuestSpec) -> None:
        self.conn = conn
        self.spec = spec
        self.overlay = spec.workdir / f"{spec.name}-vda.qcow2"
        self.serial = SerialLog(spec.workdir / f"{spec.name}-serial.log")
        self.dom: libvirt.virDomain | None = None
        self.started_at = 0.0
        self._made: list[Path] = []
        tag = secrets.token_bytes(2).hex(":")
        self.nics = [
            SocketNic(mac=f"52:54:00:{tag}:{index:02x}", port=free_local_port())
            for index in range(spec.nics)
        ]

    def start(self) -> Guest:
        subprocess.run(
            [
                "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                "-b", str(self.spec.disk_image.resolve()), str(self.overlay),
            ],
            check=True,
        )  # fmt: skip
        kernel = None
        if self.spec.direct_kernel:
            # Private copies: libvirt relabels a domain's kernel and initrd while it runs.
            kernel = (self._copy_beside("vmlinuz"), self._copy_beside("initrd.gz"))
        xml = domain_xml(self.spec, self.overlay, self.serial.path, self.nics, kernel)
        self.dom = self.conn.defineXML(xml)
        self.started_at = time.monotonic()
        self.dom.create()
        return self

    def _copy_beside(self, name: str) -> Path:
        target = self.spec.workdir / f"{self.spec.name}-{name}"
        shutil.copyfile(self.spec.disk_image.parent / name, target)
        self._made.append(target)
        return target

    def is_active(self) -> bool:
        assert self.dom is not None
        return bool(self.dom.isActive())

    def wait_stopped(self, timeout: float = 60.0) -> float:
        started = time.monotonic()
        while self.is_active():
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"{self.spec.name} still running after {timeout:.0f} s; serial log ends:\n"
                    f"{self.serial.tail()}"
                )
            time.sleep(0.1)
        return time.monotonic() - started

    def console_type(self, text: str, timeout: float = 30.0) -> None:
        """Type text on the serial console, as a user at the console would.

        Returns once the guest has echoed it: finishing the stream earlier can drop the
        keystrokes libvirtd has not yet written to the console.
        """
        assert self.dom is not None
        echo = text.splitlines()[0] if text.strip() else text
        seen_before = len(self.serial.text())
        stream = self.conn.newStream(0)
        self.dom.openConsole(None, stream, 0)
        try:
            data = text.encode()
            while data:
                sent = stream.send(data)
                if sent <= 0:
                    raise RuntimeError(f"console stream of {self.spec.name} refused data")
                data = data[sent:]
            # The shell wraps its echo at the terminal width: compare without line breaks.
            self.serial.wait_for(
                lambda _lines: echo in _unwrapped(self.serial.text()[seen_before:]),
                f"echo of {echo!r}",
                timeout,
            )
        finally:
            stream.finish()

    def send_ctrl_alt_del(self) -> None:
        assert self.dom is not None
        # Linux input keycodes: KEY_LEFTCTRL, KEY_LEFTALT, KEY_DELETE.
        self.dom.sendKey(libvirt.VIR_KEYCODE_SET_LINUX, 0, [29, 56, 111], 3, 0)

    def close(self) -> None:
        if self.dom is not None:
            try:
                if self.dom.isActive():
                    self.dom.destroy()
            except libvirt.libvirtError:
                pass  # already gone: stopping by itself is what some tests wait for
            try:
                self.dom.undefine()
            except libvirt.libvirtError:
                pass
            self.dom = None
        for path in (self.overlay, self.serial.path, *self._made):
            path.unlink(missing_ok=True)

    def __enter__(self) -> Guest:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def remove_scratch_dir(path: Path) -> None:
    if path.name.startswith("sfcloud-test-") and path.parent == Path("/var/tmp"):
        shutil.rmtree(path, ignore_errors=True)
    else:  # a guard against deleting something that make_scratch_dir did not make
        raise ValueError(f"refusing to remove {path}")


def guest_timings(lines: list[str]) -> dict[str, float]:
    """Guest uptimes (s) at the points its init reports as "sfcloud-init: timing NAME UPTIME"."""
    timings: dict[str, float] = {}
    for line in lines:
        words = line.split()
        if len(words) == 4 and words[:2] == ["sfcloud-init:", "timing"]:
            try:
                timings[words[2]] = float(words[3])
            except ValueError:
                continue
    return timings


__all__ = [
    "BOOT_TIMEOUT",
    "Guest",
    "GuestSpec",
    "SerialLog",
    "SocketNic",
    "domain_xml",
    "guest_timings",
    "make_config_drive",
    "make_scratch_dir",
    "open_libvirt",
    "remove_scratch_dir",
    "unique_name",
]
