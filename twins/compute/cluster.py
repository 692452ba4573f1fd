"""Run dask work on the configured engine, and close what was started.

::

    with dask_client(cfg.compute, input_bytes=nbytes, slurm=cfg.launch.slurm) as session:
        ds.to_zarr(store)              # any dask computation uses the session's scheduler

Inside the block every dask computation of this process runs on what ``compute.mode``
selects: a ``LocalCluster`` of worker processes, a running scheduler at ``compute.address``,
a dask-jobqueue ``SLURMCluster`` whose workers are Slurm jobs, or dask's threaded scheduler
(``mode: threads``, or any cluster mode when the input is smaller than
``compute.min_cluster_bytes``). The dashboard link is logged, and progress lines are logged
every ``compute.progress_every_s`` seconds while tasks are pending. On leaving the block,
normally or by an exception, the client is closed and a cluster started here is shut down
(its worker processes, or its Slurm jobs cancelled); a scheduler given by address is left
running.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import dask
from dask.utils import format_bytes
from dask_jobqueue import SLURMCluster
from distributed import Client, LocalCluster

from twins.compute.config import ComputeConfig
from twins.compute.progress import ClusterProgress, ThreadsProgress
from twins.compute.slurm import ENDED, check_job_script, job_states, slurm_cluster_kwargs
from twins.errors import ConfigError
from twins.launch.models import SlurmConfig

__all__ = ["ComputeSession", "choose_mode", "dask_client"]

log = logging.getLogger(__name__)

Mode = Literal["threads", "local", "address", "slurm"]

#: Seconds between checks of the Slurm worker jobs while waiting for the first worker.
_POLL_S = 1.0


@dataclass(frozen=True)
class ComputeSession:
    """What :func:`dask_client` runs the work on.

    Attributes:
        mode: ``threads``, ``local``, ``address`` or ``slurm`` (what actually runs, after
            the size threshold).
        client: The distributed client, or None on the threaded scheduler.
        dashboard: The dashboard link, or None.
        job_ids: Slurm job ids of the workers started so far (``slurm`` only).
    """

    mode: Mode
    client: Client | None
    dashboard: str | None
    job_ids: tuple[str, ...] = ()


def choose_mode(cfg: ComputeConfig, input_bytes: int | None) -> Mode:
    """The engine :func:`dask_client` uses.

    Args:
        cfg: The ``compute:`` section.
        input_bytes: Size of the input the work reads (bytes), or None when unknown
            (a cluster is then started in the cluster modes).

    Returns:
        ``cfg.mode``, except ``threads`` for ``local``/``slurm`` when ``input_bytes`` is
        below ``cfg.min_cluster_bytes``.
    """
    small = input_bytes is not None and input_bytes < cfg.min_cluster_bytes
    if cfg.mode in ("local", "slurm") and small:
        return "threads"
    return cfg.mode


@contextlib.contextmanager
def dask_client(
    cfg: ComputeConfig,
    *,
    input_bytes: int | None = None,
    slurm: SlurmConfig | None = None,
) -> Iterator[ComputeSession]:
    """Run the dask work of the block on the configured engine (see the module docstring).

    Args:
        cfg: The ``compute:`` section.
        input_bytes: Size of the input (bytes) for the ``min_cluster_bytes`` threshold;
            None starts the configured cluster whatever the size.
        slurm: The ``launch.slurm`` section (``mode: slurm`` only); None uses its defaults.

    Yields:
        The session: its mode, client and dashboard link.

    Raises:
        ConfigError: The scheduler at ``compute.address`` does not answer within
            ``connect_timeout_s`` (naming the address); Slurm refuses the worker job; no
            Slurm worker joins within ``worker_start_timeout_s``, or every worker job ends
            first (naming the jobs, their states and the log directory).
    """
    mode = choose_mode(cfg, input_bytes)
    size = "unknown size" if input_bytes is None else format_bytes(input_bytes)
    with contextlib.ExitStack() as stack:
        if mode == "threads":
            nthreads = cfg.workers * cfg.threads_per_worker if cfg.workers else None
            stack.enter_context(dask.config.set(scheduler="threads", num_workers=nthreads))
            stack.enter_context(ThreadsProgress(cfg.progress_every_s))
            log.info(
                "dask: threaded scheduler in this process (%d threads; input %s%s)",
                nthreads or os.cpu_count() or 1,
                size,
                ""
                if cfg.mode == "threads"
                else f" < compute.min_cluster_bytes {format_bytes(cfg.min_cluster_bytes)}",
            )
            yield ComputeSession("threads", None, None)
            return
        job_ids: tuple[str, ...] = ()
        if mode == "address":
            client = _connect(cfg)
        elif mode == "local":
            cluster = stack.enter_context(_local_cluster(cfg))
            client = Client(cluster)
        else:
            kwargs = slurm_cluster_kwargs(cfg, slurm or SlurmConfig())
            jq = stack.enter_context(_slurm_cluster(kwargs))
            client = Client(jq)
        stack.callback(_close_client, client)
        if mode == "slurm":
            job_ids = _scale_slurm(jq, client, cfg, kwargs.get("log_directory"))
        workers = client.scheduler_info()["workers"].values()
        limits = sorted({int(w.get("memory_limit") or 0) for w in workers})
        dashboard = client.dashboard_link if cfg.dashboard_address or mode == "address" else None
        log.info(
            "dask: %s cluster at %s, %d workers, %d threads, memory limit %s per worker "
            "(input %s); dashboard %s",
            mode,
            client.scheduler.address,
            len(workers),
            sum(int(w.get("nthreads", 0)) for w in workers),
            "/".join(format_bytes(m) for m in limits) if limits else "none",
            size,
            dashboard or "off",
        )
        progress = ClusterProgress(client, cfg.progress_every_s)
        progress.start()
        stack.callback(progress.stop)
        yield ComputeSession(mode, client, dashboard, job_ids)


def _close_client(client: Client) -> None:
    with contextlib.suppress(Exception):  # a scheduler already gone cannot be said goodbye to
        client.close(timeout=10)


def _connect(cfg: ComputeConfig) -> Client:
    try:
        return Client(cfg.address, timeout=cfg.connect_timeout_s)
    except (OSError, TimeoutError) as exc:
        why = " ".join(str(exc).split())[:200]
        raise ConfigError(
            f"compute.address {cfg.address}: no dask scheduler answered within "
            f"{cfg.connect_timeout_s:g} s ({why})",
            "start the scheduler (dask scheduler) or fix the address",
        ) from None


@contextlib.contextmanager
def _local_cluster(cfg: ComputeConfig) -> Iterator[LocalCluster]:
    # The scheduler serves its HTTP routes (health, metrics) whatever ``dashboard`` says, on
    # the dashboard's address or, without one, on port 8787: without a dashboard they take
    # any free port instead, so that no fixed port is held.
    served = cfg.dashboard_address is not None
    cluster = LocalCluster(
        n_workers=cfg.workers,
        threads_per_worker=cfg.threads_per_worker,
        memory_limit=cfg.memory_limit,
        processes=True,
        dashboard_address=cfg.dashboard_address if served else ":0",
        scheduler_kwargs=None if served else {"dashboard": False},
        local_directory=str(cfg.local_directory) if cfg.local_directory else None,
    )
    try:
        yield cluster
    finally:
        cluster.close(timeout=30)


@contextlib.contextmanager
def _slurm_cluster(kwargs: dict[str, object]) -> Iterator[SLURMCluster]:
    if "log_directory" in kwargs:
        os.makedirs(str(kwargs["log_directory"]), exist_ok=True)
    try:
        cluster = SLURMCluster(**kwargs)
    except (RuntimeError, ValueError, OSError) as exc:
        why = " ".join(str(exc).split())[:300]
        raise ConfigError(
            f"compute.mode 'slurm': the dask scheduler cannot start: {why}",
            "check compute.interface and compute.dashboard_address",
        ) from None
    try:
        check_job_script(cluster.job_script())
        yield cluster
    finally:
        cluster.close(timeout=30)


def _job_ids(cluster: SLURMCluster) -> tuple[str, ...]:
    ids = (getattr(job, "job_id", None) for job in cluster.workers.values())
    return tuple(sorted(str(i) for i in ids if i))


def _scale_slurm(
    cluster: SLURMCluster, client: Client, cfg: ComputeConfig, log_dir: str | None
) -> tuple[str, ...]:
    """Submit the worker jobs and wait for the first worker (or fail naming the jobs)."""
    cluster.scale(cfg.workers or cfg.processes_per_job)
    t0 = time.monotonic()
    ids: tuple[str, ...] = ()
    while time.monotonic() - t0 < cfg.worker_start_timeout_s:
        if client.scheduler_info()["workers"]:
            ids = _job_ids(cluster)
            log.info("dask: Slurm worker jobs %s submitted, first worker joined", ", ".join(ids))
            return ids
        ids = _job_ids(cluster) or ids
        states = job_states(ids)
        if ids and all(s.split()[0] in ENDED or s == "gone" for s in states.values()):
            what = "every dask worker job ended before a worker joined"
            raise _jobs_error(what, states, log_dir)
        time.sleep(_POLL_S)
    raise _jobs_error(
        f"no dask worker joined within {cfg.worker_start_timeout_s:g} s "
        "(compute.worker_start_timeout_s)",
        job_states(ids),
        log_dir,
    )


def _jobs_error(what: str, states: dict[str, str], log_dir: str | None) -> ConfigError:
    jobs = ", ".join(f"{i} {s}" for i, s in states.items()) or "none submitted"
    return ConfigError(
        f"compute.mode 'slurm': {what}: Slurm jobs {jobs}; worker logs in "
        f"{log_dir or 'the submission directory'}",
        "check launch.slurm.python / venv / modules and the job logs",
    )
