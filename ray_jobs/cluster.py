"""Start and stop a local multi-node Ray cluster on loopback (tests, benchmarks, docs/CLUSTER.md).

Each node gets its own `--temp-dir`, so its processes can be told apart and stopped by pid.
`ray stop` is not used: it stops every Ray process on the machine, other users' included.

    python -m ray_jobs.cluster start /tmp/tandem-cluster --nodes 2 --cpus 1
    python -m ray_jobs.cluster stop /tmp/tandem-cluster
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

STATE = "cluster.json"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_available() -> bool:
    """Whether this install can run Ray's dashboard, which `ray job submit` needs (ray[default])."""
    try:
        import aiohttp_cors  # noqa: F401
        import opencensus  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class LocalCluster:
    root: str
    port: int
    node_dirs: list[str] = field(default_factory=list)  # node 0 is the head
    dashboard_port: int | None = None
    cpus: list[int] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def dashboard_url(self) -> str | None:
        return f"http://127.0.0.1:{self.dashboard_port}" if self.dashboard_port else None

    def save(self) -> None:
        (Path(self.root) / STATE).write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, root: str | Path) -> LocalCluster:
        return cls(**json.loads((Path(root) / STATE).read_text()))


def _ray_bin() -> str:
    exe = Path(sys.executable).with_name("ray")
    return str(exe) if exe.exists() else "ray"


def cluster_env(base: dict | None = None) -> dict[str, str]:
    """Environment for every process that starts or joins the cluster (nodes, drivers, `ray job`).

    Ray 2.60 turns token authentication on for a head when ~/.ray/auth_token exists but not for
    a joining node, which then cannot reach the head: say `token` explicitly everywhere.
    """
    env = dict(os.environ if base is None else base)
    # `python` in a submitted job's entrypoint is this interpreter, as on every node
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(RAY_AUTH_MODE="token", RAY_USAGE_STATS_ENABLED="0",
               # notice a dead node in seconds, not the default half minute
               RAY_health_check_period_ms="1000", RAY_health_check_timeout_ms="1000",
               RAY_health_check_failure_threshold="3")
    return env


def ensure_token() -> None:
    _run([_ray_bin(), "get-auth-token", "--generate"], env={**os.environ, "RAY_AUTH_MODE": "token"})


def _run(cmd: list[str], timeout: float = 120, env: dict | None = None) -> None:
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                       env=env or cluster_env())
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


def _node_ports() -> list[str]:
    return ["--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port()),
            "--runtime-env-agent-port", str(free_port())]


def start_cluster(root: str | Path, *, nodes: int = 2, cpus: int = 1, object_store_bytes: int = 100 << 20,
                  dashboard: bool | None = None) -> LocalCluster:
    """A head and `nodes - 1` workers on 127.0.0.1, each with `cpus` logical CPUs and its own temp dir.

    `dashboard=None` starts the dashboard (for `ray job submit`) when the install has it.
    """
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if dashboard is None:
        dashboard = dashboard_available()
    c = LocalCluster(root=str(root), port=free_port(), dashboard_port=free_port() if dashboard else None)
    head = root / "node0"
    # every listening port chosen here: the defaults (8265, 10001, 52365 ...) collide with any
    # other Ray on the machine
    cmd = [_ray_bin(), "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(c.port),
           "--num-cpus", str(cpus), "--num-gpus", "0", "--object-store-memory", str(object_store_bytes),
           "--temp-dir", str(head), "--disable-usage-stats", "--ray-client-server-port", str(free_port()),
           "--include-dashboard", "true" if dashboard else "false", "--dashboard-host", "127.0.0.1",
           "--dashboard-port", str(c.dashboard_port or free_port()), *_node_ports()]
    c.node_dirs.append(str(head))
    c.cpus.append(cpus)
    c.save()  # saved before start, so a failed start can still be stopped
    ensure_token()
    _run(cmd)
    for _ in range(nodes - 1):
        add_node(c, cpus=cpus, object_store_bytes=object_store_bytes)
    wait_for_nodes(c, nodes)
    return c


def add_node(c: LocalCluster, *, cpus: int = 1, object_store_bytes: int = 100 << 20) -> int:
    """Start one more worker node; returns its index."""
    i = len(c.node_dirs)
    d = Path(c.root) / f"node{i}"
    c.node_dirs.append(str(d))
    c.cpus.append(cpus)
    c.save()
    _run([_ray_bin(), "start", "--address", c.address, "--node-ip-address", "127.0.0.1",
          "--num-cpus", str(cpus), "--num-gpus", "0", "--object-store-memory", str(object_store_bytes),
          "--temp-dir", str(d), "--disable-usage-stats", *_node_ports()])
    return i


