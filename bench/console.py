"""What the console path costs: keystroke echo and VNC throughput.

    python bench/console.py [--keys 40] [--rounds 3]

On one booted guest, in the same run, alternating:
  echo      a key sent, until the guest's echo of it comes back:
            sfcloud   browser websocket -> portal -> agent relay -> libvirt console stream
            baseline  a libvirt console stream opened directly on the domain
  vnc       full-screen raw frames, requested one after the other, for 4 s:
            sfcloud   browser websocket -> portal -> agent relay -> QEMU's VNC socket
            baseline  websockify on the same VNC socket (the usual noVNC proxy)
Figures are medians (and p95 for the echo) of everything measured.
"""

from __future__ import annotations

import argparse
import datetime
import json
import secrets
import shutil
import statistics
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
from support import percentile, running_cloud
from websockets.sync.client import ClientConnection, connect

from nodeagent.consoles import rfb
from tests.support.cloud import Cloud, free_port, wait_for
from tests.support.consoles import open_console, read_until, web_login

libvirt.registerErrorHandler(lambda _c, _e: None, None)
VNC_SECONDS = 4.0


# --- keystroke echo --------------------------------------------------------------------


def echo_through_portal(cloud: Cloud, uuid: str, keys: int) -> list[float]:
    session = web_login(cloud.url, "admin", cloud.admin_password)
    ws, _ = open_console(session, cloud.url, uuid)
    try:
        ws.send(b"\x15\r")
        read_until(ws, b"# ")
        times = []
        for index in range(keys):
            key = b"abcdefghij"[index % 10:index % 10 + 1]
            started = time.perf_counter()
            ws.send(key)
            read_until(ws, key, timeout=10)
            times.append(time.perf_counter() - started)
        ws.send(b"\x15")  # clear the line again
        return times
    finally:
        ws.close()


def echo_direct(uuid: str, keys: int) -> list[float]:
    conn = libvirt.open("qemu:///system")
    try:
        dom = conn.lookupByUUIDString(uuid)
        # The agent lets go of the console when its last viewer leaves.
        stream = wait_for(lambda: _try_open_console(conn, dom), 10, "the console to be free")
        try:
            stream.send(b"\x15\r")
            _recv_until(stream, b"# ")
            times = []
            for index in range(keys):
                key = b"abcdefghij"[index % 10:index % 10 + 1]
                started = time.perf_counter()
                stream.send(key)
                _recv_until(stream, key)
                times.append(time.perf_counter() - started)
            stream.send(b"\x15")
            return times
        finally:
            stream.finish()
    finally:
        conn.close()


def _try_open_console(conn: libvirt.virConnect, dom: libvirt.virDomain) -> object:
    stream = conn.newStream(0)
    try:
        dom.openConsole(None, stream, 0)
    except libvirt.libvirtError:
        stream.abort()
        return None
    return stream


def _recv_until(stream: libvirt.virStream, marker: bytes) -> None:
    seen = b""
    while marker not in seen:
        seen += stream.recv(4096)


# --- VNC throughput ----------------------------------------------------------------------


def _frames(ws: ClientConnection, width: int, height: int) -> float:
    """MB/s of full raw frames, each requested when the last has arrived."""
    ws.send(struct.pack("!BxH", 2, 1) + struct.pack("!i", 0))
    request = struct.pack("!BBHHHH", 3, 0, 0, 0, width, height)
    frame = width * height * 4
    received = 0
    started = time.perf_counter()
    while time.perf_counter() - started < VNC_SECONDS:
        ws.send(request)
        target = received + frame
        while received < target:
            received += len(ws.recv(timeout=30))
    return received / (time.perf_counter() - started) / 1e6


