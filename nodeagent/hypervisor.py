"""The agent's connection to libvirt.

libvirt's calls block, so they run in worker threads; its events (a guest
started, paused, powered itself off) are delivered on the agent's asyncio
loop through libvirtaio. If libvirtd restarts, the connection is reopened
and the agent is told to look at everything again.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import libvirt
import libvirtaio

from nodeagent.domainxml import DomainOwner, interface_macs, read_owner

log = logging.getLogger(__name__)

# libvirt prints every error to stderr unless told otherwise; we log our own.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)

_POWER_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "on",
    libvirt.VIR_DOMAIN_RUNNING: "on",
    libvirt.VIR_DOMAIN_BLOCKED: "on",
    libvirt.VIR_DOMAIN_SHUTDOWN: "on",  # shutting down, still running
    libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_PMSUSPENDED: "paused",
    libvirt.VIR_DOMAIN_SHUTOFF: "off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed",
}
_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)
# What a usage sample reads of each guest (nothing costly: no dirty-rate
# measurement, no per-vCPU detail beyond the count).
_USAGE_STATS = (
    libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_INTERFACE
    | libvirt.VIR_DOMAIN_STATS_BLOCK
)
_event_impl_registered = False


def power_state_of(code: int) -> str:
    """Our word for a libvirt domain state (``virDomain.state()[0]``)."""
    return _POWER_STATES.get(code, "on")


class HypervisorError(Exception):
    """libvirt refused something; the message is libvirt's own."""


class DomainNotRunning(HypervisorError):
    """The domain is missing or stopped, so it has no console to open."""


@dataclass(frozen=True)
class DomainState:
    uuid: str
    power_state: str
    owner: DomainOwner | None


def _flags(dom: libvirt.virDomain) -> int:
    """A device change for the definition, and the running guest too."""
    live = libvirt.VIR_DOMAIN_AFFECT_LIVE if dom.isActive() else 0
    return libvirt.VIR_DOMAIN_AFFECT_CONFIG | live


def _is_missing(exc: libvirt.libvirtError) -> bool:
    return exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


def _watch_connection(conn: libvirt.virConnect, closed: Callable[..., None]) -> None:
    """Keepalives and a close callback, for a libvirtd at the other end of a
    socket. An in-process driver (the test driver of a simulated node:
    nodeagent.simulated) has neither, and cannot lose its connection."""
    try:
        conn.setKeepAlive(5, 3)
        conn.registerCloseCallback(closed, None)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            raise


