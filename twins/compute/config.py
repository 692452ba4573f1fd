"""The ``compute:`` section of a run config: where dask runs the array work.

This module depends on pydantic only (no dask import), so :mod:`twins.config.schema` can
import it without slowing down every config load.

Sizes are read like dask reads them (``"300MB"`` is 300 * 10**6 bytes, ``"4GiB"`` is
4 * 2**30 bytes, a bare number is bytes) and stored as integer bytes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

__all__ = ["MIN_WORKER_MEMORY", "ComputeConfig", "parse_size", "slurm_mem_bytes"]

#: Smallest memory limit per worker accepted: a dask worker process with numpy, xarray and
#: zarr imported holds about 120 MB before it computes anything.
MIN_WORKER_MEMORY = 128 * 2**20

#: ``tcp://host:port``, ``tls://host:port`` or ``host:port`` (dask's default protocol is tcp).
ADDRESS = re.compile(r"^(?:(?:tcp|tls|ucx|ws|wss)://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")

_SIZE = TypeAdapter(ByteSize)


def parse_size(value: Any) -> int:
    """Read a byte size the way dask does.

    Args:
        value: ``"300MB"``, ``"4GiB"``, ``"1.5 GB"`` or a non-negative integer (bytes).

    Returns:
        The size in bytes.

    Raises:
        ValueError: The value is not a size (one line, naming the value).
    """
    try:
        return int(_SIZE.validate_python(value))
    except ValidationError:
        raise ValueError(
            f"expected a size such as '300MB', '4GiB' or a number of bytes, got {value!r}"
        ) from None


def slurm_mem_bytes(mem: str) -> int:
    """Bytes of a Slurm ``--mem`` value (``4096``, ``16G``): units are binary, none means MiB.

    Args:
        mem: The value as ``launch.slurm.mem`` holds it (``^\\d+[KMGT]?$``).

    Returns:
        The size in bytes.
    """
    unit = mem[-1] if mem[-1] in "KMGT" else "M"
    number = int(mem[:-1] if mem[-1] in "KMGT" else mem)
    return number * 1024 ** ("KMGT".index(unit) + 1)


class ComputeConfig(BaseModel):
    """Where dask runs the array work (preprocessing of large grids).

    Attributes:
        mode: ``local`` starts a ``LocalCluster`` of worker processes on this machine;
            ``slurm`` starts a dask-jobqueue ``SLURMCluster`` whose workers are Slurm jobs
            shaped by ``launch.slurm`` (account, partition, qos, time, modules, venv,
            python, env, extra sbatch options); ``address`` connects to a running
            scheduler at ``address``; ``threads`` never starts a cluster (dask's threaded
            scheduler in this process).
        workers: Worker processes; ``None`` lets ``local`` use one per
            ``threads_per_worker`` cores and ``slurm`` start one job.
        threads_per_worker: Threads of each worker process.
        memory_limit: Memory limit of each worker process (bytes; ``"4GiB"`` in YAML), or
            ``"auto"``: ``local`` shares the machine's memory among the workers, ``slurm``
            shares ``launch.slurm.mem`` among the processes of one job. A worker spills to
            ``local_directory`` at 60-70 % of it and is restarted at 95 %.
        min_cluster_bytes: ``local`` and ``slurm`` start no cluster when the input is
            smaller than this (bytes; ``"1GiB"`` in YAML): the threaded scheduler is faster
            than starting processes for small inputs. 0 always starts the cluster.
        address: Scheduler address (``tcp://host:8786``) for ``mode: address``.
        connect_timeout_s: How long to wait for the scheduler at ``address`` to answer.
        dashboard_address: Where the local scheduler serves its dashboard (``":8787"``,
            ``":0"`` for any free port); ``None`` serves none (the scheduler's HTTP health
            routes then take a free port, not 8787). The link is logged.
        progress_every_s: Seconds between progress log lines while tasks are pending.
        local_directory: Where workers spill to disk (node-local scratch on HPC);
            ``None`` uses dask's default (the system temporary directory).
        processes_per_job: Worker processes in one Slurm job (``mode: slurm``); each job
            asks for ``processes_per_job x threads_per_worker`` CPUs and
            ``processes_per_job x memory_limit`` memory.
        interface: Network interface the scheduler and the Slurm workers listen on
            (``ib0`` on clusters whose nodes reach each other only over InfiniBand).
        worker_start_timeout_s: How long ``mode: slurm`` waits for the first worker to
            join (queue wait included) before failing with the jobs' states.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    mode: Literal["local", "slurm", "address", "threads"] = "local"
    workers: int | None = Field(None, ge=1)
    threads_per_worker: int = Field(1, ge=1)
    memory_limit: int | Literal["auto"] = "auto"
    min_cluster_bytes: int = 2**30
    address: str | None = None
    connect_timeout_s: float = Field(30.0, gt=0)
    dashboard_address: str | None = ":8787"
    progress_every_s: float = Field(10.0, gt=0)
    local_directory: Path | None = None
    processes_per_job: int = Field(1, ge=1)
    interface: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]+$")
    worker_start_timeout_s: float = Field(1800.0, gt=0)

    @field_validator("memory_limit", mode="before")
    @classmethod
    def _memory(cls, v: Any) -> Any:
        if v == "auto":
            return v
        size = parse_size(v)
        if size < MIN_WORKER_MEMORY:
            raise ValueError(
                f"{size} bytes is below the {MIN_WORKER_MEMORY // 2**20} MiB a dask worker "
                f"needs (got {v!r}; write e.g. '4GiB')"
            )
        return size

    @field_validator("min_cluster_bytes", mode="before")
    @classmethod
    def _min_bytes(cls, v: Any) -> int:
        return parse_size(v)

    @field_validator("address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not ADDRESS.match(v):
            raise ValueError(f"expected a scheduler address such as 'tcp://host:8786', got {v!r}")
        return v

    @model_validator(mode="after")
    def _address_mode(self) -> ComputeConfig:
        if self.mode == "address" and self.address is None:
            raise ValueError("mode 'address' needs compute.address (e.g. 'tcp://host:8786')")
        if self.mode != "address" and self.address is not None:
            raise ValueError(
                f"compute.address {self.address!r} is only used with mode 'address' "
                f"(mode is {self.mode!r})"
            )
        return self
