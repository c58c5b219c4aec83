"""Make one instance on this node match its desired state, and report it.

``reconcile(uuid)`` is level-triggered and idempotent: it compares what etcd
asks for with what libvirt and the disk hold, does only what is missing, and
can be interrupted at any point and run again. Files are made under a
temporary name and renamed, so a crash never leaves a half-made disk that a
later pass would mistake for a finished one.

Only records that passed ``nodeagent.records`` reach it. One that was
refused (its record, or one of its interfaces') is reported as the
instance's error, and nothing is done for it: not built, not changed, and
not torn down either, since a refused record says nothing trustworthy about
what is wanted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pwd
import secrets
import shutil
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

from cloudstate import disklayout
from cloudstate.etcd import Delete, Etcd, Put
from cloudstate.keys import Keys
from cloudstate.mirror import MirrorView
from cloudstate.model import Blob, BlobObserved, Disk, InstanceObserved, InstanceSpec
from nodeagent import configdrive, domainxml, failpoints, firmware, records, simulated
from nodeagent.domainxml import DomainDisk, DomainOwner
from nodeagent.events import EventLog
from nodeagent.hostfacts import Virtualization
from nodeagent.hotplug import NicSync
from nodeagent.hypervisor import Hypervisor, HypervisorError
from nodeagent.images import qemuimg
from nodeagent.images.cache import CachedImage
from nodeagent.images.errors import ImageError
from nodeagent.images.overlay import create_overlay
from nodeagent.images.sync import BlobNotReady, BlobSync
from nodeagent.net.kernel import KernelError
from nodeagent.net.ports import Ports
from nodeagent.snapshots import SnapshotTaker

log = logging.getLogger(__name__)

CONFIG_DRIVE = "config.iso"
CONSOLE_LOG = "console.log"
QEMU_USER = "libvirt-qemu"  # Debian's libvirt runs QEMU as this user


class InstanceFailure(Exception):
    """Something about this instance can't be made to work; shown to its owner."""


def config_drive_place(spec: InstanceSpec) -> disklayout.Placed:
    """Where the config drive goes: after the first disk, on its bus."""
    first = spec.disks[0]
    return disklayout.config_drive(disklayout.Placed(first.device, first.bus, first.type))


def boot_order(disks: list[DomainDisk]) -> list[DomainDisk]:
    """The first disk boots. When it is an nvme disk (a QEMU argument), the
    first disk libvirt knows comes next: a libvirt disk without a boot order
    would otherwise be given boot index 1 as well, which QEMU refuses."""
    ordered = [dataclasses.replace(disks[0], boot_order=1), *disks[1:]]
    if ordered[0].bus == "nvme":
        for index, disk in enumerate(ordered):
            if disk.bus != "nvme":
                ordered[index] = dataclasses.replace(disk, boot_order=2)
                break
    return ordered


def qemu_owns(path: Path) -> None:
    """Hand a file QEMU opens itself (an nvme disk, given as a QEMU argument
    rather than a libvirt disk) to QEMU's user: libvirt only does that for
    the disks it knows of."""
    try:
        user = pwd.getpwnam(QEMU_USER)
    except KeyError:
        return  # libvirt runs QEMU as root here
    os.chown(path, user.pw_uid, user.pw_gid)


async def _copy_nvram(template: CachedImage, loader: firmware.Loader) -> None:
    """The instance's own UEFI variable store, from its template image (raw
    bytes, as OVMF reads them), under a temporary name first. The size is
    checked before anything is written; qemu-img's messages name files of
    this node, so they go to the log and the instance gets a plain reason."""
    firmware.check_template(template.virtual_size, loader.variables_size)
    tmp = loader.nvram.with_name(f".{loader.nvram.name}.tmp")
    try:
        await qemuimg.run(["convert", "-q", "-U", "-f", template.format, "-O", "raw",
                           str(template.path), str(tmp)], timeout=60)
        firmware.check_template(tmp.stat().st_size, loader.variables_size)
    except (qemuimg.QemuImgFailed, TimeoutError) as exc:
        tmp.unlink(missing_ok=True)
        raise InstanceFailure("the NVRAM template could not be read as a disk image "
                              "(the node's log says why)") from exc
    except firmware.FirmwareMissing:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, loader.nvram)


