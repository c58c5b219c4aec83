"""Our config drive, read by cloud-init's own ConfigDrive data source (the
code a Debian 12 cloud image runs at boot, from Debian's package): it finds
the instance id, hostname, ssh keys, user data, vendor data and network
configuration exactly as we meant them."""

from __future__ import annotations

import base64
import io
import subprocess
from pathlib import Path

import pycdlib
import pytest

from nodeagent import configdrive
from tests.support.cloudinit import import_cloudinit

pytestmark = pytest.mark.integration

KEY = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq6ZJ6CjUoJ3Ybj0Yw9y9V7a3VXH5pOjZc5oJPfQ3u0 "
       "alice@laptop")
USER_DATA = b"#cloud-config\nruncmd:\n  - [touch, /run/it-worked]\n"
NETWORK = {
    "links": [{"id": "eth0", "name": "eth0", "type": "vif", "vif_id": "i-1",
               "ethernet_mac_address": "02:00:00:12:34:56", "mtu": 1450}],
    "networks": [{"id": "net-0", "link": "eth0", "type": "ipv4", "network_id": "n-1",
                  "ip_address": "10.0.0.5", "netmask": "255.255.255.0",
                  "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0",
                              "gateway": "10.0.0.1"}]}],
    "services": [{"type": "dns", "address": "10.0.0.1"}],
}


def unpack(iso_path: Path, dest: Path) -> None:
    """Copy the files out by their Rock Ridge names, as Linux mounts them."""
    iso = pycdlib.PyCdlib()
    iso.open(str(iso_path))
    try:
        for directory, _dirs, files in iso.walk(rr_path="/"):
            for name in files:
                relative = f"{directory.strip('/')}/{name}".strip("/")
                out = dest / relative
                out.parent.mkdir(parents=True, exist_ok=True)
                buffer = io.BytesIO()
                iso.get_file_from_iso_fp(buffer, rr_path=f"/{relative}")
                out.write_bytes(buffer.getvalue())
    finally:
        iso.close()


def read_with_cloudinit(tmp_path: Path, content: configdrive.ConfigDriveContent):  # type: ignore[no-untyped-def]
    import_cloudinit()
    from cloudinit import distros, helpers
    from cloudinit.sources.DataSourceConfigDrive import DataSourceConfigDrive

    iso_path = tmp_path / "config.iso"
    configdrive.write(content, iso_path)
    # cloud-init reads a config drive from a seed directory exactly as from
    # the mounted device (it mounts it, then calls the same reader).
    unpack(iso_path, tmp_path / "cloud" / "seed" / "config_drive")
    paths = helpers.Paths({"cloud_dir": str(tmp_path / "cloud"),
                           "run_dir": str(tmp_path / "run")})
    distro = distros.fetch("debian")("debian", {}, paths)
    source = DataSourceConfigDrive({}, distro, paths)
    assert source.get_data() is True
    return source, iso_path


def test_cloud_init_reads_identity_keys_and_user_data(tmp_path: Path) -> None:
    content = configdrive.ConfigDriveContent(
        uuid="9f0c1d2e-3b4a-4c5d-8e6f-708192a3b4c5", name="web-1", hostname="web-1",
        public_keys={"alice": KEY}, user_data=USER_DATA, network_data=NETWORK)
    source, iso_path = read_with_cloudinit(tmp_path, content)

    assert source.get_instance_id() == content.uuid
    assert source.get_hostname().hostname == "web-1"
    assert source.get_public_ssh_keys() == [KEY]
    assert source.get_userdata_raw() == USER_DATA
    assert len(source.metadata["random_seed"]) == 512  # cloud-init decoded it
    assert source.metadata["availability_zone"] == "sfcloud"
    # network_data.json becomes a static configuration for the NIC with that MAC.
    config = source.network_config
    assert config["version"] == 1
    physical = next(c for c in config["config"] if c["type"] == "physical")
    assert physical["mac_address"] == "02:00:00:12:34:56" and physical["mtu"] == 1450
    subnet = physical["subnets"][0]
    assert subnet["type"] == "static" and subnet["address"] == "10.0.0.5"
    assert any(c["type"] == "nameserver" and "10.0.0.1" in c["address"]
               for c in config["config"])

    # What finds the device at boot: blkid sees an ISO 9660 filesystem
    # labelled config-2 (cloud-init looks for TYPE=iso9660 and LABEL=config-2).
    probe = subprocess.run(["blkid", "-p", "-o", "export", str(iso_path)],
                           capture_output=True, text=True, check=True).stdout.split()
    assert "LABEL=config-2" in probe and "TYPE=iso9660" in probe


def test_no_user_data_is_an_empty_cloud_config_and_no_keys_is_none(tmp_path: Path) -> None:
    source, _ = read_with_cloudinit(tmp_path, configdrive.ConfigDriveContent(
        uuid="00000000-0000-4000-8000-000000000001", name="bare", hostname="bare"))
    assert source.get_userdata_raw() == b"#cloud-config\n"
    assert source.get_public_ssh_keys() == []
    assert source.network_config == {"version": 1, "config": []}


def test_a_script_passes_through_byte_for_byte(tmp_path: Path) -> None:
    script = b"#!/bin/sh\nprintf '\\xe2\\x9c\\x93 done\\n'\n" + bytes(range(256))
    source, _ = read_with_cloudinit(tmp_path, configdrive.ConfigDriveContent(
        uuid="00000000-0000-4000-8000-000000000002", name="s", hostname="s",
        user_data=configdrive.decode_user_data(base64.b64encode(script).decode())))
    assert source.get_userdata_raw() == script
