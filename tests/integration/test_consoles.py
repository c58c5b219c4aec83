"""Serial and graphical consoles through the portal and the node agent, against
a real guest: output, input, several viewers, scrollback, read-only viewers,
refused tickets and origins, the log API, and the VNC path."""

from __future__ import annotations

import json
import secrets
import struct
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator

import libvirt
import psutil
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from cloudstate.config import REPO_ROOT
from tests.support.cloud import Cloud, wait_for
from tests.support.consoles import (
    SecondPortal,
    add_person,
    open_console,
    open_socket,
    read_until,
    request_ticket,
    ticket,
    web_login,
)

pytestmark = pytest.mark.integration

TEAM = "consoles-team"
PASSWORD = "console-test-pw-1"


def _create(cloud: Cloud, name: str, namespace: str = "system") -> str:
    body = {"name": name, "cpus": 1, "memory": 256, "namespace": namespace,
            "disk": [{"size": 1, "base": "demo"}]}
    response = cloud.api().post("/instances", body)
    assert response.status_code == 200, response.text
    return response.json()["uuid"]


@pytest.fixture(scope="module")
def people(cloud: Cloud) -> dict[str, str]:
    suffix = secrets.token_hex(3)
    names = {role: f"{role}-{suffix}" for role in ("member", "viewer", "outsider")}
    add_person(cloud, names["member"], PASSWORD, TEAM, "member")
    add_person(cloud, names["viewer"], PASSWORD, TEAM, "viewer")
    add_person(cloud, names["outsider"], PASSWORD, f"{TEAM}-other", "member")
    return names


@pytest.fixture(scope="module")
def guest(cloud: Cloud, people: dict[str, str]) -> Iterator[str]:
    """One booted guest in the team's namespace, shared by this module."""
    uuid = _create(cloud, f"console-{secrets.token_hex(3)}", TEAM)
    cloud.wait_console(uuid, "SFCLOUD-READY")
    wait_for(lambda: cloud.api().get(f"/instances/{uuid}").json()["power_state"] == "on",
             30, "the guest to be on")
    yield uuid
    cloud.api().delete(f"/instances/{uuid}")


@pytest.fixture
def member(cloud: Cloud, people: dict[str, str]):  # type: ignore[no-untyped-def]
    return web_login(cloud.url, people["member"], PASSWORD)


