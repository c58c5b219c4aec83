"""cloud.yml as sfcloud-deploy reads it (every mistake named, nothing
half-done), and the etcd plan worked out from the members etcd lists."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from cloudstate.etcd import Member
from deploy import cloudconfig, inventory
from deploy.cloudconfig import CloudConfig, ConfigError, NodeConfig

GOOD: dict[str, Any] = {
    "name": "edge",
    "service_manager": "none",
    "nodes": {
        "h1": {"address": "10.0.0.11", "etcd": True, "portal": True, "network_node": True},
        "h2": {"address": "10.0.0.12", "etcd": True},
        "h3": {"address": "10.0.0.13"},
    },
}


def with_(**changes: Any) -> dict[str, Any]:
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for key, value in changes.items():
        target = data
        *path, last = key.split("__")
        for part in path:
            target = target[part]
        target[last] = value
    return data


def test_a_good_file_reads_back_as_written(tmp_path: Path) -> None:
    config = cloudconfig.from_dict(GOOD)
    assert [n.name for n in config.etcd_nodes] == ["h1", "h2"]
    assert config.database_node is None and config.backups_keep == 5
    cloudconfig.save(tmp_path, config)
    assert cloudconfig.load(tmp_path) == config
    assert "No secrets here" in (tmp_path / "cloud.yml").read_text()


@pytest.mark.parametrize(("data", "expected"), [
    ([1, 2], "must be a mapping"),
    (with_(colour="blue"), "unknown keys colour"),
    (with_(nodes={}), "at least one node"),
    (with_(nodes__h2__address="not-an-ip"), "address 'not-an-ip' is not an IP address"),
    (with_(nodes__h2__address="10.0.0.11"), "have the same address 10.0.0.11"),
    (with_(nodes__h2__etcd="yes"), "nodes: h2: etcd: must be true or false"),
    (with_(nodes__h2__role="db"), "nodes: h2: unknown keys role"),
    (with_(nodes__h1__network_node=False), "exactly one node is the network node"),
    (with_(nodes__h1__portal=False), "at least one node must run the portal"),
    (with_(nodes__h2__portal=True), "set `database: postgresql`"),
    (with_(nodes__h1__etcd=False, nodes__h2__etcd=False), "at least one node must be an etcd"),
    (with_(service_manager="runit"), "'runit' is not one of"),
    (with_(portal={"port": 70000}), "portal: port: 70000 is not a TCP port"),
    (with_(backups={"keep": "many"}), "backups: keep: 'many' is not a whole number"),
    (with_(backups={"keep": 0}), "keep must be 1 or more"),
    (with_(settings={"SFCLOUD_NODE_NAME": "x"}), "written by sfcloud-deploy itself"),
    (with_(settings={"SFCLOUD_NOPE": "x"}), "not an sfcloud setting"),
])
def test_every_mistake_is_named(data: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        cloudconfig.from_dict(data)
    assert expected in str(caught.value)


def test_a_missing_or_broken_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="start with `sfcloud-deploy init`"):
        cloudconfig.load(tmp_path)
    (tmp_path / "cloud.yml").write_text("nodes: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        cloudconfig.load(tmp_path)


def _member(name: str, address: str, *, learner: bool = False) -> Member:
    return Member(member_id=hash(name) & 0xFFFF, name=name,
                  peer_urls=(f"https://{address}:2380",),
                  client_urls=(f"https://{address}:2379",), learner=learner)


def test_the_first_etcd_node_founds_the_cluster_alone() -> None:
    config: CloudConfig = cloudconfig.from_dict(GOOD)
    plan = inventory.plan_from_members(config, None, token="t")
    assert plan.voting == ("h1",) and plan.running == ("h1",)
    assert plan.initial_state == "new"
    assert plan.initial_cluster_text() == "h1=https://10.0.0.11:2380"


def test_a_learner_joins_an_existing_cluster_and_stays_out_of_the_endpoints() -> None:
    config = cloudconfig.from_dict(GOOD)
    members = [_member("h1", "10.0.0.11"), _member("", "10.0.0.12", learner=True)]
    plan = inventory.plan_from_members(config, members, joining="h2", token="t")
    assert plan.voting == ("h1",) and plan.running == ("h1", "h2")
    assert plan.initial_state == "existing"
    env = inventory.node_env(config, config.node("h2"), plan)
    assert env["SFCLOUD_ETCD_ENDPOINTS"] == "https://10.0.0.11:2379"
    with pytest.raises(inventory.InventoryError, match="as a learner first"):
        inventory.plan_from_members(config, members[:1], joining="h2")


def test_each_node_lists_its_own_member_first() -> None:
    config = cloudconfig.from_dict(GOOD)
    members = [_member("h1", "10.0.0.11"), _member("h2", "10.0.0.12")]
    plan = inventory.plan_from_members(config, members)
    assert inventory.node_env(config, config.node("h2"), plan)[
        "SFCLOUD_ETCD_ENDPOINTS"] == "https://10.0.0.12:2379,https://10.0.0.11:2379"


def test_a_node_added_twice_differently_is_refused() -> None:
    config = cloudconfig.from_dict(GOOD)
    with pytest.raises(ConfigError):
        config.with_node(NodeConfig(name="h4", address="10.0.0.11"))
