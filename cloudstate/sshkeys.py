"""OpenSSH public keys: checked for what they claim to be, and fingerprinted.

A key line is ``<type> <base64 blob> [comment]``. The blob is itself a
sequence of length-prefixed fields starting with the type again, then the
key material, whose shape depends on the type. We parse it far enough to
know the key is well formed (so a typo or a private key pasted by mistake
is refused with a clear message) and compute the fingerprint ssh-keygen
shows, so people can tell their keys apart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cloudstate.validation import shown

MAX_KEY_LENGTH = 16 * 1024
MIN_RSA_BITS = 2048

_ECDSA_CURVES = {
    "ecdsa-sha2-nistp256": ("nistp256", 65),
    "ecdsa-sha2-nistp384": ("nistp384", 97),
    "ecdsa-sha2-nistp521": ("nistp521", 133),
}
TYPES = ("ssh-ed25519", "ssh-rsa", *_ECDSA_CURVES, "sk-ssh-ed25519@openssh.com",
         "sk-ecdsa-sha2-nistp256@openssh.com")


class BadKey(ValueError):
    """Not a usable public key; the message says why, for the person."""


@dataclass(frozen=True)
class PublicKey:
    type: str
    blob: bytes
    comment: str

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @property
    def line(self) -> str:
        encoded = base64.b64encode(self.blob).decode()
        return f"{self.type} {encoded} {self.comment}".rstrip()


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def string(self) -> bytes:
        if self.at + 4 > len(self.data):
            raise BadKey("the key data is cut short")
        (length,) = struct.unpack(">I", self.data[self.at:self.at + 4])
        self.at += 4
        if self.at + length > len(self.data):
            raise BadKey("the key data is cut short")
        value = self.data[self.at:self.at + length]
        self.at += length
        return value

    def done(self) -> None:
        if self.at != len(self.data):
            raise BadKey("the key data has extra bytes at the end")


def parse(text: str) -> PublicKey:
    """One public key in OpenSSH's one-line form; raises BadKey."""
    if not isinstance(text, str) or not text.strip():
        raise BadKey("no key given: paste a public key such as 'ssh-ed25519 AAAA... you@host'")
    if len(text) > MAX_KEY_LENGTH:
        raise BadKey(f"is longer than {MAX_KEY_LENGTH} characters")
    if "PRIVATE KEY" in text:
        raise BadKey("this is a private key: give the public key (the .pub file) instead, "
                     "and keep the private one to yourself")
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise BadKey("give exactly one key, on one line")
    parts = lines[0].split(None, 2)
    if len(parts) < 2:
        raise BadKey("is not an ssh public key (expected e.g. 'ssh-ed25519 AAAA... you@host')")
    key_type, encoded = parts[0], parts[1]
    comment = parts[2].strip() if len(parts) > 2 else ""
    if key_type not in TYPES:
        raise BadKey(f"{shown(key_type, 40)} is not a key type we accept "
                     f"(use one of {', '.join(TYPES[:5])})")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise BadKey("the key body is not valid base64") from None
    reader = _Reader(blob)
    inner_type = reader.string().decode("ascii", "replace")
    if inner_type != key_type:
        raise BadKey(f"the key says it is {key_type} but its body is a {inner_type[:40]} key")
    _check_material(key_type, reader)
    reader.done()
    return PublicKey(type=key_type, blob=blob, comment=comment)


def _check_material(key_type: str, reader: _Reader) -> None:
    if key_type in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
        if len(reader.string()) != 32:
            raise BadKey("an ed25519 key must hold 32 bytes of key")
    elif key_type == "ssh-rsa":
        exponent = int.from_bytes(reader.string(), "big")
        modulus = int.from_bytes(reader.string(), "big")
        if exponent < 3 or exponent % 2 == 0:
            raise BadKey("the RSA key's exponent is not valid")
        if modulus.bit_length() < MIN_RSA_BITS:
            raise BadKey(f"the RSA key has {modulus.bit_length()} bits; "
                         f"use at least {MIN_RSA_BITS} (or an ed25519 key)")
    else:
        curve_type = key_type.removeprefix("sk-").removesuffix("@openssh.com")
        curve, point_length = _ECDSA_CURVES[curve_type]
        if reader.string().decode("ascii", "replace") != curve:
            raise BadKey(f"the key's curve does not match {key_type}")
        point = reader.string()
        if len(point) != point_length or point[0] != 4:
            raise BadKey("the ECDSA key's point is not valid")
    if key_type.startswith("sk-"):
        reader.string()  # the security key's application, e.g. "ssh:"