def _prompt(ws, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    """Press enter and wait for the shell's prompt (the guest may still be booting)."""
    ws.send(b"\r")
    read_until(ws, b"# ", timeout)


def test_serial_console_round_trip_viewers_and_scrollback(
        cloud: Cloud, guest: str, member) -> None:  # type: ignore[no-untyped-def]
    first, ready = open_console(member, cloud.url, guest)
    assert ready["read_only"] is False
    second, _ = open_console(member, cloud.url, guest)
    try:
        _prompt(first)
        marker = secrets.token_hex(4)
        first.send(f"echo hello-{marker} $((6*7))\r".encode())
        # Both viewers see the guest's answer.
        assert f"hello-{marker} 42".encode() in read_until(first, f"{marker} 42".encode())
        assert f"hello-{marker} 42".encode() in read_until(second, f"{marker} 42".encode())
        # Any viewer may type: the second one's command reaches the shared console.
        second.send(f"echo again-{marker}\r".encode())
        read_until(first, f"again-{marker}\r\n".encode())
    finally:
        first.close()
        second.close()
    # A newcomer gets the scrollback from the console log first, said to be so (so that the
    # browser's terminal does not answer the queries in it: the prompt's ESC[6n, here).
    third, _ = open_console(member, cloud.url, guest)
    try:
        announced = json.loads(third.recv(timeout=20))
        assert announced["type"] == "scrollback"
        replay = third.recv(timeout=20)
        assert isinstance(replay, bytes) and len(replay) == announced["bytes"]
        assert f"hello-{marker} 42".encode() in replay and b"again-" + marker.encode() in replay
        assert b"\x1b[6n" in replay  # busybox asks where the cursor is after every prompt
    finally:
        third.close()


def test_viewer_role_gets_a_read_only_console(
        cloud: Cloud, guest: str, people: dict[str, str], member) -> None:  # type: ignore[no-untyped-def]
    viewer = web_login(cloud.url, people["viewer"], PASSWORD)
    watching, ready = open_console(viewer, cloud.url, guest)
    typing, _ = open_console(member, cloud.url, guest)
    try:
        assert ready["read_only"] is True
        _prompt(typing)
        marker = secrets.token_hex(4)
        # The viewer's keystrokes go nowhere, whatever the page does.
        watching.send(f"echo viewer-{marker}\r".encode())
        typing.send(f"echo member-{marker}\r".encode())
        seen = read_until(watching, f"member-{marker}\r\n".encode())
        assert f"viewer-{marker}".encode() not in seen
        assert f"viewer-{marker}".encode() not in cloud.console_log(guest).encode()
    finally:
        watching.close()
        typing.close()


def test_refused_tickets(cloud: Cloud, guest: str, people: dict[str, str], member) -> None:  # type: ignore[no-untyped-def]
    other_guest = _create(cloud, f"console-other-{secrets.token_hex(3)}", TEAM)

    def refused(ws_path: str, ticket_value: str, session=member) -> int:  # type: ignore[no-untyped-def]
        ws = open_socket(session, cloud.url, ws_path)
        ws.send(json.dumps({"ticket": ticket_value}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                message = ws.recv(timeout=20)
                assert not (isinstance(message, str) and '"ready"' in message), "accepted"
        return closed.value.rcvd.code if closed.value.rcvd else 0

    # Used twice: the second use is refused.
    granted = ticket(member, cloud.url, guest)
    ws = open_socket(member, cloud.url, granted["websocket"])
    ws.send(json.dumps({"ticket": granted["ticket"]}))
    assert json.loads(ws.recv(timeout=30))["type"] == "ready"
    assert refused(granted["websocket"], granted["ticket"]) == 4003
    ws.close()

    # A ticket for one instance does not open another's console, nor the other kind.
    granted = ticket(member, cloud.url, guest)
    assert refused(f"/ws/consoles/serial/{other_guest}/", granted["ticket"]) == 4003
    granted = ticket(member, cloud.url, guest)
    assert refused(f"/ws/consoles/vnc/{guest}/", granted["ticket"]) == 4003

    # Another person's ticket does not work in my session.
    outsider = web_login(cloud.url, people["outsider"], PASSWORD)
    granted = ticket(member, cloud.url, guest)
    assert refused(granted["websocket"], granted["ticket"], session=outsider) == 4003
    # And the outsider can't get a ticket for another namespace's instance.
    assert request_ticket(outsider, cloud.url, guest).status_code == 404

    # A made-up ticket, and no ticket at all.
    assert refused(granted["websocket"], secrets.token_urlsafe(32)) == 4003

    # Without a session the socket is not even opened.
    import requests

    with pytest.raises(InvalidStatus):
        open_socket(requests.Session(), cloud.url, granted["websocket"])
    cloud.api().delete(f"/instances/{other_guest}")
    # No ticket is ever written to a log.
    for name in ("portal", "agent"):
        assert granted["ticket"] not in cloud.log_text(name)


def test_cross_origin_console_socket_is_refused(cloud: Cloud, guest: str, member) -> None:  # type: ignore[no-untyped-def]
    granted = ticket(member, cloud.url, guest)
    port = cloud.port
    for origin in (f"http://127.0.0.1:{port + 1}", "http://evil.example", "null",
                   f"https://127.0.0.1:{port}"):
        with pytest.raises(InvalidStatus) as refused:
            open_socket(member, cloud.url, granted["websocket"], origin=origin)
        assert refused.value.response.status_code == 403, origin
    # The ticket was not spent by those attempts.
    ws = open_socket(member, cloud.url, granted["websocket"])
    ws.send(json.dumps({"ticket": granted["ticket"]}))
    assert json.loads(ws.recv(timeout=30))["type"] == "ready"
    ws.close()


def test_consoledata_api_and_sf_client(cloud: Cloud, guest: str) -> None:
    api = cloud.api()
    response = api.get(f"/instances/{guest}/consoledata", {"length": 300})
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/octet-stream"
    log = (cloud.instance_dir(guest) / "console.log").read_bytes()
    assert len(response.content) == 300
    assert response.content in log

    shown = cloud.sf("instance", "consoledata", guest, "100000").stdout
    assert "SFCLOUD-READY" in shown

    # Shaken Fist's -1 is the whole log (rotated copies too); other negatives nothing.
    # The client reads a bare -1 as an option: "--" first, as a shell user types it.
    whole = cloud.sf("instance", "consoledata", guest, "--", "-1").stdout
    assert "SFCLOUD-GUEST-UP" in whole and len(whole) > 300
    assert api.get(f"/instances/{guest}/consoledata", {"length": -1}).content \
        .startswith(log[:100])
    assert api.get(f"/instances/{guest}/consoledata", {"length": -5}).content == b""
    assert len(api.get(f"/instances/{guest}/consoledata", {"length": "50"}).content) == 50
    assert api.get(f"/instances/{guest}/consoledata", {"length": "x"}).json()["error"] \
        .startswith("length:")

    cloud.sf("instance", "consoledelete", guest)
    assert wait_for(lambda: len(cloud.console_log(guest)) < 200, 10, "the log to be cleared")
    assert "SFCLOUD-READY" not in cloud.sf("instance", "consoledata", guest).stdout


def _rfb_client(ws, shared: bool = True) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Through the relay: the server offers "none", then ServerInit."""
    buffer = bytearray()

    def read(count: int) -> bytes:
        while len(buffer) < count:
            buffer.extend(ws.recv(timeout=30))
        data = bytes(buffer[:count])
        del buffer[:count]
        return data

    assert read(12) == b"RFB 003.008\n"
    ws.send(b"RFB 003.008\n")
    assert read(2) == b"\x01\x01"  # one security type: none
    ws.send(b"\x01")
    assert read(4) == b"\0\0\0\0"
    ws.send(b"\x01" if shared else b"\x00")  # ClientInit: shared, or exclusive
    width, height = struct.unpack("!HH", read(4))
    read(16)
    (name_length,) = struct.unpack("!I", read(4))
    read(name_length)
    return width, height


def test_an_exclusive_vnc_client_cannot_push_others_off(
        cloud: Cloud, guest: str, people: dict[str, str], member) -> None:  # type: ignore[no-untyped-def]
    """A viewer asking QEMU for exclusive access (ClientInit 0) would have it
    drop every other session; the relay always asks for a shared one."""
    working, _ = open_console(member, cloud.url, guest, "vnc")
    viewer = web_login(cloud.url, people["viewer"], PASSWORD)
    pushy, _ = open_console(viewer, cloud.url, guest, "vnc")
    try:
        width, height = _rfb_client(working)
        _rfb_client(pushy, shared=False)
        time.sleep(1)  # QEMU acts on ClientInit at once; give it a moment anyway
        # The first session still gets frames.
        working.send(struct.pack("!BBHHHH", 3, 0, 0, 0, width, height))
        frame = working.recv(timeout=30)
        assert isinstance(frame, bytes) and len(frame) > 0
        pushy.send(struct.pack("!BBHHHH", 3, 0, 0, 0, width, height))
        assert len(pushy.recv(timeout=30)) > 0
    finally:
        working.close()
        pushy.close()


def _vnc_password(uuid: str) -> str | None:
    conn = libvirt.open("qemu:///system")
    try:
        xml = conn.lookupByUUIDString(uuid).XMLDesc(libvirt.VIR_DOMAIN_XML_SECURE)
    finally:
        conn.close()
    graphics = ET.fromstring(xml).find("devices/graphics")
    return None if graphics is None else graphics.get("passwd")


def test_vnc_through_the_portal_with_a_password_per_session(
        cloud: Cloud, guest: str, member) -> None:  # type: ignore[no-untyped-def]
    ws, _ = open_console(member, cloud.url, guest, "vnc")
    try:
        # The server's init arrives only after the agent set this session's password
        # and logged in with it, so the password is read after it, not before.
        width, height = _rfb_client(ws)
        first_password = _vnc_password(guest)
        assert (width, height) in ((720, 400), (640, 480), (800, 600), (1024, 768)), (width, height)
        # A full frame, raw encoding: the guest's text screen is in it.
        ws.send(struct.pack("!BxH", 2, 1) + struct.pack("!i", 0))  # SetEncodings: raw
        ws.send(struct.pack("!BBHHHH", 3, 0, 0, 0, width, height))
        frame = bytearray()
        while len(frame) < width * height * 4:
            frame.extend(ws.recv(timeout=30))
        assert len(set(frame[64:width * height * 4:97])) > 1, "the frame is blank"
    finally:
        ws.close()
    second, _ = open_console(member, cloud.url, guest, "vnc")
    try:
        _rfb_client(second)
        second_password = _vnc_password(guest)
    finally:
        second.close()
    assert first_password and second_password and first_password != second_password

    # Nothing of the guest's console listens on a network port.
    qemu = [p for p in psutil.process_iter(["cmdline"])
            if guest in " ".join(p.info["cmdline"] or [])]
    assert qemu, "no qemu process for the guest"
    assert not [c for c in qemu[0].net_connections(kind="inet") if c.status == "LISTEN"]


def test_slow_reader_keeps_memory_bounded(cloud: Cloud, guest: str, member) -> None:  # type: ignore[no-untyped-def]
    """A browser that keeps asking for full frames but stops reading them: the
    portal and the agent stop relaying instead of buffering what the guest's
    VNC server would send."""
    portal = psutil.Process(cloud.portal.pid)
    agent = psutil.Process(cloud.agent.pid)
    ws, ready = open_console(member, cloud.url, guest, "vnc")
    session = ready["session"]
    stop = threading.Event()
    try:
        width, height = _rfb_client(ws)
        ws.send(struct.pack("!BxH", 2, 1) + struct.pack("!i", 0))  # raw: the biggest frames
        frame_bytes = width * height * 4
        request = struct.pack("!BBHHHH", 3, 0, 0, 0, width, height)

        # Reading: how fast does the guest's VNC server deliver full frames?
        received = 0
        started = time.monotonic()
        for _ in range(30):
            ws.send(request)
            target = received + frame_bytes
            while received < target:
                received += len(ws.recv(timeout=30))
        rate = received / (time.monotonic() - started)

        # Not reading: ask for a full frame every 25 ms (several times that rate).
        def ask() -> None:
            while not stop.is_set():
                ws.send(request)  # blocks once nothing moves any more, as it should
                time.sleep(0.025)

        before = (portal.memory_info().rss, agent.memory_info().rss)
        asker = threading.Thread(target=ask, daemon=True)
        asker.start()
        time.sleep(10)
        early = _session_bytes(cloud, session)
        time.sleep(15)
        late = _session_bytes(cloud, session)
        after = (portal.memory_info().rss, agent.memory_info().rss)
        growth = [(a - b) / 2**20 for a, b in zip(after, before, strict=True)]
        print(f"\nrelay rate while reading {rate / 2**20:.1f} MiB/s; not reading for 25 s: "
              f"portal RSS {before[0] / 2**20:.0f} -> {after[0] / 2**20:.0f} MiB, "
              f"agent RSS {before[1] / 2**20:.0f} -> {after[1] / 2**20:.0f} MiB; "
              f"relayed in the last 15 s: {(late - early) / 2**20:.2f} MiB "
              f"(reading, the guest would have sent {rate * 15 / 2**20:.0f} MiB)")
        assert rate * 15 > 40 * 2**20, "the source is too slow to test anything"
        assert late - early < 2 * 2**20
        assert growth[0] < 16 and growth[1] < 16, growth
        # Reading again, what was asked for flows again.
        stop.set()
        drained = 0
        while drained < 3 * frame_bytes:
            drained += len(ws.recv(timeout=30))
    finally:
        stop.set()
        ws.close()


def _session_bytes(cloud: Cloud, session: str) -> int:
    kv = cloud.etcd_call(lambda etcd: etcd.get(f"{cloud.prefix}/consoles/sessions/{session}"))
    if kv is None:
        return 0
    return json.loads(kv.value)["bytes_to_browser"]


@pytest.fixture(scope="module")
def strict_portal(cloud: Cloud) -> Iterator[SecondPortal]:
    """A second portal process with a short idle timeout and two consoles a person."""
    portal = SecondPortal(cloud, SFCLOUD_CONSOLE_IDLE_TIMEOUT="4",
                          SFCLOUD_CONSOLE_SESSIONS_PER_USER="2")
    yield portal
    portal.stop()


def _closed_with(ws, timeout: float = 30) -> int:  # type: ignore[no-untyped-def]
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=timeout)
    return closed.value.rcvd.code if closed.value.rcvd else 0


@pytest.fixture(scope="module")
def other_portal(cloud: Cloud) -> Iterator[SecondPortal]:
    """Another portal process with the usual settings (an admin works there)."""
    portal = SecondPortal(cloud)
    yield portal
    portal.stop()


def _admin_post(session, base: str, path: str, data: dict):  # type: ignore[no-untyped-def]
    return session.post(f"{base}{path}", data=data, timeout=30, allow_redirects=False,
                        headers={"X-CSRFToken": session.cookies.get("csrftoken", ""),
                                 "Referer": f"{base}{path}", "HX-Request": "true"})


def test_a_demoted_members_console_stops_at_once_across_processes(
        cloud: Cloud, guest: str, other_portal: SecondPortal) -> None:
    """The console is open on one portal process; an admin demotes its person
    to viewer on another. Within a second the console closes (and takes no
    more keys); the page's reconnect gets a read-only one. Removed from the
    namespace, that one closes too and no new one is granted."""
    name = f"demoted-{secrets.token_hex(3)}"
    add_person(cloud, name, PASSWORD, TEAM, "member")
    person = web_login(cloud.url, name, PASSWORD)
    admin = web_login(other_portal.url, "admin", cloud.admin_password)
    ws, ready = open_console(person, cloud.url, guest)
    try:
        assert ready["read_only"] is False
        _prompt(ws)
        changed = _admin_post(admin, other_portal.url, f"/manage/namespaces/{TEAM}/members/",
                              {"username": name, "role": "viewer"})
        assert changed.status_code == 200, changed.text[-500:]
        started = time.monotonic()
        assert _closed_with(ws, timeout=5) == 4013
        assert time.monotonic() - started < 1.0
        marker = secrets.token_hex(4)
        with pytest.raises(ConnectionClosed):
            ws.send(f"echo after-{marker}\r".encode())
    finally:
        ws.close()
    # What the page does next: a new ticket, now for a read-only console.
    ws, ready = open_console(person, cloud.url, guest)
    try:
        assert ready["read_only"] is True
        ws.send(f"echo viewer-{marker}\r".encode())
        removed = _admin_post(admin, other_portal.url,
                              f"/manage/namespaces/{TEAM}/members/"
                              f"{_user_id(cloud, name)}/remove/", {})
        assert removed.status_code == 200, removed.text[-500:]
        assert _closed_with(ws, timeout=5) == 4013
    finally:
        ws.close()
    assert request_ticket(person, cloud.url, guest).status_code == 404
    time.sleep(1)
    assert marker not in cloud.console_log(guest)


def _user_id(cloud: Cloud, username: str) -> int:
    code = ("from django.contrib.auth import get_user_model\n"
            f"print(get_user_model().objects.get(username={username!r}).pk)")
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], env=cloud.env,
                            cwd=REPO_ROOT, check=True, capture_output=True, text=True)
    return int(result.stdout.split()[-1])


def test_admin_sees_and_ends_a_session_served_by_another_process(
        cloud: Cloud, guest: str, people: dict[str, str], strict_portal: SecondPortal) -> None:
    """The session is served by the first portal process; the administrator lists
    and ends it on the second."""
    member = web_login(cloud.url, people["member"], PASSWORD)
    ws, ready = open_console(member, cloud.url, guest)
    other = strict_portal.url
    try:
        ws.send(b"\r")  # some bytes each way
        read_until(ws, b"# ")
        admin = web_login(other, "admin", cloud.admin_password)

        def listed() -> str | None:
            page = admin.get(f"{other}/consoles/", timeout=30)
            return page.text if ready["session"] in page.text else None

        page = wait_for(listed, 10, "the session on the other portal's admin page")
        row = page[page.index(f'data-session="{ready["session"]}"'):]
        row = row[:row.index("</tr>")]
        assert people["member"] in row and guest in row and "serial" in row
        assert cloud.node in row and "UTC" in row
        # Not for people who are not administrators.
        assert member.get(f"{other}/consoles/", timeout=30).status_code == 403

        ended = admin.post(f"{other}/consoles/{ready['session']}/end", timeout=30,
                           headers={"X-CSRFToken": admin.cookies.get("csrftoken", ""),
                                    "Referer": f"{other}/consoles/"})
        assert ended.status_code == 200 and "was ended" in ended.text
        assert _closed_with(ws, 15) == 4000
        assert ready["session"] not in admin.get(f"{other}/consoles/", timeout=30).text
        # Both the opening and the ending are in the audit trail.
        trail = admin.get(f"{other}/manage/audit/", timeout=30).text
        assert trail.count(f"session {ready['session']}") == 2, "audit trail"
    finally:
        ws.close()


def test_idle_timeout_and_per_person_limit(
        cloud: Cloud, guest: str, people: dict[str, str], strict_portal: SecondPortal) -> None:
    member = web_login(strict_portal.url, people["member"], PASSWORD)
    # Three tickets first (the ticket page already refuses a third console)...
    granted = [ticket(member, strict_portal.url, guest) for _ in range(3)]
    sockets = []
    try:
        for number, grant in enumerate(granted):
            ws = open_socket(member, strict_portal.url, grant["websocket"])
            ws.send(json.dumps({"ticket": grant["ticket"]}))
            sockets.append(ws)
            if number < 2:
                assert json.loads(ws.recv(timeout=30))["type"] == "ready"
        # ...the third socket is refused: two consoles a person.
        assert _closed_with(sockets[2]) == 4008
        assert request_ticket(member, strict_portal.url, guest).status_code == 429
        # Nobody types: both close after the 4 s idle timeout.
        started = time.monotonic()
        assert _closed_with(sockets[0]) == 4001
        assert _closed_with(sockets[1]) == 4001
        assert time.monotonic() - started < 15
        # The slots are free again.
        wait_for(lambda: request_ticket(member, strict_portal.url, guest).status_code == 200,
                 20, "a console slot to be free again")
    finally:
        for ws in sockets:
            ws.close()


def _type_keysyms(ws, text: str) -> None:  # type: ignore[no-untyped-def]
    """Type ``text`` on the VNC session as plain X keysyms (US layout)."""
    shifted = set('~!@#$%^&*()_+{}|:"<>?') | set("ABCDEFGHIJKLMNOPQRSTUVWXYZ")

    def key(keysym: int, down: bool) -> bytes:
        return struct.pack("!BBxxI", 4, 1 if down else 0, keysym)

    for char in text:
        keysym = 0xFF0D if char == "\n" else ord(char)
        events = [key(keysym, True), key(keysym, False)]
        if char in shifted:
            events = [key(0xFFE1, True), *events, key(0xFFE1, False)]
        ws.send(b"".join(events))
        time.sleep(0.01)


def test_vnc_viewer_role_cannot_type(
        cloud: Cloud, guest: str, people: dict[str, str], member) -> None:  # type: ignore[no-untyped-def]
    """The agent drops a read-only session's keys, whatever the browser sends."""
    marker = secrets.token_hex(4)
    viewer = web_login(cloud.url, people["viewer"], PASSWORD)
    for who, session in (("viewer", viewer), ("member", member)):
        ws, ready = open_console(session, cloud.url, guest, "vnc")
        try:
            assert ready["read_only"] is (who == "viewer")
            width, height = _rfb_client(ws)
            # Frames still come to the viewer: only input is dropped.
            ws.send(struct.pack("!BBHHHH", 3, 0, 0, 0, width, height))
            assert len(ws.recv(timeout=30)) > 0
            _type_keysyms(ws, f"echo VNC-{who}-{marker} > /dev/ttyS0\n")
            time.sleep(3)
        finally:
            ws.close()
    cloud.wait_console(guest, f"VNC-member-{marker}", timeout=30)
    assert f"VNC-viewer-{marker}" not in cloud.console_log(guest)
