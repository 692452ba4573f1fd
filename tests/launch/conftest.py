"""A real one-node Slurm cluster on localhost (slurmctld + slurmd + munged), per session.

The fixture installs Debian's ``slurm-wlm`` and ``munge`` when they are missing, but only
as root and only when ``CI`` or ``TWINS_INSTALL_SLURM=1`` is set; otherwise, or when the
installation fails, the tests using it are skipped with the reason. Everything the
daemons write (state, spool, logs, munge socket and key) lives in a temporary directory,
on private ports, with no cgroup plugin (``proctrack/linuxproc``, ``task/none``), so it
runs in containers and VMs without cgroup delegation and leaves the system untouched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

DAEMONS = ("slurmctld", "slurmd", "munged", "sbatch", "sinfo", "scontrol")


@dataclass
class SlurmCluster:
    """A running test cluster.

    Attributes:
        root: Directory of its state, logs and config.
        conf: ``slurm.conf`` path (exported as ``SLURM_CONF``).
        env: Environment for client commands (``sbatch``, ``squeue`` ...).
        node: Node name.
        cpus: CPUs of the node.
    """

    root: Path
    conf: Path
    env: dict[str, str]
    node: str
    cpus: int

    def run(self, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a Slurm client command against this cluster."""
        return subprocess.run(
            list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout
        )

    def logs(self) -> str:
        """Tails of the daemon logs, for assertion messages."""
        out = []
        for name in ("slurmctld.log", "slurmd.log", "munged.log"):
            p = self.root / name
            if p.exists():
                out.append(f"--- {name}\n" + "\n".join(p.read_text().splitlines()[-25:]))
        return "\n".join(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ensure_installed() -> str | None:
    """``None`` when Slurm and munge are usable, else why not."""
    if all(shutil.which(d) or Path("/usr/sbin", d).exists() for d in DAEMONS):
        return None
    allowed = os.environ.get("CI") or os.environ.get("TWINS_INSTALL_SLURM") == "1"
    if not allowed:
        return "slurm-wlm/munge not installed (set TWINS_INSTALL_SLURM=1 as root to install)"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return "slurm-wlm/munge not installed and cannot install them (needs root + apt-get)"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"],
    ):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            return f"installing slurm-wlm/munge failed: {proc.stderr.strip()[-300:]}"
    return None


def _sbin(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def _write_conf(root: Path, node: str, cpus: int, mem_mb: int) -> Path:
    ctld, slurmd = _free_port(), _free_port()
    conf = root / "slurm.conf"
    conf.write_text(
        f"""ClusterName=twinstest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.sock
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=600
NodeName={node} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""
    )
    return conf


def _wait(pred: object, timeout: float, what: str, cluster: SlurmCluster) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if pred():  # type: ignore[operator]
            return
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}\n{cluster.logs()}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """Start munged, slurmctld and slurmd on localhost; tear them down at the end."""
    why = _ensure_installed()
    if why:
        print(f"\nSKIP real Slurm tests: {why}")
        pytest.skip(why)
    if os.geteuid() != 0:
        pytest.skip("the real Slurm cluster runs its daemons as root (SlurmUser=root)")
    root = tmp_path_factory.mktemp("slurm")
    root.chmod(0o700)
    for d in ("state", "spool"):
        (root / d).mkdir()
    node = socket.gethostname().split(".")[0]
    cpus = os.cpu_count() or 1
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 512
    conf = _write_conf(root, node, cpus, int(mem_mb))
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(root, conf, env, node, cpus)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run(
            [
                _sbin("munged"),
                "--force",
                f"--socket={root}/munge.sock",
                f"--key-file={key}",
                f"--pid-file={root}/munged.pid",
                f"--log-file={root}/munged.log",
                f"--seed-file={root}/munged.seed",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        for cmd in (
            [_sbin("slurmctld"), "-D", "-i", "-f", str(conf)],
            [_sbin("slurmd"), "-D", "-f", str(conf)],
        ):
            procs.append(
                subprocess.Popen(
                    cmd,
                    env=env,
                    stdout=(root / f"{Path(cmd[0]).name}.stdout").open("wb"),
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

        def idle() -> bool:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"a Slurm daemon exited\n{cluster.logs()}")
            r = cluster.run("sinfo", "-h", "-N", "-o", "%T")
            return r.returncode == 0 and r.stdout.strip() == "idle"

        _wait(idle, 60, "the node to become idle", cluster)
        yield cluster
    finally:
        if procs:
            cluster.run("scancel", "--user=root", timeout=10)
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        pid = root / "munged.pid"
        if pid.exists():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pid.read_text().strip()), 15)


@pytest.fixture
def check_shell(tmp_path: Path) -> Callable[[str], None]:
    """Checks a job script: ``bash -n``, and shellcheck where installed."""

    def check(script: str) -> None:
        path = tmp_path / "job.sbatch"
        path.write_text(script)
        assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
        if shutil.which("shellcheck"):
            sc = subprocess.run(["shellcheck", "-s", "bash", str(path)], capture_output=True)
            assert sc.returncode == 0, sc.stdout.decode()

    return check
