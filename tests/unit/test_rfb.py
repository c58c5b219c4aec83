"""The agent's own VNC protocol code: authentication, the handshake both ways,
and the read-only filter."""

from __future__ import annotations

import struct

import pytest

from nodeagent.consoles import rfb


def _mirrored(data: bytes) -> str:
    return bytes(int(f"{b:08b}"[::-1], 2) for b in data).decode("latin-1")


def test_vnc_auth_is_des_with_mirrored_key_bits() -> None:
    # FIPS 81's DES example (key 133457799BBCDFF1, 0123456789ABCDEF -> 85E813540F0AB405),
    # with the key given the way VNC takes it: each byte's bits in reverse order.
    password = _mirrored(bytes.fromhex("133457799BBCDFF1"))
    block = bytes.fromhex("0123456789ABCDEF")
    assert rfb.vnc_auth_response(block * 2, password) == bytes.fromhex("85E813540F0AB405") * 2
    # Only the first 8 characters count; shorter ones are padded with zeros.
    assert rfb.vnc_auth_response(block * 2, password + "xyz") == \
        rfb.vnc_auth_response(block * 2, password)
    assert rfb.vnc_auth_response(block * 2, "ab") == rfb.vnc_auth_response(block * 2, "ab\0\0")


class Script:
    """One side of a conversation: what the peer says, and what we said."""

    def __init__(self, incoming: bytes):
        self.incoming = bytearray(incoming)
        self.outgoing = bytearray()

    async def read(self, count: int) -> bytes:
        if len(self.incoming) < count:
            raise rfb.RFBError("peer went quiet")
        data = bytes(self.incoming[:count])
        del self.incoming[:count]
        return data

    async def write(self, data: bytes) -> None:
        self.outgoing += data


async def test_authenticates_to_a_server_with_the_password() -> None:
    challenge = bytes(range(16))
    server = Script(rfb.VERSION_38 + bytes([1, rfb.SECURITY_VNC]) + challenge
                    + struct.pack("!I", 0))
    await rfb.authenticate_to_server(server.read, server.write, "s3cret")
    assert server.outgoing == rfb.VERSION_38 + bytes([rfb.SECURITY_VNC]) + \
        rfb.vnc_auth_response(challenge, "s3cret")


async def test_a_refused_password_is_an_error_with_the_servers_reason() -> None:
    reason = b"Authentication failed"
    server = Script(rfb.VERSION_38 + bytes([1, rfb.SECURITY_VNC]) + bytes(16)
                    + struct.pack("!I", 1) + struct.pack("!I", len(reason)) + reason)
    with pytest.raises(rfb.RFBError, match="Authentication failed"):
        await rfb.authenticate_to_server(server.read, server.write, "wrong")


async def test_old_servers_and_unusable_security_are_refused() -> None:
    with pytest.raises(rfb.RFBError, match="3.8 is needed"):
        await rfb.authenticate_to_server(Script(b"RFB 003.003\n").read, Script(b"").write, "x")
    server = Script(rfb.VERSION_38 + bytes([1, 16]))
    with pytest.raises(rfb.RFBError, match="no usable security type"):
        await rfb.authenticate_to_server(server.read, server.write, "x")


async def test_offers_the_browser_no_authentication() -> None:
    browser = Script(rfb.VERSION_38 + bytes([rfb.SECURITY_NONE]))
    await rfb.accept_client(browser.read, browser.write)
    assert browser.outgoing == rfb.VERSION_38 + bytes([1, rfb.SECURITY_NONE]) + bytes(4)
    sneaky = Script(rfb.VERSION_38 + bytes([rfb.SECURITY_VNC]))
    with pytest.raises(rfb.RFBError):
        await rfb.accept_client(sneaky.read, sneaky.write)


async def test_client_init_reaches_qemu_as_shared_whatever_the_browser_asks() -> None:
    """An exclusive ClientInit (0) would make QEMU disconnect every other
    session: a viewer could push off everyone else."""
    for asked in (0, 1, 7):
        browser, qemu = Script(bytes([asked]) + b"rest"), Script(b"")
        assert await rfb.relay_client_init(browser.read, qemu.write) == asked
        assert qemu.outgoing == bytes([rfb.SHARED])
        assert browser.incoming == b"rest"  # nothing after ClientInit is taken


def test_view_only_filter_drops_input_and_keeps_the_rest() -> None:
    set_encodings = struct.pack("!BxH", 2, 2) + struct.pack("!ii", 0, -223)
    update = struct.pack("!BBHHHH", 3, 1, 0, 0, 720, 400)
    key = struct.pack("!BBxxI", 4, 1, 0x61)
    pointer = struct.pack("!BBHH", 5, 1, 10, 10)
    cut = struct.pack("!BxxxI", 6, 5) + b"hello"
    qemu_key = struct.pack("!BBHII", 255, 0, 1, 0x61, 30)
    fence = struct.pack("!BxxxIB", 248, 0, 3) + b"abc"
    desktop = struct.pack("!BxHHBx", 251, 800, 600, 1) + bytes(16)
    xvp = struct.pack("!BxBB", 250, 1, 4)  # "reboot"
    stream = (set_encodings + key + update + pointer + cut + qemu_key + fence
              + desktop + xvp + update)
    expected = set_encodings + update + fence + update

    whole = rfb.ViewOnlyFilter()
    assert whole.feed(stream) == expected
    # Split at every possible point, the result is the same.
    for cut_at in range(1, len(stream)):
        split = rfb.ViewOnlyFilter()
        assert split.feed(stream[:cut_at]) + split.feed(stream[cut_at:]) == expected


def test_view_only_filter_refuses_what_it_cannot_parse() -> None:
    view_only = rfb.ViewOnlyFilter()
    with pytest.raises(rfb.RFBError, match="unknown"):
        view_only.feed(b"\x63" + bytes(20))
    with pytest.raises(rfb.RFBError, match="too large"):
        rfb.ViewOnlyFilter().feed(struct.pack("!BxxxI", 6, 1 << 30))
