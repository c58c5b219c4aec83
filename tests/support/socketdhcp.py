"""A DHCP server at the far end of a QEMU socket NIC, for testing a guest's DHCP client.

A libvirt ``<interface type='server'>`` makes QEMU listen on 127.0.0.1:PORT and carry the NIC's
Ethernet frames over that TCP connection, each prefixed by its length (4 bytes, big endian).
Connecting to it puts this object on the guest's wire, and nothing else is there: no bridge,
no tap, no host network sees a frame. It answers DISCOVER and REQUEST with one fixed lease and
ignores everything else.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

_SERVER_MAC = bytes.fromhex("525400fe0001")
_MAGIC = bytes([99, 130, 83, 99])
_DISCOVER, _OFFER, _REQUEST, _ACK = 1, 2, 3, 5


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _options(raw: bytes) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    i = 0
    while i < len(raw):
        code = raw[i]
        if code == 0:
            i += 1
            continue
        if code == 255 or i + 1 >= len(raw):
            break
        length = raw[i + 1]
        found[code] = raw[i + 2 : i + 2 + length]
        i += 2 + length
    return found


@dataclass
class SocketDhcpServer:
    port: int
    address: str = "10.99.0.42"
    prefix: int = 24
    router: str = "10.99.0.1"
    mtu: int = 1450
    lease_seconds: int = 3600
    acked: list[str] = field(default_factory=list)  # client MACs, one entry per ACK

    def __post_init__(self) -> None:
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self, timeout: float = 10.0) -> SocketDhcpServer:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.port), timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._serve, name="socketdhcp", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def _read_exact(self, count: int) -> bytes | None:
        assert self._sock is not None
        data = b""
        while len(data) < count:
            if self._stop.is_set():
                return None
            try:
                chunk = self._sock.recv(count - len(data))
            except TimeoutError:
                continue
            if not chunk:
                return None  # QEMU went away: the guest was stopped
            data += chunk
        return data

    def _serve(self) -> None:
        while True:
            header = self._read_exact(4)
            if header is None:
                return
            frame = self._read_exact(struct.unpack("!I", header)[0])
            if frame is None:
                return
            reply = self._answer(frame)
            if reply is not None and self._sock is not None:
                self._sock.sendall(struct.pack("!I", len(reply)) + reply)

    def _answer(self, frame: bytes) -> bytes | None:
        if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00":
            return None
        ip_header_len = (frame[14] & 0x0F) * 4
        if frame[14 + 9] != 17:  # UDP
            return None
        udp = 14 + ip_header_len
        if struct.unpack("!H", frame[udp + 2 : udp + 4])[0] != 67:
            return None
        bootp = frame[udp + 8 :]
        if bootp[0] != 1 or bootp[236:240] != _MAGIC:
            return None
        kind = _options(bootp[240:]).get(53)
        if kind == bytes([_DISCOVER]):
            answer = _OFFER
        elif kind == bytes([_REQUEST]):
            answer = _ACK
        else:
            return None
        client_mac = bootp[28:34]
        if answer == _ACK:
            self.acked.append(client_mac.hex(":"))
        return self._reply(bootp, answer)

    def _reply(self, request: bytes, kind: int) -> bytes:
        server_ip = ipaddress.IPv4Address(self.router).packed
        mask = ipaddress.IPv4Network(f"0.0.0.0/{self.prefix}").netmask.packed
        options = b"".join(
            [
                bytes([53, 1, kind]),
                bytes([54, 4]) + server_ip,
                bytes([51, 4]) + struct.pack("!I", self.lease_seconds),
                bytes([1, 4]) + mask,
                bytes([3, 4]) + server_ip,
                bytes([6, 4]) + server_ip,
                bytes([26, 2]) + struct.pack("!H", self.mtu),
                bytes([255]),
            ]
        )
        bootp = (
            bytes([2, 1, 6, 0])
            + request[4:8]  # xid
            + b"\0\0"  # secs
            + request[10:12]  # flags
            + b"\0" * 4  # ciaddr
            + ipaddress.IPv4Address(self.address).packed  # yiaddr
            + server_ip  # siaddr
            + b"\0" * 4  # giaddr
            + request[28:44]  # chaddr
            + b"\0" * 192  # sname, file
            + _MAGIC
            + options
        )
        udp_len = 8 + len(bootp)
        udp = struct.pack("!HHHH", 67, 68, udp_len, 0) + bootp
        broadcast = b"\xff" * 4
        pseudo = server_ip + broadcast + struct.pack("!BBH", 0, 17, udp_len)
        udp = udp[:6] + struct.pack("!H", _checksum(pseudo + udp) or 0xFFFF) + udp[8:]
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 0, 0, 64, 17, 0, server_ip, broadcast
        )
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        return b"\xff" * 6 + _SERVER_MAC + b"\x08\x00" + ip + udp
