from __future__ import annotations

import pytest

from cloudstate.model import NodeInfo
from portal.cloud.errors import InsufficientResources, NotFound
from portal.cloud.scheduler import Demand, NodeLoad, choose


def load(name: str, *, alive: bool = True, vcpus: int = 4, memory: int = 8192,
         used_memory: int = 0, used_cpus: int = 0) -> NodeLoad:
    info = NodeInfo(name=name, ip="127.0.0.1", vcpus=vcpus, memory_mib=memory,
                    disk_total_gb=100, disk_free_gb=80, virt_type="qemu", machine="pc")
    return NodeLoad(info=info, alive=alive, memory_mib=used_memory, cpus=used_cpus)


def test_picks_the_node_with_most_free_memory() -> None:
    loads = {"a": load("a", used_memory=4096), "b": load("b", used_memory=1024)}
    assert choose(Demand(1, 512, 1), loads).info.name == "b"


def test_a_node_holding_the_snapshot_is_preferred_while_it_fits() -> None:
    loads = {"a": load("a", used_memory=4096), "b": load("b", used_memory=1024)}
    assert choose(Demand(1, 512, 1), loads, preferred={"a"}).info.name == "a"
    # Full, it is passed over: another node copies the snapshot instead.
    assert choose(Demand(1, 6000, 1), loads, preferred={"a"}).info.name == "b"


def test_offline_nodes_are_skipped() -> None:
    loads = {"a": load("a", alive=False), "b": load("b", used_memory=6000)}
    assert choose(Demand(1, 512, 1), loads).info.name == "b"


def test_507_names_each_node_and_why() -> None:
    loads = {"a": load("a", alive=False), "b": load("b", used_memory=7000)}
    with pytest.raises(InsufficientResources) as caught:
        choose(Demand(1, 4096, 1), loads)
    message = str(caught.value)
    assert "a is offline" in message and "b has 168 MiB memory free of the 7168 MiB" in message


def test_more_cpus_than_the_host_has_never_fit() -> None:
    # Said so it does not contradict the Nodes page's "0 / 64" vCPUs (after overcommit).
    with pytest.raises(InsufficientResources, match="a has 4 CPUs, and one instance may have "
                                                    "at most as many vCPUs as its node has CPUs"):
        choose(Demand(8, 256, 1), {"a": load("a")})


def test_cpus_are_overcommitted_but_bounded() -> None:
    assert choose(Demand(4, 256, 1), {"a": load("a", used_cpus=60)})
    with pytest.raises(InsufficientResources):
        choose(Demand(4, 256, 1), {"a": load("a", used_cpus=62)})


def test_firmware_a_node_lacks_is_named() -> None:
    with_ovmf = NodeInfo(name="b", ip="127.0.0.1", vcpus=4, memory_mib=8192, disk_total_gb=100,
                         disk_free_gb=80, virt_type="qemu", machine="pc", firmware=["uefi"])
    loads = {"a": load("a"), "b": NodeLoad(info=with_ovmf, alive=True, memory_mib=0, cpus=0)}
    assert choose(Demand(1, 256, 1, firmware=("uefi",)), loads).info.name == "b"
    with pytest.raises(InsufficientResources) as caught:
        choose(Demand(1, 256, 1, firmware=("uefi", "secure-boot")), loads)
    assert str(caught.value) == (
        "no node can run an instance of 1 vCPUs, 256 MiB memory and 1 GB disk with secure "
        "boot: a has no UEFI or secure boot firmware (Debian's ovmf package); b has no secure "
        "boot firmware (Debian's ovmf package)")


def test_no_nodes_at_all() -> None:
    with pytest.raises(InsufficientResources, match="no nodes"):
        choose(Demand(1, 256, 1), {})


def test_placement_on_an_unknown_node() -> None:
    with pytest.raises(NotFound):
        choose(Demand(1, 256, 1), {"a": load("a")}, required="zzz")


def test_simulated_and_real_nodes_are_never_mixed(settings) -> None:  # type: ignore[no-untyped-def]
    real = load("real", used_memory=0)
    simulated = load("sim", used_memory=0)
    simulated.info = simulated.info.replace(simulated=True, virt_type="test")
    loads = {"real": real, "sim": simulated}
    assert choose(Demand(1, 512, 1), loads).info.name == "real"
    with pytest.raises(InsufficientResources, match="sim is a simulated node"):
        choose(Demand(1, 512, 1), {"sim": simulated})
    settings.CLOUD = settings.CLOUD.__class__(simulated_hypervisor=True)
    assert choose(Demand(1, 512, 1), loads).info.name == "sim"
    with pytest.raises(InsufficientResources, match="places on simulated nodes only"):
        choose(Demand(1, 512, 1), {"real": real})


