"""A real guest reads its config drive: its serial console shows the
hostname, the ssh key (pasted, or from a keypair) and the output of the
user data script; the drive is rebuilt at every power on."""

from __future__ import annotations

import base64
import secrets
import subprocess
from pathlib import Path

import pytest

from tests.support.cloud import Cloud, wait_for

pytestmark = pytest.mark.integration


def new_key(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test",
                    "-f", str(path)], check=True)
    return path.with_suffix(".pub").read_text().strip()


def test_guest_sees_hostname_key_and_user_data(cloud: Cloud, tmp_path: Path) -> None:
    api = cloud.api()
    key = new_key(tmp_path, "pasted")
    marker = f"SFCLOUD-MARKER-{secrets.token_hex(4)}"
    script = f"#!/bin/sh\necho {marker} from $(hostname)\n"
    response = api.post("/instances", {
        "name": "cfgguest", "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": "demo"}],
        "ssh_key": key + "\n", "user_data": base64.b64encode(script.encode()).decode()})
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    assert response.json()["user_data"] == base64.b64encode(script.encode()).decode()

    log = cloud.wait_console(uuid, "SFCLOUD-READY")
    assert "SFCLOUD-HOSTNAME: cfgguest" in log
    assert f"SFCLOUD-KEY: {key}" in log
    assert f"{marker} from cfgguest" in log
    assert "SFCLOUD-USERDATA: ran rc=0" in log

    # Rebuilt at power on: a new config drive file (with a new random seed).
    drive = cloud.instance_dir(uuid) / "config.iso"
    first = drive.read_bytes()
    assert api.post(f"/instances/{uuid}/poweroff").status_code == 200
    wait_for(lambda: api.get(f"/instances/{uuid}").json()["power_state"] == "off", 60, "off")
    assert api.post(f"/instances/{uuid}/poweron").status_code == 200
    wait_for(lambda: cloud.console_log(uuid).count(f"{marker} from cfgguest") == 2, 90,
             "the user data to run at the second boot")
    assert drive.read_bytes() != first

    api.delete(f"/instances/{uuid}")
    wait_for(lambda: api.get(f"/instances/{uuid}").json()["state"] == "deleted", 60, "deleted")


def test_keypair_from_the_namespace_reaches_the_guest(cloud: Cloud, tmp_path: Path) -> None:
    api = cloud.api()
    key = new_key(tmp_path, "kept")
    created = api.post("/keypairs", {"name": "kept-key", "public_key": key})
    assert created.status_code == 200, created.text
    fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "kept.pub")],
                                 capture_output=True, text=True, check=True).stdout.split()[1]
    assert created.json()["fingerprint"] == fingerprint
    # Names are unique per namespace.
    again = api.post("/keypairs", {"name": "kept-key", "public_key": key})
    assert again.status_code == 409 and "already exists" in again.json()["error"]

    response = api.post("/instances", {
        "name": "keyguest", "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": "demo"}],
        "keypair": "kept-key"})
    assert response.status_code == 200, response.text
    uuid = response.json()["uuid"]
    assert response.json()["ssh_key"] == key
    log = cloud.wait_console(uuid, "SFCLOUD-READY")
    assert f"SFCLOUD-KEY: {key}" in log

    # Deleting the keypair leaves the instance's key alone.
    assert api.delete("/keypairs/kept-key").status_code == 200
    assert api.get("/keypairs/kept-key").status_code == 404
    assert api.get(f"/instances/{uuid}").json()["ssh_key"] == key
    missing = api.post("/instances", {
        "name": "keyless", "cpus": 1, "memory": 128, "disk": [{"size": 1, "base": "demo"}],
        "keypair": "kept-key"})
    assert missing.status_code == 400 and "no keypair named" in missing.json()["error"]
    api.delete(f"/instances/{uuid}")
    wait_for(lambda: api.get(f"/instances/{uuid}").json()["state"] == "deleted", 60, "deleted")
