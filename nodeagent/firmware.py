"""UEFI boot firmware for guests: Debian's OVMF, as Shaken Fist uses it.

A node offers UEFI when Debian's ``ovmf`` package is installed, and secure
boot when its secure-boot build is there too; the node registers what it
offers (NodeInfo.firmware) and the portal places an instance that asks for
UEFI only on a node that offers it, so ``uefi: true`` never silently boots
BIOS. The paths are Shaken Fist's (the 2 MiB builds), so an NVRAM template
taken from a Shaken Fist guest fits.

Each UEFI guest keeps its variable store in its own directory: libvirt
copies the template there on first start (OVMF's empty store, or with
secure boot the one with Microsoft's keys enrolled), unless the instance
brought its own template, which the agent copies there first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nodeagent import records

OVMF_DIR = Path("/usr/share/OVMF")
NVRAM_FILE = "nvram"
UEFI = "uefi"
SECURE_BOOT = "secure-boot"


class FirmwareMissing(Exception):
    """This node lacks the firmware an instance asks for."""


@dataclass(frozen=True)
class Build:
    """One OVMF build: its code (read-only flash) and its variables template."""

    code: str
    variables: str
    secure: bool

    def present(self, directory: Path) -> bool:
        return (directory / self.code).is_file() and (directory / self.variables).is_file()


PLAIN = Build("OVMF_CODE.fd", "OVMF_VARS.fd", secure=False)
# Secure boot, with Microsoft's keys enrolled (what a signed shim expects).
SECURE = Build("OVMF_CODE.secboot.fd", "OVMF_VARS.ms.fd", secure=True)


@dataclass(frozen=True)
class Loader:
    """What the domain XML says about an instance's UEFI firmware."""

    code: Path
    secure: bool
    nvram: Path
    # The template libvirt copies on first start; None when the instance
    # brought its own variables (already copied to ``nvram``).
    template: Path | None

    @property
    def variables_size(self) -> int:
        """The size OVMF expects of a variable store for this build."""
        variables = self.template or self.code.with_name(
            SECURE.variables if self.secure else PLAIN.variables)
        return variables.stat().st_size


def offered(directory: Path = OVMF_DIR) -> list[str]:
    """The firmware this node can boot guests with, beyond BIOS."""
    found = []
    if PLAIN.present(directory):
        found.append(UEFI)
        if SECURE.present(directory):
            found.append(SECURE_BOOT)
    return found


def loader(instance_dir: Path, *, secure_boot: bool, own_template: bool,
           directory: Path = OVMF_DIR) -> Loader:
    build = SECURE if secure_boot else PLAIN
    if not build.present(directory):
        what = "secure boot" if secure_boot else "UEFI"
        raise FirmwareMissing(f"this node has no {what} firmware: install Debian's ovmf "
                              f"package ({directory / build.code} is missing)")
    # The variable store is written by QEMU and, from an instance's own
    # template, by this agent: a file of the instance's directory, never a
    # link out of it (records.contained).
    return Loader(code=directory / build.code, secure=build.secure,
                  nvram=records.contained(instance_dir, NVRAM_FILE),
                  template=None if own_template else directory / build.variables)


def check_template(size: int, expected_size: int) -> None:
    """An instance's own variable store (``size`` bytes as raw data) must be
    one for this OVMF build (QEMU refuses a flash of another size at start,
    with a cryptic message)."""
    if size != expected_size:
        raise FirmwareMissing(
            f"the NVRAM template is {size} bytes; this node's OVMF needs a variable store of "
            f"{expected_size} bytes (from OVMF_VARS.fd of Debian's ovmf package)")