class Buffered:
    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.buffer = bytearray()

    def read(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self.buffer.extend(self.ws.recv(timeout=30))
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data


def _server_init(reader: Buffered, ws: ClientConnection) -> tuple[int, int]:
    ws.send(b"\x01")
    width, height = struct.unpack("!HH", reader.read(4))
    reader.read(16)
    (length,) = struct.unpack("!I", reader.read(4))
    reader.read(length)
    return width, height


def vnc_through_portal(cloud: Cloud, uuid: str) -> float:
    session = web_login(cloud.url, "admin", cloud.admin_password)
    ws, _ = open_console(session, cloud.url, uuid, "vnc")
    try:
        reader = Buffered(ws)
        assert reader.read(12) == rfb.VERSION_38
        ws.send(rfb.VERSION_38)
        assert reader.read(2) == bytes([1, rfb.SECURITY_NONE])
        ws.send(bytes([rfb.SECURITY_NONE]))
        assert reader.read(4) == bytes(4)
        return _frames(ws, *_server_init(reader, ws))
    finally:
        ws.close()


def vnc_socket(uuid: str) -> tuple[str, ET.Element]:
    conn = libvirt.open("qemu:///system")
    try:
        graphics = ET.fromstring(conn.lookupByUUIDString(uuid).XMLDesc(0)).find(
            "devices/graphics")
        assert graphics is not None
        return graphics.find("listen").get("socket"), graphics  # type: ignore[union-attr]
    finally:
        conn.close()


def vnc_through_websockify(uuid: str, port: int) -> float:
    _, graphics = vnc_socket(uuid)
    password = secrets.token_hex(4)
    graphics.set("passwd", password)
    expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=30)
    graphics.set("passwdValidTo", expires.strftime("%Y-%m-%dT%H:%M:%S"))
    conn = libvirt.open("qemu:///system")
    try:
        conn.lookupByUUIDString(uuid).updateDeviceFlags(
            ET.tostring(graphics, encoding="unicode"), libvirt.VIR_DOMAIN_AFFECT_LIVE)
    finally:
        conn.close()
    with connect(f"ws://127.0.0.1:{port}/", subprotocols=["binary"], max_size=None,
                 open_timeout=30) as ws:
        reader = Buffered(ws)
        version = reader.read(12)
        assert version.startswith(b"RFB 003.")
        ws.send(rfb.VERSION_38)
        count = reader.read(1)[0]
        assert rfb.SECURITY_VNC in reader.read(count)
        ws.send(bytes([rfb.SECURITY_VNC]))
        ws.send(rfb.vnc_auth_response(reader.read(16), password))
        assert reader.read(4) == bytes(4), "websockify path: VNC password refused"
        return _frames(ws, *_server_init(reader, ws))


# --- the run -------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=40, help="keystrokes per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    websockify = shutil.which("websockify") or str(Path(sys.executable).with_name("websockify"))

    with running_cloud() as (cloud, _etcd, _image):
        response = cloud.api().post("/instances", {
            "name": "bench-console", "cpus": 1, "memory": 256,
            "disk": [{"size": 1, "base": "demo"}]})
        uuid = response.json()["uuid"]
        cloud.wait_console(uuid, "SFCLOUD-READY")
        time.sleep(2)  # let the boot's last output settle

        relay_echo: list[float] = []
        direct_echo: list[float] = []
        relay_vnc: list[float] = []
        websockify_vnc: list[float] = []
        port = free_port()
        path, _ = vnc_socket(uuid)
        proxy = subprocess.Popen([websockify, f"--unix-target={path}", f"127.0.0.1:{port}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(1)
            for round_number in range(args.rounds):
                relay_echo += echo_through_portal(cloud, uuid, args.keys)
                direct_echo += echo_direct(uuid, args.keys)
                relay_vnc.append(vnc_through_portal(cloud, uuid))
                websockify_vnc.append(vnc_through_websockify(uuid, port))
                print(f"round {round_number + 1}: echo relay "
                      f"{statistics.median(relay_echo[-args.keys:]) * 1000:.1f} ms, direct "
                      f"{statistics.median(direct_echo[-args.keys:]) * 1000:.1f} ms; VNC relay "
                      f"{relay_vnc[-1]:.1f} MB/s, websockify {websockify_vnc[-1]:.1f} MB/s",
                      flush=True)
        finally:
            proxy.terminate()
            proxy.wait()

    def ms(values: list[float], fraction: float | None = None) -> float:
        value = statistics.median(values) if fraction is None else percentile(values, fraction)
        return value * 1000

    result = {
        "echo_relay_median_ms": round(ms(relay_echo), 2),
        "echo_relay_p95_ms": round(ms(relay_echo, 0.95), 2),
        "echo_direct_median_ms": round(ms(direct_echo), 2),
        "echo_direct_p95_ms": round(ms(direct_echo, 0.95), 2),
        "vnc_relay_mb_s": round(statistics.median(relay_vnc), 1),
        "vnc_websockify_mb_s": round(statistics.median(websockify_vnc), 1),
    }
    print()
    print(f"keystroke echo, n={len(relay_echo)} each: sfcloud median "
          f"{result['echo_relay_median_ms']} ms, p95 {result['echo_relay_p95_ms']} ms | "
          f"direct libvirt console median {result['echo_direct_median_ms']} ms, p95 "
          f"{result['echo_direct_p95_ms']} ms | added "
          f"{result['echo_relay_median_ms'] - result['echo_direct_median_ms']:+.2f} ms (median)")
    print(f"VNC full frames, {args.rounds} x {VNC_SECONDS:.0f} s each: sfcloud "
          f"{result['vnc_relay_mb_s']} MB/s | websockify {result['vnc_websockify_mb_s']} MB/s "
          f"| ratio {result['vnc_relay_mb_s'] / result['vnc_websockify_mb_s']:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
