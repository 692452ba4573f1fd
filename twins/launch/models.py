"""The ``launch:`` section of a run config: how to run it on Slurm or Kubernetes.

Every model forbids unknown keys, and every value that ends up in a shell script or a
manifest is checked against a conservative pattern, so a typo or a stray ``;`` is a
config error naming the key, never a broken (or dangerous) job script.

This module depends on pydantic only, so :mod:`twins.config.schema` can import it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: A Slurm identifier (account, partition, QoS, job name, reservation).
NAME = r"^[A-Za-z0-9_.+-]+$"
#: ``--time`` values: ``MM``, ``HH:MM:SS``, ``D-HH`` ... as Slurm reads them (validated below).
TIME = re.compile(r"^(?:(\d+)-)?(\d+):([0-5]\d):([0-5]\d)$")
#: ``--mem`` values: an integer with an optional K/M/G/T unit.
MEM = r"^\d+[KMGT]?$"
#: An extra sbatch option: ``--long-name`` or ``--long-name=value`` with a shell-safe value.
EXTRA_SBATCH = re.compile(r"^--[a-z][a-z0-9-]*(?:=[A-Za-z0-9_.,:@/+%=-]+)?$")
#: Options ``sbatch_extra`` may not set: they are derived and would be set twice.
RESERVED_SBATCH = frozenset(
    {
        "nodes",
        "ntasks",
        "ntasks-per-node",
        "cpus-per-task",
        "mem",
        "time",
        "account",
        "partition",
        "job-name",
        "output",
        "gres",
        "wrap",
        "array",
    }
)
#: Environment variable names.
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: Module names (``module load X``): ``CUDA/12.4``, ``Python/3.11.5-GCCcore-13.2.0``.
MODULE = r"^[A-Za-z0-9_.+/-]+$"
#: Paths and images without shell metacharacters.
SAFE_PATH = r"^[A-Za-z0-9_.,:@/+%=~-]+$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ContainerConfig(_Strict):
    """Run inside an Apptainer (Singularity) image.

    Attributes:
        image: A ``.sif`` path or a ``docker://`` / ``oras://`` URI.
        nv: Pass ``--nv`` (NVIDIA GPUs; needs the driver on the host).
        binds: ``--bind`` specs, ``src[:dst[:opts]]``.
        runtime: ``apptainer`` or ``singularity`` (older sites).
    """

    image: str = Field(pattern=SAFE_PATH, min_length=1)
    nv: bool = False
    binds: list[str] = Field(default_factory=list)
    runtime: Literal["apptainer", "singularity"] = "apptainer"

    @field_validator("binds")
    @classmethod
    def _safe_binds(cls, v: list[str]) -> list[str]:
        for b in v:
            if not re.match(SAFE_PATH, b):
                raise ValueError(f"bind {b!r} has characters outside {SAFE_PATH}")
        return v


class Margins(_Strict):
    """How a dry-run projection becomes a resource request.

    Attributes:
        time_factor: Walltime is ``projection x time_factor + time_pad_min`` minutes.
        time_pad_min: Fixed walltime allowance (start-up, rendezvous, registry).
        mem_factor: Memory per node is ``peak RSS x processes x mem_factor + mem_pad_mib``.
        mem_pad_mib: Fixed memory allowance per node (launcher, Ray raylet).
    """

    time_factor: float = Field(1.5, ge=1.0)
    time_pad_min: int = Field(10, ge=0)
    mem_factor: float = Field(1.5, ge=1.0)
    mem_pad_mib: int = Field(1024, ge=0)


class SlurmConfig(_Strict):
    """A Slurm batch job.

    Nothing is site-specific: no default account or partition, GPUs are requested with
    ``--gres=gpu:N`` (the most portable form; ``--cpus-per-gpu`` is never emitted), and
    CPUs with ``--cpus-per-task`` on one launcher task per node.

    Attributes:
        account: ``--account``; ``None`` leaves it to the site default.
        partition: ``--partition``.
        qos: ``--qos``.
        job_name: ``--job-name``; ``None`` uses ``twins-<run name>``.
        nodes: Nodes of the allocation.
        tasks_per_node: Training processes per node (torchrun ``--nproc_per_node``).
        gpus_per_node: GPUs per node (``--gres=gpu:N``); 0 for CPU jobs.
        cpus_per_process: CPU cores per training process (also ``OMP_NUM_THREADS``).
        cpus_per_task: Cores of the one launcher task per node; ``None`` derives
            ``tasks_per_node x cpus_per_process``.
        mem: Memory per node (``--mem``); ``None`` derives it from a dry run.
        time: Walltime ``[D-]HH:MM:SS``; ``None`` derives it from a dry run.
        output: ``--output`` pattern (``%j`` is the job id).
        chdir: Working directory of the job; ``None`` is the submission directory.
        modules: ``module load`` these, in order, after ``module purge`` if ``purge_modules``.
        purge_modules: Run ``module purge`` before loading.
        venv: Activate this virtual environment (``<venv>/bin/activate``).
        python: Python interpreter inside the job (or the container).
        container: Run every step inside this Apptainer image.
        env: Extra environment variables exported by the script.
        sbatch_extra: Further ``#SBATCH`` options, ``--name[=value]`` each; options
            the script derives itself (``--nodes``, ``--time`` ...) are refused.
        rdzv_port: Base port of the torchrun c10d rendezvous (plus job id mod 1000).
        ray_port: Port of the Ray head (GCS).
        ray_command: ``train`` (``twins train --backend ray``) or ``tune`` (``twins tune``).
        twin_every: Recurrence of ``twin-update`` jobs as a ``--begin=now+...`` offset,
            e.g. ``1hour``, ``30minutes``, ``1days``; ``None`` runs once.
        array_limit: Most tasks of an ``array`` job running at once (``--array=...%N``);
            ``None`` leaves it to the scheduler.
        margins: Dry-run projection to request.
    """

    account: str | None = Field(None, pattern=NAME)
    partition: str | None = Field(None, pattern=NAME)
    qos: str | None = Field(None, pattern=NAME)
    job_name: str | None = Field(None, pattern=NAME)
    nodes: int = Field(1, ge=1)
    tasks_per_node: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    cpus_per_process: int = Field(1, ge=1)
    cpus_per_task: int | None = Field(None, ge=1)
    mem: str | None = Field(None, pattern=MEM)
    time: str | None = None
    output: str = Field("twins-%x-%j.out", pattern=SAFE_PATH)
    chdir: Path | None = None
    modules: list[str] = Field(default_factory=list)
    purge_modules: bool = False
    venv: Path | None = None
    python: str = Field("python3", pattern=SAFE_PATH)
    container: ContainerConfig | None = None
    env: dict[str, str] = Field(default_factory=dict)
    sbatch_extra: list[str] = Field(default_factory=list)
    rdzv_port: int = Field(29500, ge=1024, le=64535)
    ray_port: int = Field(6379, ge=1024, le=65535)
    ray_command: Literal["train", "tune"] = "train"
    twin_every: str | None = Field(None, pattern=r"^\d+(?:minutes|hours?|days?|weeks?)$")
    array_limit: int | None = Field(None, ge=1)
    margins: Margins = Field(default_factory=Margins)

    @field_validator("time")
    @classmethod
    def _time(cls, v: str | None) -> str | None:
        if v is not None and not TIME.match(v):
            raise ValueError(f"expected [D-]HH:MM:SS, got {v!r}")
        return v

    @field_validator("modules")
    @classmethod
    def _modules(cls, v: list[str]) -> list[str]:
        for m in v:
            if not re.match(MODULE, m):
                raise ValueError(f"module {m!r} has characters outside {MODULE}")
        return v

    @field_validator("chdir", "venv")
    @classmethod
    def _paths(cls, v: Path | None) -> Path | None:
        if v is not None and not re.match(SAFE_PATH, str(v)):
            raise ValueError(f"path {str(v)!r} has characters outside {SAFE_PATH}")
        return v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not re.match(ENV_NAME, k):
                raise ValueError(f"environment variable name {k!r} is not a valid name")
        return v  # values are shell-quoted when rendered

    @field_validator("sbatch_extra")
    @classmethod
    def _extra(cls, v: list[str]) -> list[str]:
        for opt in v:
            if not EXTRA_SBATCH.match(opt):
                raise ValueError(
                    f"sbatch option {opt!r} must look like --name or --name=value "
                    "(letters, digits and _.,:@/+%=- only)"
                )
            name = opt[2:].split("=", 1)[0]
            if name in RESERVED_SBATCH:
                raise ValueError(f"sbatch option --{name} is derived; set the slurm.* key")
        return v


class K8sConfig(_Strict):
    """Kubernetes manifests.

    Attributes:
        namespace: Namespace of every object.
        image: Container image holding twins.
        image_pull_policy: ``IfNotPresent``, ``Always`` or ``Never``.
        nodes: Pods of the training Job (one torchrun agent each) or Ray worker pods.
        procs_per_pod: Training processes per pod (torchrun ``--nproc_per_node``).
        cpu: CPU request (and limit) per pod, Kubernetes quantity.
        memory: Memory request (and limit) per pod, Kubernetes quantity.
        gpus: ``nvidia.com/gpu`` per pod.
        pvc: PersistentVolumeClaim mounted at ``mount_path`` (work directory, twin).
        mount_path: Where the claim is mounted.
        schedule: CronJob schedule of ``twins twin update`` (cron syntax).
        service_account: Service account of the pods.
        node_selector: Extra node selector labels.
        ray_version: Ray version declared in the RayCluster.
        interlink_node: Node name of the interLink virtual kubelet (``kubernetes.io/hostname``
            selector); empty selects any virtual kubelet (``type: virtual-kubelet``).
        interlink_slurm_flags: Slurm flags for interLink's Slurm plugin, passed as the
            ``slurm-job.vk.io/flags`` pod annotation.
        backoff_limit: Retries of a failed training Job pod.
    """

    namespace: str = Field("default", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    image: str = Field("twins:latest", pattern=SAFE_PATH)
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    nodes: int = Field(1, ge=1)
    procs_per_pod: int = Field(1, ge=1)
    cpu: str = Field("2", pattern=r"^\d+(\.\d+)?m?$")
    memory: str = Field("4Gi", pattern=r"^\d+(Ki|Mi|Gi|Ti|K|M|G|T)?$")
    gpus: int = Field(0, ge=0)
    pvc: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    mount_path: str = Field("/work", pattern=r"^/[A-Za-z0-9_./-]*$")
    schedule: str = Field("0 * * * *", pattern=r"^[0-9*/,\- ]+$|^@(hourly|daily|weekly)$")
    service_account: str | None = Field(None, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    node_selector: dict[str, str] = Field(default_factory=dict)
    ray_version: str = Field("2.60.0", pattern=r"^\d+\.\d+\.\d+$")
    interlink_node: str = Field("", pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)?$")
    interlink_slurm_flags: list[str] = Field(default_factory=list)
    backoff_limit: int = Field(0, ge=0)

    @field_validator("interlink_slurm_flags")
    @classmethod
    def _flags(cls, v: list[str]) -> list[str]:
        for opt in v:
            if not EXTRA_SBATCH.match(opt):
                raise ValueError(f"slurm flag {opt!r} must look like --name or --name=value")
        return v


class LaunchConfig(_Strict):
    """The ``launch:`` section: Slurm and Kubernetes settings, each optional."""

    slurm: SlurmConfig = Field(default_factory=SlurmConfig)
    k8s: K8sConfig = Field(default_factory=K8sConfig)
