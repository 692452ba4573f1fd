"""dask-jobqueue's ``SLURMCluster`` shaped by the run config's ``launch.slurm`` section.

One Slurm job runs ``compute.processes_per_job`` dask worker processes of
``compute.threads_per_worker`` threads and ``compute.memory_limit`` bytes each. From
``launch.slurm`` the job takes what applies to a dask worker job:

=================  =====================================================================
``launch.slurm``   ``SLURMCluster``
=================  =====================================================================
``account``        ``account`` (``#SBATCH -A``)
``partition``      ``queue`` (``#SBATCH -p``)
``qos``            ``--qos`` directive
``job_name``       ``job_name`` (default ``twins-dask``)
``time``           ``walltime`` (default: dask-jobqueue's, 30 minutes)
``mem``            memory of one job when ``compute.memory_limit`` is ``auto``
``chdir``          ``--chdir`` directive
``output``         its directory holds the jobs' ``.out``/``.err`` logs
``modules``        ``module purge`` (``purge_modules``) and ``module load`` lines
``venv``           ``source <venv>/bin/activate``
``env``            ``export NAME=value`` lines
``python``         the interpreter that runs ``distributed.cli.dask_worker``
``sbatch_extra``   further directives, as given
=================  =====================================================================

The training-job shape (``nodes``, ``tasks_per_node``, ``gpus_per_node``,
``cpus_per_process``, ``cpus_per_task``) and the launch ports do not apply and are not used;
``container`` is refused (the workers would run outside the image the user chose).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twins.compute.config import ComputeConfig, slurm_mem_bytes
from twins.errors import ConfigError
from twins.launch.models import SlurmConfig

__all__ = ["check_job_script", "job_states", "slurm_cluster_kwargs"]

#: Slurm job states after which the job will never run a worker again.
ENDED = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)


def slurm_cluster_kwargs(compute: ComputeConfig, slurm: SlurmConfig) -> dict[str, Any]:
    """Keyword arguments of ``dask_jobqueue.SLURMCluster`` for these sections.

    Args:
        compute: The ``compute:`` section (worker shape, dashboard, interface).
        slurm: The ``launch.slurm`` section (site settings, see the module table).

    Returns:
        The arguments (``cores``, ``processes``, ``memory`` in bytes per job, ``walltime``,
        ``job_script_prologue``, ``job_extra_directives`` ...).

    Raises:
        ConfigError: ``launch.slurm.container`` is set, or no memory per worker is known
            (``compute.memory_limit: auto`` without ``launch.slurm.mem``).
    """
    if slurm.container is not None:
        raise ConfigError(
            "compute.mode 'slurm' does not run dask workers inside launch.slurm.container "
            f"({slurm.container.image}): unset it or install twins outside the image",
            "dask workers must run in the same environment as the scheduler",
        )
    procs = compute.processes_per_job
    if compute.memory_limit == "auto":
        if slurm.mem is None:
            raise ConfigError(
                "compute.memory_limit is 'auto' and launch.slurm.mem is unset: the memory "
                "of a dask worker job is unknown",
                "set compute.memory_limit (per worker, e.g. '4GiB') or launch.slurm.mem",
            )
        memory = slurm_mem_bytes(slurm.mem)
    else:
        memory = compute.memory_limit * procs
    prologue: list[str] = []
    if slurm.purge_modules:
        prologue.append("module purge")
    prologue += [f"module load {m}" for m in slurm.modules]
    if slurm.venv is not None:
        prologue.append(f"source {shlex.quote(str(slurm.venv))}/bin/activate")
    prologue += [f"export {k}={shlex.quote(v)}" for k, v in slurm.env.items()]
    directives: list[str] = []
    if slurm.qos is not None:
        directives.append(f"--qos={slurm.qos}")
    if slurm.chdir is not None:
        directives.append(f"--chdir={slurm.chdir}")
    directives += slurm.sbatch_extra
    log_dir = str(Path(slurm.output).parent) if "/" in slurm.output else None
    kwargs: dict[str, Any] = {
        "cores": compute.threads_per_worker * procs,
        "processes": procs,
        "memory": memory,
        "account": slurm.account,
        "queue": slurm.partition,
        "walltime": slurm.time,
        "job_name": slurm.job_name or "twins-dask",
        "python": slurm.python,
        "job_script_prologue": prologue,
        "job_extra_directives": directives,
        "log_directory": log_dir,
        "local_directory": str(compute.local_directory) if compute.local_directory else None,
        "interface": compute.interface,
        "scheduler_options": {"dashboard_address": compute.dashboard_address},
    }
    return {k: v for k, v in kwargs.items() if v is not None}


def check_job_script(script: str, env: dict[str, str] | None = None) -> None:
    """Ask Slurm whether it would accept a worker job (``sbatch --test-only``), submitting none.

    Args:
        script: The job script (``SLURMCluster.job_script()``).
        env: Environment of ``sbatch``; None inherits this process's.

    Raises:
        ConfigError: ``sbatch`` is missing or refuses the job; the message is Slurm's, on
            one line.
    """
    with tempfile.NamedTemporaryFile("w", suffix=".sbatch", delete=False) as handle:
        handle.write(script)
        path = Path(handle.name)
    try:
        proc = subprocess.run(
            ["sbatch", "--test-only", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    except FileNotFoundError:
        raise ConfigError(
            "compute.mode 'slurm': sbatch is not on PATH", "run on a Slurm login or compute node"
        ) from None
    finally:
        path.unlink(missing_ok=True)
    if proc.returncode != 0:
        why = " ".join((proc.stderr or proc.stdout).split()) or f"exit status {proc.returncode}"
        raise ConfigError(
            f"compute.mode 'slurm': Slurm refuses the dask worker job: {why}",
            "check launch.slurm (account, partition, qos, time, mem)",
        )


def job_states(job_ids: Sequence[str], env: dict[str, str] | None = None) -> dict[str, str]:
    """Slurm states of some jobs, with the pending reason (``PENDING (Resources)``).

    Args:
        job_ids: Job ids.
        env: Environment of ``squeue``; None inherits this process's.

    Returns:
        Job id to state text; a job Slurm no longer lists is ``gone``.
    """
    if not job_ids:
        return {}
    proc = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", "%i %T %r"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    states = dict.fromkeys(job_ids, "gone")
    for line in proc.stdout.splitlines():
        m = re.match(r"^(\S+)\s+(\S+)\s*(.*)$", line.strip())
        if m and m.group(1) in states:
            reason = m.group(3).strip()
            shown = reason and reason != "None"
            states[m.group(1)] = f"{m.group(2)} ({reason})" if shown else m.group(2)
    return states