@dataclass(frozen=True)
class InstanceContext:
    """What the reconciler needs to know about this node."""

    owner: DomainOwner
    virt: Virtualization
    instances_dir: Path
    domain_template: Path | None
    # A simulated hypervisor (nodeagent.simulated): disks are sparse files
    # and no base image is fetched.
    simulated: bool = False


class InstanceReconciler:
    def __init__(
        self,
        *,
        context: InstanceContext,
        keys: Keys,
        etcd: Etcd,
        mirror: MirrorView,
        hypervisor: Hypervisor,
        images: BlobSync,
        ports: Ports,
        events: EventLog | None = None,
    ):
        self._ctx = context
        self._keys = keys
        self._etcd = etcd
        self._mirror = mirror
        self._hv = hypervisor
        self._images = images
        self._events = events
        self._snapshots = SnapshotTaker(hypervisor=hypervisor, images=images, events=events)
        self._ports = ports
        self._nics = NicSync(hypervisor=hypervisor, ports=ports, etcd=etcd, mirror=mirror,
                             events=events)

    @property
    def node(self) -> str:
        return self._ctx.owner.node

    # --- reading desired and observed state ---------------------------------------

    def spec(self, uuid: str) -> tuple[InstanceSpec, int] | None:
        kv = self._mirror.get(self._keys.instance(uuid))
        return None if kv is None else (InstanceSpec.from_json(kv.value), kv.mod_revision)

    def observed(self, uuid: str) -> InstanceObserved | None:
        kv = self._mirror.get(self._keys.observed_instance(uuid))
        return None if kv is None else InstanceObserved.from_json(kv.value)

    def pending_snapshots(self, uuid: str) -> list[Blob]:
        """Snapshots of this instance asked of this node and not yet taken.
        One found "creating" was interrupted (this pass is the only one that
        takes them), and is taken again."""
        found = []
        for kv in self._mirror.items(self._keys.blobs):
            blob = Blob.from_json(kv.value)
            if (blob.origin == "snapshot" and blob.instance_uuid == uuid
                    and blob.node == self.node and blob.desired != "deleted"):
                observed = self._images.observed(blob.uuid)
                if observed is None or observed.state == "creating":
                    found.append(blob)
        return sorted(found, key=lambda blob: (blob.created_at, blob.device or ""))

    def instance_dir(self, uuid: str) -> Path:
        # The uuid becomes a path: make sure it can't be anything but a uuid,
        # and that it stays in our directory.
        try:
            return records.contained(self._ctx.instances_dir, str(uuidlib.UUID(uuid)))
        except (ValueError, records.BadRecord) as exc:
            raise InstanceFailure(f"no directory for instance {uuid!r}: {exc}") from None

    @staticmethod
    def _in(directory: Path, name: str) -> Path:
        """A file of the instance's own directory, by a name from its record."""
        try:
            return records.contained(directory, name)
        except records.BadRecord as exc:
            raise InstanceFailure(str(exc)) from None

    def local_instances(self) -> set[str]:
        """Every instance this node has anything of: a directory or a domain
        is added by the caller; here, the directories."""
        if not self._ctx.instances_dir.exists():
            return set()
        found = set()
        for entry in self._ctx.instances_dir.iterdir():
            try:
                found.add(str(uuidlib.UUID(entry.name)))
            except ValueError:
                continue
        return found

    # --- the reconcile pass ---------------------------------------------------------

    async def reconcile(self, uuid: str) -> None:
        refused = self._mirror.refused(self._keys.instance(uuid))
        if refused is not None:
            await self._report_refused(uuid, refused.kv.value, refused.reason,
                                       refused.kv.mod_revision)
            return
        found = self.spec(uuid)
        spec, spec_revision = found if found else (None, 0)
        if spec is None and await self._copy_missing(uuid):
            return
        if spec is None or spec.node != self.node:
            await self._teardown(uuid)
            observed = self.observed(uuid)
            if spec is None and observed is not None and observed.node == self.node:
                await self._etcd.txn([], [Delete(key) for key in self._observed_keys(uuid)])
            return
        if spec.desired == "deleted":
            await self._fail_snapshots(uuid, "the instance was deleted before it was taken")
            await self._teardown(uuid)
            await self._report_deleted(spec)
            return

        observed = self.observed(uuid)
        if (observed and observed.state == "error"
                and observed.failed_spec_revision == spec_revision):
            await self._fail_snapshots(uuid, f"the instance is in error: {observed.error}")
            return  # it failed for this very spec; a changed spec retries
        if why := self._refused_interface(spec):
            # Its NICs can't be known; a pass once the record is fixed builds
            # it (the sweep comes back: this error records no spec revision).
            await self._report(spec, state="error", error=why,
                               power_state=(await self._power_state(uuid)) or "off")
            return
        try:
            await self._snapshots.resume_if_we_paused(spec, self.instance_dir(uuid))
            await self._converge(spec, observed)
        except BlobNotReady as exc:
            # A base still being made elsewhere; its observed record changing
            # queues this instance again.
            log.info("instance %s waits: %s", uuid, exc)
            return
        except (InstanceFailure, ImageError, HypervisorError, domainxml.DomainXMLError,
                KernelError) as exc:
            log.warning("instance %s failed: %s", uuid, exc)
            await self._report(
                spec, state="error", error=str(exc), failed_spec_revision=spec_revision,
                power_state=(await self._power_state(uuid)) or "off",
            )
            return
        if snapshots := self.pending_snapshots(uuid):
            try:
                await self._snapshots.take(spec, self.instance_dir(uuid), snapshots)
            except (ImageError, HypervisorError, OSError) as exc:
                log.warning("snapshot of %s failed: %s", uuid, exc)
                for blob in snapshots:
                    await self._images.report(blob.uuid, BlobObserved(
                        state="error", error=str(exc)))

    async def _copy_missing(self, uuid: str) -> bool:
        """Whether the instance's desired record is still there though this
        node's copy of it (what the agent follows: nodeagent.scope) is not: a
        record written before the copies, until the portal's janitor copies
        it. Nothing of such an instance is torn down meanwhile."""
        kv = await self._etcd.get(self._keys.instance(uuid))
        if kv is None or records.claimed_node(kv.value) != self.node:
            return False
        log.warning("instance %s: its record has no copy for node %s yet; left as it is",
                    uuid, self.node)
        return True

    def _refused_interface(self, spec: InstanceSpec) -> str | None:
        for iface in spec.interfaces:
            refused = self._mirror.refused(self._keys.interface(iface))
            if refused is not None:
                return f"the agent refused the record of its interface {iface}: {refused.reason}"
        return None

    async def _report_refused(self, uuid: str, value: bytes, reason: str,
                              revision: int) -> None:
        """Say why an instance's record is not acted on, as its error, if the
        record names this node or this node holds something of it."""
        if not records.is_uuid(uuid):
            log.warning("ignoring the instance record at %s: %s", uuid, reason)
            return
        ours = (records.claimed_node(value) == self.node or uuid in self.local_instances()
                or await self._hv.state(uuid) is not None)
        if not ours:
            return
        log.warning("instance %s: record refused: %s", uuid, reason)
        found = self.observed(uuid)
        current = found or InstanceObserved(node=self.node)
        wanted = current.replace(node=self.node, state="error",
                                 error=f"the node agent refused its record: {reason}",
                                 failed_spec_revision=revision)
        if found is not None and wanted.replace(updated_at=0) == found.replace(updated_at=0):
            return
        wanted = wanted.replace(updated_at=time.time())
        result = await self._etcd.txn([], self._put_observed(uuid, wanted))
        self._emit_changes(uuid, found, wanted)
        await self._mirror.wait_for_revision(result.revision, keys=self._observed_keys(uuid))

    async def _fail_snapshots(self, uuid: str, why: str) -> None:
        for blob in self.pending_snapshots(uuid):
            await self._images.report(blob.uuid, BlobObserved(state="error", error=why))

    async def _converge(self, spec: InstanceSpec, observed: InstanceObserved | None) -> None:
        applied = observed.applied_power_generation if observed else 0
        domain = await self._hv.state(spec.uuid)
        if domain is None:
            built_before = observed is not None and observed.state in ("created", "error")
            if not built_before:
                await self._report(spec, state="creating", power_state="off")
            started = time.monotonic()
            await self._build(spec, repairing=built_before)
            self._emit(spec.uuid, "domain rebuilt after it went missing" if built_before
                       else "disks, config drive and domain made",
                       duration=time.monotonic() - started)
        if spec.power.generation > applied:
            first_boot = observed is None or observed.state == "creating"
            if first_boot and spec.power.action == "on" and self._ports.not_ready(spec):
                # Its DHCP entries are not in place yet: a guest booted now
                # would ask for an address nobody answers. A change to the
                # network's observed state queues us again.
                return
            started = time.monotonic()
            await self._apply_power(spec)
            failpoints.hit("after-power")
            applied = spec.power.generation
            self._emit(spec.uuid, f"power action {spec.power.action} applied",
                       duration=time.monotonic() - started,
                       extra={"generation": spec.power.generation})
        running = await self._power_state(spec.uuid) in ("on", "paused")
        # Interfaces added or removed since the domain was defined (hot plug).
        await self._nics.sync(spec, running=running)
        if running:
            await self._ports.attach(spec)
        await self._report(
            spec, state="created", error=None, applied_power_generation=applied,
            power_state=(await self._power_state(spec.uuid)) or "off",
        )

    async def _power_state(self, uuid: str) -> str | None:
        domain = await self._hv.state(uuid)
        return None if domain is None else domain.power_state

    # --- building ---------------------------------------------------------------------

    async def _build(self, spec: InstanceSpec, *, repairing: bool) -> None:
        # Images first: a failed download leaves nothing of the instance behind.
        bases = {disk.device: await self._base_image(disk) for disk in spec.disks}
        directory = self.instance_dir(spec.uuid)
        directory.mkdir(parents=True, exist_ok=True)
        # qemu runs as its own user; it must be able to reach the files
        # libvirt hands it (which libvirt chowns), but not list the directory.
        for path in (self._ctx.instances_dir, directory):
            os.chmod(path, 0o711)  # noqa: S103 - traverse only, no listing
        for stale in directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)  # left by a pass that was killed

        disks = [
            await self._ensure_disk(disk, bases[disk.device], directory, repairing=repairing)
            for disk in spec.disks
        ]
        disks = boot_order(disks)
        failpoints.hit("after-disks")
        self._write_config_drive(spec)
        if spec.configdrive != "none":
            place = config_drive_place(spec)
            disks.insert(1, DomainDisk(device=place.device, bus=place.bus,
                                       path=directory / CONFIG_DRIVE, format="raw",
                                       # QEMU's AHCI has no read-only disks.
                                       readonly=place.bus != "sata"))
        loader = await self._firmware(spec, directory)
        xml = domainxml.render(
            template_path=self._ctx.domain_template,
            owner=self._ctx.owner,
            uuid=spec.uuid,
            domain_name=spec.domain_name,
            name=spec.name,
            namespace=spec.namespace,
            cpus=spec.cpus,
            memory_mib=spec.memory,
            virt_type=self._ctx.virt.virt_type,
            machine=spec.machine_type or self._ctx.virt.machine,
            disks=disks,
            interfaces=await self._ports.ensure_ports(spec),
            console_log=directory / CONSOLE_LOG,
            video_model=str(spec.video.get("model", "cirrus")),
            vnc_password=secrets.token_urlsafe(6)[:8],
            firmware=loader,
        )
        await self._hv.define(xml)
        failpoints.hit("after-define")

    async def _firmware(self, spec: InstanceSpec, directory: Path) -> firmware.Loader | None:
        """A UEFI guest's firmware; its own NVRAM template copied in first."""
        if not spec.uefi:
            return None
        try:
            loader = firmware.loader(directory, secure_boot=spec.secure_boot,
                                     own_template=spec.nvram_template is not None)
            if spec.nvram_template is not None and not loader.nvram.exists():
                template = await self._images.image(spec.nvram_template)
                await _copy_nvram(template, loader)
        except (firmware.FirmwareMissing, records.BadRecord) as exc:
            raise InstanceFailure(str(exc)) from exc
        return loader

    async def _base_image(self, disk: Disk) -> CachedImage | None:
        if disk.source is None or self._ctx.simulated:
            return None
        return await self._images.image(disk.source)

    async def _ensure_disk(
        self, disk: Disk, base: CachedImage | None, directory: Path, *, repairing: bool
    ) -> DomainDisk:
        if disk.type == "cdrom":
            if self._ctx.simulated:
                return DomainDisk(device=disk.device, path=directory / f"{disk.device}.iso",
                                  type="cdrom", bus="ide", format="raw", readonly=True)
            if base is None:
                raise InstanceFailure(f"cdrom {disk.device} has no image to show")
            # Instances made before cdroms moved to usb kept theirs on ide.
            return DomainDisk(device=disk.device, path=base.path, type="cdrom", bus=disk.bus,
                              format=base.format, readonly=True)
        path = self._in(directory, f"{disk.device}.qcow2")
        if not path.exists():
            if repairing:
                # Never silently replace a disk that held the user's data.
                raise InstanceFailure(f"disk {disk.device} is missing from {self.node}")
            if self._ctx.simulated:
                simulated.make_sparse_disk(path, disk.size_gb)
            else:
                await create_overlay(base, path, disk.size_gb)
            failpoints.hit("after-overlay")
        if disk.bus == "nvme":
            qemu_owns(path)
        return DomainDisk(device=disk.device, path=path, bus=disk.bus)

    def _write_config_drive(self, spec: InstanceSpec) -> None:
        if spec.configdrive == "none":
            return
        try:
            user_data = configdrive.decode_user_data(spec.user_data)
        except ValueError as exc:
            raise InstanceFailure(f"user data is not valid base64: {exc}") from exc
        content = configdrive.ConfigDriveContent(
            uuid=spec.uuid,
            name=spec.name,
            hostname=spec.name,
            public_keys={spec.keypair or "sfcloud": spec.ssh_key.strip()} if spec.ssh_key
            else {},
            user_data=user_data,
            network_data=self._ports.network_data(spec),
        )
        path = self.instance_dir(spec.uuid) / CONFIG_DRIVE
        configdrive.write(content, path)
        if config_drive_place(spec).bus == "nvme":
            qemu_owns(path)

    # --- power ------------------------------------------------------------------------

    async def _apply_power(self, spec: InstanceSpec) -> None:
        action = spec.power.action
        state = await self._power_state(spec.uuid)
        if action == "on":
            if state == "off" or state == "crashed":
                self._write_config_drive(spec)  # picks up changes at every boot
                await self._hv.start(spec.uuid)
            elif state == "paused":
                await self._hv.resume(spec.uuid)
        elif action == "off":
            await self._hv.destroy(spec.uuid)
        elif action == "pause":
            if state == "on":
                await self._hv.suspend(spec.uuid)
        elif action == "unpause":
            if state == "paused":
                await self._hv.resume(spec.uuid)
        elif action == "rebootsoft":
            if state == "on":
                await self._hv.reboot_acpi(spec.uuid)
        elif action == "reboothard":
            if state in ("on", "paused", "crashed"):
                await self._hv.destroy(spec.uuid)
            self._write_config_drive(spec)
            await self._hv.start(spec.uuid)
        else:
            raise InstanceFailure(f"unknown power action {action!r}")

    # --- tearing down -----------------------------------------------------------------

    async def _teardown(self, uuid: str) -> None:
        domain = await self._hv.state(uuid)
        if domain is not None and domain.owner == self._ctx.owner:
            await self._hv.undefine(uuid)
        failpoints.hit("mid-teardown")
        directory = self.instance_dir(uuid)
        if directory.exists():
            shutil.rmtree(directory)

    # --- reporting ----------------------------------------------------------------------

    async def _report_deleted(self, spec: InstanceSpec) -> None:
        """Report the instance gone and, in the same transaction, give back
        its interfaces, addresses and MACs: only now that its guest can no
        longer use them may they go to another."""
        releases = self._ports.releases(spec)
        if not releases:
            await self._report(spec, state="deleted", power_state="off", error=None)
            return
        found = self.observed(spec.uuid)
        current = found or InstanceObserved(node=self.node)
        record = current.replace(node=self.node, state="deleted", power_state="off", error=None,
                                 updated_at=time.time())
        failpoints.hit("before-release")
        result = await self._etcd.txn([], [*self._put_observed(spec.uuid, record), *releases])
        self._emit_changes(spec.uuid, found, record)
        self._emit(spec.uuid, "its interfaces, addresses and MACs released", type="mutate")
        await self._mirror.wait_for_revision(
            result.revision, keys=[*self._observed_keys(spec.uuid), *(d.key for d in releases)])

    async def _report(self, spec: InstanceSpec, **fields: object) -> None:
        """Write the observed record, but only if something in it changed."""
        found = self.observed(spec.uuid)
        current = found or InstanceObserved(node=self.node)
        wanted = current.replace(node=self.node, **fields)
        if wanted.replace(updated_at=0) == current.replace(updated_at=0) and found is not None:
            return
        wanted = wanted.replace(updated_at=time.time())
        failpoints.hit("before-report")
        result = await self._etcd.txn([], self._put_observed(spec.uuid, wanted))
        failpoints.hit("after-report")
        self._emit_changes(spec.uuid, found, wanted)
        # Later passes read our own record from the mirror: let it catch up.
        await self._mirror.wait_for_revision(result.revision,
                                             keys=self._observed_keys(spec.uuid))

    def _observed_keys(self, uuid: str) -> list[str]:
        """The observed record, and this node's copy of it (which the agent
        reads: nodeagent.scope)."""
        return [self._keys.observed_instance(uuid),
                self._keys.node_observed_instance(self.node, uuid)]

    def _put_observed(self, uuid: str, record: InstanceObserved) -> list[Put]:
        value = record.to_json()
        return [Put(key, value) for key in self._observed_keys(uuid)]

    def _emit_changes(self, uuid: str, before: InstanceObserved | None,
                      after: InstanceObserved) -> None:
        if before is None or before.state != after.state:
            message = f"state is now {after.state}"
            if after.state == "error" and after.error:
                message += f": {after.error}"
            self._emit(uuid, message, type="status")
        if before is not None and before.power_state != after.power_state:
            self._emit(uuid, f"power state {before.power_state} -> {after.power_state}",
                       type="status")

    def _emit(self, uuid: str, message: str, **kwargs: object) -> None:
        if self._events is not None:
            self._events.emit("instance", uuid, message, **kwargs)  # type: ignore[arg-type]
