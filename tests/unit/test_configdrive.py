from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pycdlib

from nodeagent import configdrive


def read_iso(path: Path) -> dict[str, bytes]:
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        assert iso.pvd.volume_identifier.decode().strip() == "config-2"
        found = {}
        for name in ("meta_data.json", "user_data", "network_data.json", "vendor_data.json"):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, rr_path=f"/openstack/latest/{name}")
            found[name] = out.getvalue()
        return found
    finally:
        iso.close()


def test_config_drive_is_what_cloud_init_reads(tmp_path: Path) -> None:
    content = configdrive.ConfigDriveContent(
        uuid="u-1", name="vm", hostname="vm", public_keys={"k": "ssh-ed25519 AAAA x"},
        user_data=b"#!/bin/sh\necho hi\n",
    )
    dest = tmp_path / "config.iso"
    configdrive.write(content, dest)
    files = read_iso(dest)
    meta = json.loads(files["meta_data.json"])
    assert meta["uuid"] == "u-1" and meta["hostname"] == "vm"
    assert meta["public_keys"] == {"k": "ssh-ed25519 AAAA x"}
    assert files["user_data"] == b"#!/bin/sh\necho hi\n"
    assert json.loads(files["network_data.json"]) == {"links": [], "networks": [], "services": []}
    assert not list(tmp_path.glob(".*.tmp"))


def test_without_user_data_an_empty_cloud_config_is_written(tmp_path: Path) -> None:
    dest = tmp_path / "config.iso"
    configdrive.write(configdrive.ConfigDriveContent(uuid="u", name="n", hostname="n"), dest)
    assert read_iso(dest)["user_data"] == b"#cloud-config\n"


def test_user_data_decoding() -> None:
    assert configdrive.decode_user_data(None) is None
    assert configdrive.decode_user_data(base64.b64encode(b"x").decode()) == b"x"
