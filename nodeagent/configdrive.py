"""The OpenStack-style config drive every instance boots with.

cloud-init's ConfigDrive data source (and our test guest) look for an
ISO9660 filesystem labelled ``config-2`` holding ``openstack/<version>/``
files. It is rebuilt at every power-on, so a changed key or hostname is
picked up at the next boot.
"""

from __future__ import annotations

import base64
import io
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pycdlib

from nodeagent import failpoints

# cloud-init reads "latest"; a dated copy keeps older readers happy.
_VERSIONS = ("latest", "2017-02-22")


@dataclass(frozen=True)
class ConfigDriveContent:
    uuid: str
    name: str
    hostname: str
    public_keys: dict[str, str] = field(default_factory=dict)
    user_data: bytes | None = None
    network_data: dict[str, Any] = field(
        default_factory=lambda: {"links": [], "networks": [], "services": []}
    )
    availability_zone: str = "sfcloud"


def decode_user_data(encoded: str | None) -> bytes | None:
    if not encoded:
        return None
    return base64.b64decode(encoded, validate=True)


def files(content: ConfigDriveContent) -> dict[str, bytes]:
    meta_data = {
        "uuid": content.uuid,
        "name": content.name,
        "hostname": content.hostname,
        "availability_zone": content.availability_zone,
        "launch_index": 0,
        "devices": [],
        "project_id": None,
        "public_keys": content.public_keys,
        "random_seed": base64.b64encode(secrets.token_bytes(512)).decode(),
    }
    # Without user data cloud-init warns about an empty document; an empty
    # cloud-config says "nothing to do" explicitly.
    user_data = content.user_data if content.user_data is not None else b"#cloud-config\n"
    return {
        "meta_data.json": json.dumps(meta_data, indent=2).encode(),
        "user_data": user_data,
        "network_data.json": json.dumps(content.network_data, indent=2).encode(),
        "vendor_data.json": b"{}",
        "vendor_data2.json": b"{}",
    }


def write(content: ConfigDriveContent, dest: Path) -> None:
    """Write the ISO to ``dest`` atomically (a reader never sees half of it)."""
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident="config-2")
    iso.add_directory("/OPENSTAC", rr_name="openstack", joliet_path="/openstack")
    payload = files(content)
    for index, version in enumerate(_VERSIONS):
        iso_dir = f"/OPENSTAC/V{index}"
        joliet_dir = f"/openstack/{version}"
        iso.add_directory(iso_dir, rr_name=version, joliet_path=joliet_dir)
        # ISO9660 names are 8.3; Linux and cloud-init read the Rock Ridge names.
        for number, (name, data) in enumerate(payload.items()):
            iso.add_fp(
                io.BytesIO(data), len(data), f"{iso_dir}/F{number}.;1",
                rr_name=name, joliet_path=f"{joliet_dir}/{name}",
            )
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.tmp")
    try:
        iso.write(str(tmp))
        failpoints.hit("mid-config-drive")
        os.replace(tmp, dest)
    finally:
        iso.close()
        tmp.unlink(missing_ok=True)