class Hypervisor:
    def __init__(
        self,
        uri: str,
        *,
        on_domain_event: Callable[[str], None],
        on_reconnect: Callable[[], None],
    ):
        self._uri = uri
        self._on_domain_event = on_domain_event
        self._on_reconnect = on_reconnect
        self._conn: libvirt.virConnect | None = None
        self._connect_lock = asyncio.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._undefine_flags = _UNDEFINE_FLAGS

    # --- connection -------------------------------------------------------------

    async def connect(self) -> None:
        global _event_impl_registered
        async with self._connect_lock:
            if self._conn is not None and self._conn.isAlive():
                return
            self._loop = asyncio.get_running_loop()
            if not _event_impl_registered:
                # Must happen before the first open(), or no events arrive.
                libvirtaio.virEventRegisterAsyncIOImpl(loop=self._loop)
                _event_impl_registered = True
            conn = await asyncio.to_thread(libvirt.open, self._uri)
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle_event, None
            )
            # A device the guest let go of (a NIC unplugged): its release can follow.
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, self._device_removed, None
            )
            _watch_connection(conn, self._closed)
            if conn.getType() == "TEST":
                # libvirt's test driver (a simulated node) keeps no NVRAM and
                # refuses the flag that removes it.
                self._undefine_flags = _UNDEFINE_FLAGS & ~libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
            self._conn = conn
            log.info("connected to %s", self._uri)

    def _lifecycle_event(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        self._on_domain_event(dom.UUIDString())

    def _device_removed(self, _conn: Any, dom: Any, _alias: str, _opaque: Any) -> None:
        self._on_domain_event(dom.UUIDString())

    def _closed(self, _conn: Any, reason: int, _opaque: Any) -> None:
        log.warning("libvirt connection closed (reason %d); reconnecting", reason)
        self._conn = None
        assert self._loop is not None
        self._loop.create_task(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.5
        while True:
            try:
                await self.connect()
                self._on_reconnect()
                return
            except libvirt.libvirtError as exc:
                log.warning("libvirt reconnect failed: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.unregisterCloseCallback()
            except libvirt.libvirtError:
                pass
            await asyncio.to_thread(conn.close)

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._conn is None:
            await self.connect()
        try:
            return await asyncio.to_thread(fn, *args)
        except libvirt.libvirtError as exc:
            if _is_missing(exc) or exc.get_error_code() == libvirt.VIR_ERR_OPERATION_INVALID:
                raise DomainNotRunning(exc.get_error_message() or str(exc)) from exc
            raise HypervisorError(exc.get_error_message() or str(exc)) from exc

    def _lookup(self, uuid: str) -> libvirt.virDomain | None:
        assert self._conn is not None
        try:
            return self._conn.lookupByUUIDString(uuid)
        except libvirt.libvirtError as exc:
            if _is_missing(exc):
                return None
            raise

    # --- queries ------------------------------------------------------------------

    async def state(self, uuid: str) -> DomainState | None:
        def query() -> DomainState | None:
            dom = self._lookup(uuid)
            if dom is None:
                return None
            try:
                state, _reason = dom.state()
                owner = read_owner(ET.fromstring(dom.XMLDesc(0)))
            except libvirt.libvirtError as exc:
                if _is_missing(exc):  # undefined between lookup and query
                    return None
                raise
            return DomainState(uuid, power_state_of(state), owner)

        return await self._run(query)

    async def owned_domains(self, owner: DomainOwner) -> list[str]:
        """UUIDs of every domain on this libvirtd that carries our mark."""
        def query() -> list[str]:
            assert self._conn is not None
            found = []
            for dom in self._conn.listAllDomains(0):
                try:
                    if read_owner(ET.fromstring(dom.XMLDesc(0))) == owner:
                        found.append(dom.UUIDString())
                except libvirt.libvirtError as exc:
                    if not _is_missing(exc):
                        raise
            return found

        return await self._run(query)

    async def domain_stats(self) -> list[tuple[str, dict[str, Any]]]:
        """(uuid, statistics) of every running domain on this libvirtd, in one
        call: CPU time, memory, and every disk's and interface's counters.

        A domain busy with something else (starting, a snapshot) is not waited
        for: what QEMU would have to be asked for is left out of its record."""
        def query() -> list[tuple[str, dict[str, Any]]]:
            assert self._conn is not None
            records = self._conn.getAllDomainStats(
                _USAGE_STATS, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE
                | libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)
            return [(dom.UUIDString(), stats) for dom, stats in records]

        return await self._run(query)

    async def console_log_path(self, uuid: str) -> str | None:
        def query() -> str | None:
            dom = self._lookup(uuid)
            if dom is None:
                return None
            log_element = ET.fromstring(dom.XMLDesc(0)).find("devices/serial/log")
            return None if log_element is None else log_element.get("file")

        return await self._run(query)

    # --- changes ------------------------------------------------------------------

    async def define(self, xml: str) -> None:
        def define() -> None:
            assert self._conn is not None
            self._conn.defineXMLFlags(xml, libvirt.VIR_DOMAIN_DEFINE_VALIDATE)

        await self._run(define)

    async def _act(self, uuid: str, action: Callable[[libvirt.virDomain], Any]) -> bool:
        """Run ``action`` on the domain; False if there is no such domain."""
        def run() -> bool:
            dom = self._lookup(uuid)
            if dom is None:
                return False
            action(dom)
            return True

        return await self._run(run)

    async def start(self, uuid: str) -> bool:
        return await self._act(uuid, lambda d: d.isActive() or d.create())

    async def destroy(self, uuid: str) -> bool:
        return await self._act(uuid, lambda d: d.isActive() and d.destroy())

    async def undefine(self, uuid: str) -> bool:
        def undefine(dom: libvirt.virDomain) -> None:
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(self._undefine_flags)

        return await self._act(uuid, undefine)

    async def shutdown_acpi(self, uuid: str) -> bool:
        return await self._act(
            uuid, lambda d: d.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
        )

    async def reboot_acpi(self, uuid: str) -> bool:
        return await self._act(uuid, lambda d: d.reboot(libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN))

    async def reset(self, uuid: str) -> bool:
        return await self._act(uuid, lambda d: d.reset(0))

    async def suspend(self, uuid: str) -> bool:
        return await self._act(uuid, lambda d: d.suspend())

    async def resume(self, uuid: str) -> bool:
        return await self._act(uuid, lambda d: d.resume())

    async def interfaces(self, uuid: str) -> dict[str, str]:
        """MAC -> <interface> XML of the domain's NICs: the running guest's
        when it runs, else its definition's."""
        def query() -> dict[str, str]:
            dom = self._lookup(uuid)
            return {} if dom is None else interface_macs(dom.XMLDesc(0))

        return await self._run(query)

    async def plug(self, uuid: str, device_xml: str) -> bool:
        """Add a device to the domain's definition and, if it runs, to the guest."""
        return await self._act(uuid, lambda d: d.attachDeviceFlags(device_xml, _flags(d)))

    async def unplug(self, uuid: str, device_xml: str) -> bool:
        """Ask for a device to go; a running guest lets go of it in its own
        time (a device-removed event follows)."""
        return await self._act(uuid, lambda d: d.detachDeviceFlags(device_xml, _flags(d)))

    # --- consoles -------------------------------------------------------------------

    async def open_console(self, uuid: str) -> libvirt.virStream:
        """A non-blocking stream on the domain's serial console. libvirt
        allows one per domain; the caller shares it between viewers."""
        def open_stream() -> libvirt.virStream:
            dom = self._lookup(uuid)
            if dom is None or not dom.isActive():
                raise DomainNotRunning(f"instance {uuid} is not running")
            assert self._conn is not None
            stream = self._conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
            try:
                dom.openConsole(None, stream, 0)
            except libvirt.libvirtError as exc:
                stream.abort()
                # A guest powering off: its console goes a moment before
                # the domain does. Say what it has come to.
                if not dom.isActive():
                    raise DomainNotRunning(f"instance {uuid} is not running") from exc
                raise
            return stream

        return await self._run(open_stream)

    async def vnc_socket(self, uuid: str) -> tuple[str, ET.Element]:
        """The running domain's VNC unix socket and its live <graphics> element."""
        def query() -> tuple[str, ET.Element]:
            dom = self._lookup(uuid)
            if dom is None or not dom.isActive():
                raise DomainNotRunning(f"instance {uuid} is not running")
            graphics = ET.fromstring(dom.XMLDesc(0)).find("devices/graphics[@type='vnc']")
            if graphics is None:
                raise HypervisorError(f"instance {uuid} has no graphical console")
            listen = graphics.find("listen[@type='socket']")
            path = (listen.get("socket") if listen is not None else None) or graphics.get("socket")
            if not path:
                raise HypervisorError(f"instance {uuid}'s VNC server is not on a unix socket")
            return path, graphics

        return await self._run(query)

    async def set_vnc_password(
        self, uuid: str, graphics: ET.Element, password: str, valid_until: str
    ) -> None:
        """Change the running domain's VNC password, expiring at ``valid_until``
        (UTC, YYYY-MM-DDTHH:MM:SS). libvirt wants the whole <graphics> element
        back, listen included, or it refuses the change."""
        changed = ET.fromstring(ET.tostring(graphics))
        changed.set("passwd", password)
        changed.set("passwdValidTo", valid_until)
        xml = ET.tostring(changed, encoding="unicode")

        def update() -> None:
            dom = self._lookup(uuid)
            if dom is None:
                raise DomainNotRunning(f"instance {uuid} is not running")
            dom.updateDeviceFlags(xml, libvirt.VIR_DOMAIN_AFFECT_LIVE)

        await self._run(update)
