"""What sfcloud costs while nothing happens: memory and CPU of etcd, the
portal and the node agent over a 60 s idle window, with no instances and
with 5 running; then, with the 5 running, the same with usage sampling off
(the agent restarted with SFCLOUD_USAGE_INTERVAL=0) and on again, so the
cost of sampling is measured beside its absence in the same run.

    python bench/idle.py [--window 60] [--instances 5]

Memory is PSS (shared pages divided among the processes sharing them),
summed over each process and its children; CPU is user+system time over the
window as a percentage of one core. Baselines measured in the same windows:
a second, bare etcd that no client talks to (the floor for a watched etcd),
and libvirtd (which answers the samples' statistics calls). Guests' own qemu
processes are reported separately. The usage history's files are counted
at the end: their size on disk against the fixed bound per object.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psutil
from support import running_cloud

from cloudstate.usage import INSTANCE_METRICS, NODE_METRICS
from deploy.localetcd import LocalEtcd
from nodeagent.usage.history import SUFFIX, file_size
from tests.support.cloud import Cloud, wait_for

DEFAULT_INTERVAL = 10  # SFCLOUD_USAGE_INTERVAL's default


def tree(pid: int) -> list[psutil.Process]:
    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def pss_mib(processes: list[psutil.Process]) -> float:
    return sum(p.memory_full_info().pss for p in processes) / 2**20


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


Figures = dict[str, tuple[float, float]]  # name -> (PSS MiB, CPU % of a core)


def measure(groups: dict[str, list[psutil.Process]], window: float) -> Figures:
    before = {name: cpu_seconds(procs) for name, procs in groups.items()}
    samples: dict[str, list[float]] = {name: [] for name in groups}
    end = time.monotonic() + window
    while time.monotonic() < end:
        for name, procs in groups.items():
            samples[name].append(pss_mib(procs))
        time.sleep(min(5.0, max(0.0, end - time.monotonic())))
    return {
        name: (statistics.median(samples[name]),
               100 * (cpu_seconds(procs) - before[name]) / window)
        for name, procs in groups.items()
    }


def qemu_processes(cloud: Cloud) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "qemu-system" in (process.info["name"] or "") and str(cloud.state_dir) in cmdline:
            found.append(process)
    return found


def restart_agent(cloud: Cloud, interval: str) -> None:
    """The agent again with SFCLOUD_USAGE_INTERVAL=``interval`` ("": its default);
    it adopts the running guests. Start-up work settles before measuring."""
    cloud.env["SFCLOUD_USAGE_INTERVAL"] = interval
    cloud.stop_agent()
    cloud.start_agent()
    time.sleep(15)


def report_history(cloud: Cloud) -> None:
    directory = cloud.state_dir / "node" / cloud.node / "usage"
    files = sorted(directory.glob(f"*{SUFFIX}"))
    size = sum(f.stat().st_size for f in files)
    allocated = sum(f.stat().st_blocks * 512 for f in files)
    bound = file_size(len(NODE_METRICS)) + (len(files) - 1) * file_size(len(INSTANCE_METRICS))
    print(f"\nusage history: {len(files)} files (the node and each guest), {size} bytes "
          f"({allocated / 1024:.0f} KiB allocated by the filesystem); the bound: {bound} bytes "
          f"= {file_size(len(NODE_METRICS))} for the node + {file_size(len(INSTANCE_METRICS))} "
          "per guest whatever the uptime, mapped into the agent's memory once")


def report(title: str, figures: Figures) -> None:
    print(f"\n{title}")
    print(f"  {'process':<28}{'PSS MiB':>10}{'CPU % of a core':>18}")
    for name, (pss, cpu) in figures.items():
        print(f"  {name:<28}{pss:>10.1f}{cpu:>18.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--instances", type=int, default=5)
    args = parser.parse_args()
    with running_cloud() as (cloud, etcd, _image), \
            tempfile.TemporaryDirectory(prefix="sfcloud-bench-bare-") as bare_dir:
        bare = LocalEtcd.standalone(Path(bare_dir) / "data", name="bare")
        bare.start()
        libvirtd = next(p for p in psutil.process_iter(["name"]) if p.info["name"] == "libvirtd")
        try:
            assert cloud.agent is not None and cloud.portal is not None and etcd.pid and bare.pid

            def groups() -> dict[str, list[psutil.Process]]:
                found = {
                    "etcd (sfcloud's)": tree(etcd.pid),
                    "portal (uvicorn)": tree(cloud.portal.pid),
                    "node agent": tree(cloud.agent.pid),
                    "baseline: bare etcd": tree(bare.pid),
                    "baseline: libvirtd": [libvirtd],
                }
                guests = qemu_processes(cloud)
                if guests:
                    found[f"guests ({len(guests)} qemu)"] = guests
                return found

            time.sleep(10)  # let start-up work settle
            idle = measure(groups(), args.window)
            report(f"Idle, no instances ({args.window:.0f} s window)", idle)

            api = cloud.api()
            uuids = [api.post("/instances", {"name": f"idle-{i}", "cpus": 1, "memory": 128,
                                            "disk": [{"size": 1, "base": "demo"}]}).json()["uuid"]
                     for i in range(args.instances)]
            for uuid in uuids:
                cloud.wait_console(uuid, "SFCLOUD-READY", timeout=180)
            time.sleep(10)
            busy = measure(groups(), args.window)
            report(f"Idle, {args.instances} instances running, sampling every "
                   f"{DEFAULT_INTERVAL} s ({args.window:.0f} s window)", busy)
            restart_agent(cloud, interval="0")
            unsampled = measure(groups(), args.window)
            report(f"The same, sampling off ({args.window:.0f} s window)", unsampled)
            restart_agent(cloud, interval="")
            sampled = measure(groups(), args.window)
            report(f"The same, sampling on again ({args.window:.0f} s window)", sampled)

            control = ("etcd (sfcloud's)", "portal (uvicorn)", "node agent")
            for label, figures in (
                    ("no instances", idle), (f"{args.instances} instances", busy),
                    (f"{args.instances} instances, sampling off", unsampled),
                    (f"{args.instances} instances, sampling on again", sampled)):
                pss = sum(figures[name][0] for name in control)
                cpu = sum(figures[name][1] for name in control)
                print(f"\ncontrol plane total, {label}: {pss:.1f} MiB PSS, {cpu:.2f} % of a core"
                      f" (bare etcd alone: {figures['baseline: bare etcd'][0]:.1f} MiB, "
                      f"{figures['baseline: bare etcd'][1]:.2f} %; libvirtd "
                      f"{figures['baseline: libvirtd'][1]:.2f} %)")
            report_history(cloud)
            for uuid in uuids:
                api.delete(f"/instances/{uuid}")
            wait_for(lambda: not cloud.domains(), 60, "the instances to go")
        finally:
            bare.stop()


if __name__ == "__main__":
    main()