def alive_nodes(c: LocalCluster) -> int:
    """How many nodes the head's GCS counts alive (asked from a short-lived subprocess)."""
    code = (f"import ray; ray.init(address={c.address!r}, logging_level='error', log_to_driver=False); "
            "print(sum(1 for n in ray.nodes() if n['Alive']))")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120,
                       env=cluster_env())
    if r.returncode != 0:
        raise RuntimeError(f"cannot reach the cluster at {c.address}: {r.stderr[-2000:]}")
    return int(r.stdout.strip().splitlines()[-1])


def wait_for_nodes(c: LocalCluster, n: int, timeout: float = 60) -> None:
    end = time.time() + timeout
    while True:
        got = alive_nodes(c)
        if got == n:
            return
        if time.time() > end:
            raise TimeoutError(f"cluster at {c.address}: {got} nodes alive, expected {n}")
        time.sleep(1)


def node_processes(node_dir: str | Path) -> list[psutil.Process]:
    """Processes of one node: everything whose command line names its temp dir."""
    key = str(Path(node_dir).resolve())
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if any(key in a for a in (p.info["cmdline"] or [])):
                out.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def raylet_pid(node_dir: str | Path) -> int:
    for p in node_processes(node_dir):
        try:
            if Path(p.cmdline()[0]).name == "raylet":
                return p.pid
        except (psutil.NoSuchProcess, IndexError):
            continue
    raise LookupError(f"no raylet running for the node in {node_dir}")


def kill_node(c: LocalCluster, i: int) -> int:
    """SIGKILL node i's raylet (the node dies; its workers follow). Returns the raylet's pid."""
    if i == 0:
        raise ValueError("node 0 is the head; killing it ends the cluster")
    pid = raylet_pid(c.node_dirs[i])
    os.kill(pid, signal.SIGKILL)
    return pid


def _node_pids(c: LocalCluster) -> set[int]:
    pids: set[int] = set()
    for d in c.node_dirs:
        for p in node_processes(d):
            pids.add(p.pid)
            try:
                pids.update(ch.pid for ch in p.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
    pids.discard(os.getpid())
    return pids


def stop_cluster(c: LocalCluster | str | Path, timeout: float = 5) -> int:
    """Stop every process of this cluster, by pid (SIGTERM, then SIGKILL); returns how many."""
    if not isinstance(c, LocalCluster):
        c = LocalCluster.load(c)
    pids = _node_pids(c)
    procs = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            p.terminate()
            procs.append(p)
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=timeout)
    # workers started late (or orphaned by a killed raylet) may have been missed the first time
    rest = _node_pids(c)
    for pid in rest:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
    return len(pids) + len(rest)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ray_jobs.cluster", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start a head and worker nodes on 127.0.0.1")
    s.add_argument("root")
    s.add_argument("--nodes", type=int, default=2)
    s.add_argument("--cpus", type=int, default=1)
    s.add_argument("--object-store-mb", type=int, default=100)
    s.add_argument("--no-dashboard", action="store_true")
    a = sub.add_parser("add-node", help="start one more worker node")
    a.add_argument("root")
    a.add_argument("--cpus", type=int, default=1)
    k = sub.add_parser("kill-node", help="SIGKILL a worker node's raylet")
    k.add_argument("root")
    k.add_argument("index", type=int)
    t = sub.add_parser("stop", help="stop this cluster's processes (only these)")
    t.add_argument("root")
    args = p.parse_args(argv)
    if args.cmd == "start":
        c = start_cluster(args.root, nodes=args.nodes, cpus=args.cpus,
                          object_store_bytes=args.object_store_mb << 20,
                          dashboard=False if args.no_dashboard else None)
        print(json.dumps({"address": c.address, "dashboard": c.dashboard_url, "nodes": c.node_dirs}))
    elif args.cmd == "add-node":
        c = LocalCluster.load(args.root)
        print(add_node(c, cpus=args.cpus))
    elif args.cmd == "kill-node":
        print(kill_node(LocalCluster.load(args.root), args.index))
    else:
        print(f"stopped {stop_cluster(args.root)} processes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
