"""The virtualization probe (nodeagent.hostfacts) with ``auto``: it picks
software emulation on a host whose KVM hangs, and says why, within the
stated time (PROBE_SECONDS), leaving no probe process behind; and KVM
where a test guest really runs. The host is faked: a KVM device that is a
plain file, a CPU whose flags say vmx, and a QEMU that is a script of the
test's (hanging, failing, or writing the firmware's banner)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from nodeagent.hostfacts import PROBE_SECONDS, ProbeHost, probe_virtualization

FLAGS = "processor\t: 0\nflags\t\t: fpu vme de pse tsc msr pae vmx sse sse2\n"


def fake_host(tmp_path: Path, qemu_script: str, *, vmx: bool = True,
              kvm: bool = True) -> ProbeHost:
    device = tmp_path / "kvm"
    if kvm:
        device.write_bytes(b"")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(FLAGS if vmx else FLAGS.replace(" vmx", ""))
    qemu = tmp_path / "fake-qemu"
    qemu.write_text("#!/bin/sh\n" f"echo $$ > {tmp_path / 'qemu.pid'}\n" + qemu_script)
    qemu.chmod(0o755)
    return ProbeHost(kvm_device=device, cpuinfo=cpuinfo, qemu_binary=str(qemu))


def gone(pid_file: Path) -> bool:
    pid = int(pid_file.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


async def test_a_hanging_kvm_means_software_emulation_within_the_stated_time(
        tmp_path: Path) -> None:
    # It ignores the polite signals, as a QEMU stuck in KVM_RUN would.
    host = fake_host(tmp_path, "trap '' TERM INT HUP\nexec sleep 600\n")
    started = time.monotonic()
    virt = await probe_virtualization("auto", "pc", host)
    took = time.monotonic() - started
    assert virt.virt_type == "qemu"
    assert f"did not run within {PROBE_SECONDS:g} s" in virt.reason, virt.reason
    assert "software emulation" in virt.reason
    assert PROBE_SECONDS - 0.5 <= took <= PROBE_SECONDS + 1.5, took
    assert gone(tmp_path / "qemu.pid"), "the hung probe was left running"


async def test_a_kvm_that_runs_the_firmware_is_used(tmp_path: Path) -> None:
    # Write to the file behind the debug console, as SeaBIOS does at once.
    script = ('for arg in "$@"; do case "$arg" in file,id=firmware,path=*) '
              'echo SeaBIOS > "${arg#file,id=firmware,path=}";; esac; done\nexec sleep 600\n')
    started = time.monotonic()
    virt = await probe_virtualization("auto", "pc", fake_host(tmp_path, script))
    assert virt.virt_type == "kvm", virt.reason
    assert time.monotonic() - started < 2
    assert gone(tmp_path / "qemu.pid")


async def test_a_qemu_that_fails_at_once_is_said_so(tmp_path: Path) -> None:
    virt = await probe_virtualization("auto", "pc", fake_host(tmp_path, "exit 1\n"))
    assert virt.virt_type == "qemu"
    assert "exited with status 1" in virt.reason


@pytest.mark.parametrize("vmx,kvm,words", [
    (False, True, "no vmx/svm flag"),
    (True, False, "no usable"),
])
async def test_no_probe_without_kvm_or_cpu_support(tmp_path: Path, vmx: bool, kvm: bool,
                                                    words: str) -> None:
    started = time.monotonic()
    virt = await probe_virtualization("auto", "pc", fake_host(tmp_path, "exec sleep 600\n",
                                                             vmx=vmx, kvm=kvm))
    assert virt.virt_type == "qemu" and words in virt.reason
    assert time.monotonic() - started < 1
    assert not (tmp_path / "qemu.pid").exists(), "no guest should have been tried"


async def test_a_missing_qemu_is_said_so(tmp_path: Path) -> None:
    host = fake_host(tmp_path, "")
    host = ProbeHost(kvm_device=host.kvm_device, cpuinfo=host.cpuinfo,
                     qemu_binary="no-such-qemu-binary")
    virt = await probe_virtualization("auto", "pc", host)
    assert virt.virt_type == "qemu" and "not installed" in virt.reason


async def test_a_setting_wins_over_the_probe(tmp_path: Path) -> None:
    host = fake_host(tmp_path, "exec sleep 600\n")
    for wanted in ("kvm", "qemu"):
        virt = await probe_virtualization(wanted, "pc", host)
        assert (virt.virt_type, virt.reason) == (wanted, "set by SFCLOUD_VIRT_TYPE")
