"""Process environment and a small backend-neutral strategy interface.

The environment is detected, not configured: ``torchrun`` sets ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK``; ``srun`` sets ``SLURM_PROCID``,
``SLURM_STEP_NUM_TASKS`` and ``SLURM_LOCALID``; Ray Train initialises the
process group itself. The :class:`Strategy` hides which one is in use.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from twins.errors import TwinsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterEnv:
    """Where this process sits in a (possibly one-process) job.

    Attributes:
        launcher: ``"local"``, ``"torchrun"``, ``"slurm"`` or ``"ray"``.
        rank: Global rank in ``[0, world_size)``.
        world_size: Number of processes.
        local_rank: Rank among the processes on this node.
        local_world_size: Number of processes on this node.
        master_addr: Rendezvous host (``None`` for one process).
        master_port: Rendezvous port (``None`` for one process).
    """

    launcher: str = "local"
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    master_addr: str | None = None
    master_port: int | None = None


def first_host(nodelist: str) -> str:
    """First host name of a Slurm node list such as ``"gpu[003-005,009],cpu01"``."""
    m = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if not m:
        raise ValueError(f"cannot parse Slurm node list {nodelist!r}")
    prefix, ranges = m.group(1), m.group(2)
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def detect_env(environ: Mapping[str, str] | None = None) -> ClusterEnv:
    """Detect the launcher from environment variables.

    torchrun wins over Slurm (``torchrun`` inside ``srun`` is the usual multi-node
    recipe). Slurm counts only inside a job step with more than one task, so a
    plain ``python`` in a batch script or an ``salloc`` shell stays local.

    Args:
        environ: Variables to read; defaults to ``os.environ``.

    Returns:
        The detected :class:`ClusterEnv`.
    """
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        world = int(env["WORLD_SIZE"])
        return ClusterEnv(
            launcher="torchrun",
            rank=int(env["RANK"]),
            world_size=world,
            local_rank=int(env.get("LOCAL_RANK", "0")),
            local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world))),
            master_addr=env.get("MASTER_ADDR"),
            master_port=int(env["MASTER_PORT"]) if "MASTER_PORT" in env else None,
        )
    step_tasks = env.get("SLURM_STEP_NUM_TASKS", env.get("SLURM_NTASKS", "1"))
    in_step = env.get("SLURM_STEP_ID", env.get("SLURM_STEPID", "")).isdigit()
    if "SLURM_PROCID" in env and in_step and int(step_tasks) > 1:
        nodelist = env.get("SLURM_STEP_NODELIST", env.get("SLURM_JOB_NODELIST", "localhost"))
        job = int(env.get("SLURM_JOB_ID", "0") or 0)
        tasks_per_node = env.get("SLURM_STEP_TASKS_PER_NODE", env.get("SLURM_TASKS_PER_NODE", ""))
        m = re.match(r"(\d+)", tasks_per_node)
        return ClusterEnv(
            launcher="slurm",
            rank=int(env["SLURM_PROCID"]),
            world_size=int(step_tasks),
            local_rank=int(env.get("SLURM_LOCALID", "0")),
            local_world_size=int(m.group(1)) if m else int(step_tasks),
            master_addr=env.get("MASTER_ADDR") or first_host(nodelist),
            master_port=int(env.get("MASTER_PORT", str(29500 + job % 1000))),
        )
    return ClusterEnv()


class Strategy:
    """One process, no communication. Subclasses add a process group.

    Attributes:
        env: The detected :class:`ClusterEnv`.
        device: Device this rank computes on.
    """

    def __init__(self, env: ClusterEnv | None = None, device: torch.device | None = None) -> None:
        self.env = env or ClusterEnv()
        self.device = device or torch.device("cpu")

    @property
    def rank(self) -> int:
        """Global rank."""
        return self.env.rank

    @property
    def world_size(self) -> int:
        """Number of ranks."""
        return self.env.world_size

    @property
    def local_rank(self) -> int:
        """Rank on this node."""
        return self.env.local_rank

    @property
    def is_main(self) -> bool:
        """True on global rank 0, the only rank that logs, tracks and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when there is more than one rank."""
        return self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """Move the model to this rank's device (and wrap it for data parallelism)."""
        return model.to(self.device)

    @staticmethod
    def unwrap(model: nn.Module) -> nn.Module:
        """The bare module inside any DDP wrapper."""
        return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model

    def barrier(self) -> None:
        """Wait for every rank."""

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over ranks, in place; returns it."""
        return tensor

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Gather one picklable object from every rank, in rank order."""
        return [obj]

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Return rank ``src``'s object on every rank."""
        return obj

    def shutdown(self) -> None:
        """Release the process group if this strategy created it."""


class DDPStrategy(Strategy):
    """Data-parallel training on a torch process group (gloo on CPU, nccl on CUDA).

    If a process group already exists (Ray Train creates one) it is adopted;
    otherwise one is created from the detected environment with ``env://``.

    Args:
        env: The detected environment.
        use_gpu: Compute on ``cuda:<local_rank>`` when CUDA is available.
        timeout_s: Timeout of collective operations in seconds.
    """

    def __init__(self, env: ClusterEnv, use_gpu: bool = True, timeout_s: int = 600) -> None:
        cuda = use_gpu and torch.cuda.is_available()
        device = torch.device("cuda", env.local_rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        self._owns_group = False
        if not dist.is_initialized():
            if env.master_addr:
                os.environ.setdefault("MASTER_ADDR", env.master_addr)
            if env.master_port:
                os.environ.setdefault("MASTER_PORT", str(env.master_port))
            dist.init_process_group(
                backend="nccl" if cuda else "gloo",
                init_method="env://",
                rank=env.rank,
                world_size=env.world_size,
                timeout=_dt.timedelta(seconds=timeout_s),
            )
            self._owns_group = True
        env = ClusterEnv(
            launcher=env.launcher,
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=env.local_rank,
            local_world_size=env.local_world_size,
            master_addr=env.master_addr,
            master_port=env.master_port,
        )
        super().__init__(env, device)
        log.debug("rank %d/%d on %s (%s)", self.rank, self.world_size, device, env.launcher)

    def wrap(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        dist.barrier()

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def all_gather_object(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]

    def shutdown(self) -> None:
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()


def make_strategy(
    backend: str = "auto",
    use_gpu: bool = True,
    timeout_s: int = 600,
    env: ClusterEnv | None = None,
) -> Strategy:
    """Pick the strategy for this process.

    Args:
        backend: ``auto`` (DDP if launched with several ranks or inside a process
            group), ``local`` (force one process) or ``torchrun`` (require a launcher).
        use_gpu: Use CUDA when available.
        timeout_s: Collective timeout in seconds.
        env: Pre-detected environment (default: :func:`detect_env`).

    Raises:
        TwinsError: ``backend="torchrun"`` but no launcher environment was found.
    """
    env = env or detect_env()
    if backend == "local":
        return Strategy(env=ClusterEnv())
    if dist.is_available() and (dist.is_initialized() or env.world_size > 1):
        return DDPStrategy(env, use_gpu=use_gpu, timeout_s=timeout_s)
    if backend == "torchrun":
        raise TwinsError(
            "distributed.backend is torchrun but RANK/WORLD_SIZE are not set",
            "launch with: torchrun --nproc_per_node=N -m twins train CONFIG",
        )
    cuda = use_gpu and torch.cuda.is_available()
    return Strategy(env=env, device=torch.device("cuda", 0) if cuda else torch.device("cpu"))