def test_a_lost_race_moves_on_to_another_node_that_fits() -> None:
    loads = {"a": load("a", used_memory=0), "b": load("b", used_memory=1024)}
    assert choose(Demand(1, 512, 1), loads).info.name == "a"
    assert choose(Demand(1, 512, 1), loads, avoid={"a"}).info.name == "b"
    # Among several, losers spread: not all of them pick the same next node.
    many = {name: load(name, used_memory=i * 64) for i, name in enumerate("abcdefgh")}
    picks = {choose(Demand(1, 512, 1), many, avoid={"a"}).info.name for _ in range(50)}
    assert "a" not in picks and len(picks) > 2
    # Lost on every one: still spread over all of them, not the same best again.
    picks = {choose(Demand(1, 512, 1), many, avoid=set(many)).info.name for _ in range(50)}
    assert len(picks) > 2
    # Nothing else fits: the same node again (its fence decides).
    assert choose(Demand(1, 512, 1), {"a": loads["a"]}, avoid={"a"}).info.name == "a"


def test_a_node_in_maintenance_takes_nothing_and_the_507_says_so() -> None:
    loads = {"a": load("a"), "b": load("b", used_memory=6000)}
    loads["a"].maintenance = True
    assert choose(Demand(1, 512, 1), loads).info.name == "b"
    with pytest.raises(InsufficientResources, match="a is in maintenance"):
        choose(Demand(1, 4096, 1), loads)


def test_pack_fills_the_fullest_node_that_fits() -> None:
    loads = {"a": load("a", used_memory=1024), "b": load("b", used_memory=4096),
             "c": load("c", used_memory=7800)}
    assert choose(Demand(1, 512, 1), loads, strategy="pack").info.name == "b"
    assert choose(Demand(1, 512, 1), loads, strategy="spread").info.name == "a"


def test_affinity_metadata_attracts_and_repels() -> None:
    loads = {"a": load("a", used_memory=4096), "b": load("b", used_memory=1024)}
    loads["a"].tags.update(["database"])
    # Without affinity: the freest node. Attracted to "database": a.
    assert choose(Demand(1, 512, 1), loads).info.name == "b"
    assert choose(Demand(1, 512, 1), loads, affinity={"database": 10}).info.name == "a"
    # Repelled by "database" while b (without it) is freest anyway, and even
    # when b is the fuller node.
    loads["b"].memory_mib = 6000
    assert choose(Demand(1, 512, 1), loads).info.name == "a"
    assert choose(Demand(1, 512, 1), loads, affinity={"database": -10}).info.name == "b"


def test_affinity_counts_instances_by_tag_from_their_metadata() -> None:
    from cloudstate.model import InstanceSpec
    from portal.cloud.scheduler import affinity_of, instance_tags

    spec = InstanceSpec(uuid="u", name="n", namespace="ns", cpus=1, memory=256, disks=[],
                        node="a", metadata={"tags": ["web", 3, "db"]})
    assert instance_tags(spec) == ["web", "db"]
    assert affinity_of({"affinity": {"web": -5, "x": True, "y": "1"}}) == {"web": -5}
    assert affinity_of(None) == {}


def test_a_node_another_create_is_placing_on_is_passed_over_while_another_fits() -> None:
    loads = {"a": load("a", used_memory=0), "b": load("b", used_memory=1024),
             "c": load("c", used_memory=2048)}
    loads["a"].placing = 1
    assert choose(Demand(1, 512, 1), loads).info.name == "b"
    loads["b"].placing = 2
    assert choose(Demand(1, 512, 1), loads).info.name == "c"
    # Every fitting node busy: the best of them, as if none were.
    loads["c"].placing = 1
    assert choose(Demand(1, 512, 1), loads).info.name == "a"
    # A node that can't take it is no alternative.
    assert choose(Demand(1, 7000, 1), {"a": loads["a"], "b": load("b", used_memory=4096)}
                  ).info.name == "a"


async def test_placing_counts_the_creates_between_their_choice_and_commit() -> None:
    from portal.cloud.scheduler import _placing_now, placing

    with placing("a"), placing("a"), placing("b"):
        assert _placing_now() == {"a": 2, "b": 1}
    with pytest.raises(RuntimeError), placing("a"):
        raise RuntimeError("the create failed")
    assert _placing_now() == {}
