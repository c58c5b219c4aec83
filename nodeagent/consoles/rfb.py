"""The bits of VNC's protocol (RFB 3.8) the agent speaks itself.

The agent authenticates to QEMU with the session's one-time password and
offers the browser "no authentication" (it was authorised by its ticket), as
Nova's security proxy does: the password never leaves the hypervisor. Every
session is shared (the browser's ClientInit is rewritten), so no viewer can
push the others off. For a read-only session it also reads the browser's
messages and passes on only those that do not act on the guest.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

VERSION_38 = b"RFB 003.008\n"
SECURITY_NONE = 1
SECURITY_VNC = 2


class RFBError(Exception):
    """The other side broke the protocol, or refused us."""


def _mirror_bits(byte: int) -> int:
    return int(f"{byte:08b}"[::-1], 2)


def vnc_auth_response(challenge: bytes, password: str) -> bytes:
    """VNC authentication: DES-encrypt the 16-byte challenge with the first 8
    bytes of the password as key, each key byte's bits mirrored."""
    if len(challenge) != 16:
        raise RFBError("the VNC challenge must be 16 bytes")
    key = bytes(_mirror_bits(b) for b in password.encode("latin-1")[:8].ljust(8, b"\0"))
    # Single DES is three-key DES with three equal keys.
    # ECB is what the protocol specifies: two independent 8-byte blocks.
    encryptor = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()  # noqa: S305
    return encryptor.update(challenge) + encryptor.finalize()


ReadExactly = Callable[[int], Awaitable[bytes]]
Write = Callable[[bytes], Awaitable[None]]


async def authenticate_to_server(read: ReadExactly, write: Write, password: str) -> None:
    """Client side of the handshake, up to a successful security result."""
    version = await read(12)
    if not version.startswith(b"RFB 003.") or version < b"RFB 003.008":
        raise RFBError(f"the VNC server speaks {version!r}; 3.8 is needed")
    await write(VERSION_38)
    (count,) = struct.unpack("!B", await read(1))
    if count == 0:
        (length,) = struct.unpack("!I", await read(4))
        raise RFBError("the VNC server refused: " + (await read(length)).decode(errors="replace"))
    offered = set(await read(count))
    if SECURITY_VNC in offered:
        await write(bytes([SECURITY_VNC]))
        await write(vnc_auth_response(await read(16), password))
    elif SECURITY_NONE in offered:
        await write(bytes([SECURITY_NONE]))
    else:
        raise RFBError(f"the VNC server offers no usable security type ({sorted(offered)})")
    (result,) = struct.unpack("!I", await read(4))
    if result != 0:
        (length,) = struct.unpack("!I", await read(4))
        reason = (await read(min(length, 1024))).decode(errors="replace")
        raise RFBError(f"the VNC server refused the password: {reason}")


async def accept_client(read: ReadExactly, write: Write) -> None:
    """Server side of the handshake, offering only "none"."""
    await write(VERSION_38)
    version = await read(12)
    if not version.startswith(b"RFB 003.") or version < b"RFB 003.007":
        raise RFBError(f"the VNC client speaks {version!r}; 3.7 or 3.8 is needed")
    await write(bytes([1, SECURITY_NONE]))
    (chosen,) = await read(1)
    if chosen != SECURITY_NONE:
        raise RFBError(f"the VNC client chose security type {chosen}")
    await write(struct.pack("!I", 0))


SHARED = 1


async def relay_client_init(read: ReadExactly, write: Write) -> int:
    """Pass the browser's ClientInit on to QEMU as "shared", whatever it
    asked: an exclusive ClientInit makes QEMU drop every other session, so
    any viewer, a read-only one too, could disconnect everyone else. Returns
    the flag the browser sent."""
    (asked,) = await read(1)
    await write(bytes([SHARED]))
    return asked


# Client-to-server messages (RFC 6143 section 7.5 and common extensions):
# the ones a viewer may send, and those that act on the guest.
_SET_PIXEL_FORMAT = 0
_SET_ENCODINGS = 2
_UPDATE_REQUEST = 3
_KEY_EVENT = 4
_POINTER_EVENT = 5
_CUT_TEXT = 6
_ENABLE_CONTINUOUS_UPDATES = 150
_CLIENT_FENCE = 248
_XVP = 250
_SET_DESKTOP_SIZE = 251
_QEMU = 255
VIEW_ONLY_MESSAGES = frozenset({_SET_PIXEL_FORMAT, _SET_ENCODINGS, _UPDATE_REQUEST,
                                _ENABLE_CONTINUOUS_UPDATES, _CLIENT_FENCE})
MAX_CUT_TEXT = 1024 * 1024


def _message_length(buffer: bytes | bytearray) -> int | None:
    """The length of the client message at the start of ``buffer``, or None
    while more bytes are needed to tell."""
    kind = buffer[0]
    fixed = {_SET_PIXEL_FORMAT: 20, _UPDATE_REQUEST: 10, _KEY_EVENT: 8, _POINTER_EVENT: 6,
             _ENABLE_CONTINUOUS_UPDATES: 10, _XVP: 4}
    if kind in fixed:
        return fixed[kind]
    if kind == _SET_ENCODINGS:
        if len(buffer) < 4:
            return None
        return 4 + 4 * struct.unpack_from("!H", buffer, 2)[0]
    if kind == _CUT_TEXT:
        if len(buffer) < 8:
            return None
        # Negative lengths are the extended clipboard format; the size is the same.
        length = abs(struct.unpack_from("!i", buffer, 4)[0])
        if length > MAX_CUT_TEXT:
            raise RFBError("clipboard message too large")
        return 8 + length
    if kind == _CLIENT_FENCE:
        if len(buffer) < 9:
            return None
        return 9 + buffer[8]
    if kind == _SET_DESKTOP_SIZE:
        if len(buffer) < 7:
            return None
        return 8 + 16 * buffer[6]
    if kind == _QEMU:
        if len(buffer) < 2:
            return None
        subtype = buffer[1]
        if subtype == 0:  # extended key event
            return 12
        if subtype == 1:  # audio: enable, disable (4 bytes) or set format (10)
            if len(buffer) < 4:
                return None
            return 10 if struct.unpack_from("!H", buffer, 2)[0] == 2 else 4
    raise RFBError(f"unknown VNC client message type {kind}")


class ViewOnlyFilter:
    """Passes a client's RFB stream on minus every message that acts on the
    guest. It starts after ClientInit (``relay_client_init`` handles that)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> bytes:
        self._buffer += data
        out = bytearray()
        while self._buffer:
            length = _message_length(self._buffer)
            if length is None or len(self._buffer) < length:
                break
            if self._buffer[0] in VIEW_ONLY_MESSAGES:
                out += self._buffer[:length]
            del self._buffer[:length]
        return bytes(out)


async def open_unix(path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(path, limit=256 * 1024)
