"""Render Slurm batch scripts for twins runs, and submit them.

Four recipes, one per ``kind``:

``torchrun``
    One launcher task per node (``srun --ntasks-per-node=1``) starts
    ``torchrun --nnodes=$SLURM_NNODES --nproc_per_node=M`` with a c10d rendezvous on the
    first node of the allocation (port ``rdzv_port + job id mod 1000``, rendezvous id the
    job id). torchrun sets ``RANK``/``WORLD_SIZE``, which :func:`twins.train.dist.detect_env`
    prefers over the Slurm variables, so there is no double detection.
``ray``
    A Ray head on the first node (``srun --nodes=1 --ntasks=1 -w $head ray start --head
    --block &``), one Ray worker per other node (``srun ... ray start --address``), then
    ``twins train CONFIG --backend ray --address $head:PORT --workers N`` (or ``twins tune``)
    from the batch step; the cluster is torn down when the script exits.
``twin-update``
    ``twins twin update TWIN_DIR`` on one task. With ``twin_every`` the job resubmits
    itself with ``sbatch --begin=now+EVERY --dependency=singleton`` (one pending copy per
    job name). Sites that enable it can instead use ``scrontab`` (Slurm's cron): put
    ``0 * * * * twins twin update TWIN_DIR`` with ``#SCRON`` options in ``scrontab -e``.
``array``
    A job array (``--array=0-N-1``, at most ``array_limit`` tasks at once) running one
    ``twins`` command per input of a list, e.g. ``gravwave clean ... {input}`` over segment
    files (:mod:`twins.launch.array`); each task is one process of ``cpus_per_process`` cores.
``preprocess``
    ``twins preprocess CONFIG`` on one node: the task's preprocessing alone (the drought
    task's cube store, built once and opened by the training jobs that follow, e.g. with
    ``sbatch --dependency=afterok:JOBID``). Walltime, memory and CPUs come from the task's
    :class:`twins.task.PreprocessProjection` (the CPUs its engine was probed on).

Walltime, memory and CPUs come from the config when given, else from a
:class:`twins.dryrun.DryRunReport` (a :class:`twins.task.PreprocessProjection` for
``preprocess``) plus the margins in ``slurm.margins``.
The default is to print the script; :func:`submit` runs ``sbatch --parsable``.
"""

from __future__ import annotations

import logging
import math
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from twins.errors import ConfigError, TwinsError
from twins.launch.array import array_body, command_words
from twins.launch.models import SlurmConfig
from twins.twin import EXIT_NOTHING_NEW as TWIN_NOTHING_NEW

log = logging.getLogger(__name__)

Kind = Literal["torchrun", "ray", "twin-update", "array", "preprocess"]
KINDS: tuple[str, ...] = ("torchrun", "ray", "twin-update", "array", "preprocess")
#: Kinds that run one process on one node and take no training dry run.
SINGLE_TASK_KINDS = ("twin-update", "array")
#: Kinds that run one process on one node (``preprocess`` takes a preprocessing projection).
ONE_PROCESS_KINDS = (*SINGLE_TASK_KINDS, "preprocess")
#: Walltime of a twin update or an array task when the config does not say.
TWIN_UPDATE_TIME = "01:00:00"
#: The default ``--output`` pattern, and what an array job uses instead (one file per task).
DEFAULT_OUTPUT = "twins-%x-%j.out"
ARRAY_OUTPUT = "twins-%x-%A_%a.out"
#: Memory per node when neither the config nor a dry run says, in MiB.
DEFAULT_MEM_MIB = 4096


def hms(seconds: float) -> str:
    """Format seconds as a Slurm ``[D-]HH:MM:SS`` walltime, rounded up to the minute."""
    minutes = max(1, math.ceil(seconds / 60))
    days, rem = divmod(minutes, 24 * 60)
    text = f"{rem // 60:02d}:{rem % 60:02d}:00"
    return f"{days}-{text}" if days else text


def projected_time(report: Any, slurm: SlurmConfig) -> str:
    """Walltime from a dry-run report: ``total_s x time_factor + time_pad_min``."""
    m = slurm.margins
    return hms(float(report.total_s) * m.time_factor + 60 * m.time_pad_min)


def projected_mem_mib(
    report: Any, slurm: SlurmConfig, extra_mib: int = 0, processes: int | None = None
) -> int:
    """Memory per node from a dry run: peak RSS x processes per node x factor + pad.

    ``processes`` defaults to ``slurm.tasks_per_node``; a preprocessing projection's peak
    is already the whole process tree's (1).
    """
    m = slurm.margins
    procs = slurm.tasks_per_node if processes is None else processes
    per_node = float(report.peak_rss_mib) * procs * m.mem_factor
    return int(math.ceil(per_node + m.mem_pad_mib + extra_mib))


def _q(text: str | Path) -> str:
    return shlex.quote(str(text))


def _resources(kind: str, slurm: SlurmConfig, report: Any | None) -> tuple[str, str, int]:
    """``(time, mem, cpus_per_task)`` of the allocation."""
    if slurm.time:
        time = slurm.time
    elif report is not None:
        time = projected_time(report, slurm)
    elif kind in SINGLE_TASK_KINDS:
        time = TWIN_UPDATE_TIME
    else:
        raise ConfigError(
            "no walltime: launch.slurm.time is not set and no dry run was given",
            "set launch.slurm.time=HH:MM:SS, or let 'twins launch slurm' dry-run the config",
        )
    ray_extra = 1024 if kind == "ray" else 0
    procs = 1 if kind in ONE_PROCESS_KINDS else slurm.tasks_per_node
    if slurm.mem:
        mem = slurm.mem
    elif report is not None:
        mem = f"{projected_mem_mib(report, slurm, ray_extra, procs)}M"
    else:
        mem = f"{DEFAULT_MEM_MIB + ray_extra}M"
    cpus = slurm.cpus_per_task or procs * slurm.cpus_per_process
    if kind == "preprocess" and report is not None and not slurm.cpus_per_task:
        cpus = int(report.cpus)  # the engine's threads the projection was measured on
    return time, mem, cpus


def _header(
    kind: str, slurm: SlurmConfig, run_name: str, report: Any | None, n_array: int = 0
) -> list[str]:
    time, mem, cpus = _resources(kind, slurm, report)
    nodes = 1 if kind in ONE_PROCESS_KINDS else slurm.nodes
    suffix = {"twin-update": "-update", "array": "-array", "preprocess": "-preprocess"}.get(
        kind, ""
    )
    name = slurm.job_name or f"twins-{run_name}{suffix}"
    output = slurm.output
    if kind == "array" and output == DEFAULT_OUTPUT:
        output = ARRAY_OUTPUT
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --cpus-per-task={cpus}",
        f"#SBATCH --mem={mem}",
        f"#SBATCH --time={time}",
        f"#SBATCH --output={output}",
    ]
    if kind == "array":
        limit = f"%{slurm.array_limit}" if slurm.array_limit else ""
        lines.append(f"#SBATCH --array=0-{n_array - 1}{limit}")
    for key in ("account", "partition", "qos"):
        value = getattr(slurm, key)
        if value:
            lines.append(f"#SBATCH --{key}={value}")
    if slurm.gpus_per_node and kind not in ("twin-update", "preprocess"):
        lines.append(f"#SBATCH --gres=gpu:{slurm.gpus_per_node}")
    if slurm.chdir:
        lines.append(f"#SBATCH --chdir={slurm.chdir}")
    lines += [f"#SBATCH {opt}" for opt in slurm.sbatch_extra]
    return lines


def _prelude(kind: str, slurm: SlurmConfig, report: Any | None) -> list[str]:
    lines = [
        f"# twins launch slurm --kind {kind}: generated; edit the config, not this file.",
    ]
    if report is not None and kind == "preprocess":
        lines.append(
            f"# preprocessing projected: {float(report.total_s):.0f} s, peak RSS "
            f"{float(report.peak_rss_mib):.0f} MiB (process tree) on {report.cpus} CPU(s)"
        )
    elif report is not None:
        lines.append(
            f"# dry run: {report.steps_per_epoch} steps/epoch, projected "
            f"{float(report.total_s):.0f} s, peak RSS {float(report.peak_rss_mib):.0f} MiB/process"
        )
    # modules and venv activation scripts often read unset variables: -u comes after them
    lines += ["set -eo pipefail", ""]
    if slurm.purge_modules:
        lines.append("module purge")
    lines += [f"module load {m}" for m in slurm.modules]
    if slurm.venv:
        lines.append("# shellcheck disable=SC1091  # the venv exists on the cluster, not here")
        lines.append(f"source {_q(slurm.venv / 'bin' / 'activate')}")
    lines.append("set -u")
    lines.append(f"export OMP_NUM_THREADS={slurm.cpus_per_process}")
    lines.append("export OMP_WAIT_POLICY=PASSIVE")
    lines.append("export PYTHONUNBUFFERED=1")
    for k, v in slurm.env.items():
        if "$" in v or "`" in v:
            lines.append("# shellcheck disable=SC2016  # literal value, quoted on purpose")
        lines.append(f"export {k}={_q(v)}")
    return lines


def _container(slurm: SlurmConfig) -> str:
    c = slurm.container
    if c is None:
        return ""
    parts = [c.runtime, "exec"]
    if c.nv:
        parts.append("--nv")
    for b in c.binds:
        parts += ["--bind", b]
    parts.append(c.image)
    return " ".join(parts) + " "


def _twins_args(cfg_path: str | Path, overrides: Sequence[str]) -> str:
    return " ".join(_q(a) for a in [str(cfg_path), *overrides])


def _torchrun_body(slurm: SlurmConfig, args: str) -> list[str]:
    run = _container(slurm) + slurm.python
    return [
        'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)',
        f"port=$(( {slurm.rdzv_port} + SLURM_JOB_ID % 1000 ))",
        'echo "torchrun: $SLURM_NNODES node(s) x '
        f'{slurm.tasks_per_node} process(es), rendezvous $head:$port"',
        "srun --ntasks-per-node=1 --kill-on-bad-exit=1 "
        f"{run} -m torch.distributed.run "
        f'--nnodes="$SLURM_NNODES" --nproc_per_node={slurm.tasks_per_node} '
        '--rdzv_backend=c10d --rdzv_endpoint="$head:$port" --rdzv_id="$SLURM_JOB_ID" '
        f"-m twins train {args}",
    ]


def _ray_body(slurm: SlurmConfig, args: str, workers: int) -> list[str]:
    ray = _container(slurm) + f"{slurm.python} -m ray.scripts.scripts"
    gpus = f" --num-gpus={slurm.gpus_per_node}" if slurm.gpus_per_node else ""
    start = f'--num-cpus="$SLURM_CPUS_PER_TASK"{gpus} --block'
    twins = _container(slurm) + f"{slurm.python} -m twins"
    if slurm.ray_command == "train":
        cmd = f'{twins} train {args} --backend ray --address "$RAY_ADDRESS" --workers {workers}'
    else:
        cmd = f'{twins} tune {args} --address "$RAY_ADDRESS"'
    return [
        'head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)',
        "# Ray wants an IP; the recipe of Ray's own Slurm guide",
        'head_ip=$(srun --nodes=1 --ntasks=1 --overlap -w "$head" hostname --ip-address '
        "| awk '{print $1}')",
        f"port={slurm.ray_port}",
        'export RAY_ADDRESS="$head_ip:$port"',
        "# stop Ray on every node (it also drops the node's cluster record), then the steps",
        "cleanup() {",
        '    srun --nodes="$SLURM_NNODES" --ntasks="$SLURM_NNODES" --ntasks-per-node=1 '
        f"--overlap {ray} stop --force >/dev/null 2>&1 || true",
        "    jobs -p | xargs -r kill 2>/dev/null || true",
        "}",
        "trap cleanup EXIT",
        f'srun --nodes=1 --ntasks=1 --overlap -w "$head" {ray} start --head '
        f'--node-ip-address="$head_ip" --port="$port" {start} &',
        "for _ in $(seq 60); do",
        f'    {ray} status --address "$RAY_ADDRESS" >/dev/null 2>&1 && break',
        "    sleep 2",
        "done",
        'if [ "$SLURM_NNODES" -gt 1 ]; then',
        "    srun --nodes=$((SLURM_NNODES - 1)) --ntasks=$((SLURM_NNODES - 1)) --overlap "
        f'--exclude="$head" {ray} start --address="$RAY_ADDRESS" {start} &',
        "    sleep 10",
        "fi",
        cmd,
    ]


def _preprocess_body(slurm: SlurmConfig, args: str) -> list[str]:
    twins = _container(slurm) + f"{slurm.python} -m twins"
    return [f"{twins} preprocess {args}"]


def _twin_body(slurm: SlurmConfig, twin_dir: str | Path) -> list[str]:
    twins = _container(slurm) + f"{slurm.python} -m twins"
    lines = ["rc=0", f"{twins} twin update {_q(twin_dir)} || rc=$?"]
    if slurm.twin_every:
        lines += [
            "# recur: one pending copy per job name; a config error (2) stops the chain",
            'if [ "$rc" -ne 2 ]; then',
            f"    sbatch --begin=now+{slurm.twin_every} --dependency=singleton "
            '"${TWINS_SBATCH_SCRIPT:-$0}"',
            "fi",
        ]
    lines += [
        f'if [ "$rc" -eq {TWIN_NOTHING_NEW} ]; then',
        '    echo "twin update: nothing new"',
        "    rc=0",
        "fi",
        'exit "$rc"',
    ]
    return lines


def render_sbatch(
    kind: Kind | str,
    cfg_path: str | Path,
    slurm: SlurmConfig,
    report: Any | None = None,
    *,
    overrides: Sequence[str] = (),
    run_name: str = "run",
    twin_dir: str | Path | None = None,
    ray_workers: int | None = None,
    inputs: Sequence[str] = (),
    command: str | Sequence[str] = (),
) -> str:
    """Render a batch script.

    Args:
        kind: ``"torchrun"``, ``"ray"``, ``"twin-update"``, ``"array"`` or
            ``"preprocess"``.
        cfg_path: Run config the job trains (as the job will see the path).
        slurm: Validated Slurm settings.
        report: A :class:`twins.dryrun.DryRunReport` (anything with ``total_s`` and
            ``peak_rss_mib``) for walltime and memory the config leaves unset; for
            ``preprocess`` a :class:`twins.task.PreprocessProjection` (also ``cpus``).
        overrides: ``section.key=value`` overrides passed on to ``twins train``.
        run_name: Run name, for the default job name.
        twin_dir: Twin directory (``twin-update`` only).
        ray_workers: Ray Train workers; default ``nodes x tasks_per_node``.
        inputs: The array's inputs, one task each (``array`` only).
        command: The ``twins`` command each array task runs, with ``{input}`` where its
            input goes (default: after the last word) (``array`` only).

    Returns:
        The script text; it passes ``bash -n`` and shellcheck.

    Raises:
        ConfigError: Unknown kind, missing twin directory, an array without inputs or
            command, or no walltime to request.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown launch kind {kind!r}", f"use one of {', '.join(KINDS)}")
    if kind in SINGLE_TASK_KINDS:
        report = None  # a training projection says nothing about an update or a task
    words: list[str] = []
    if kind == "array":
        words = command_words(command)
        if not inputs:
            raise ConfigError("an array job needs inputs", "pass --inputs LIST (one a line)")
    header = _header(kind, slurm, run_name, report, len(inputs))
    lines = header + [""] + _prelude(kind, slurm, report)
    lines.append("")
    args = _twins_args(cfg_path, overrides)
    if kind == "torchrun":
        lines += _torchrun_body(slurm, args)
    elif kind == "ray":
        lines += _ray_body(slurm, args, ray_workers or slurm.nodes * slurm.tasks_per_node)
    elif kind == "array":
        lines += array_body(_container(slurm) + f"{slurm.python} -m twins", inputs, words)
    elif kind == "preprocess":
        lines += _preprocess_body(slurm, args)
    else:
        if twin_dir is None:
            raise ConfigError("a twin-update job needs the twin directory", "pass --twin DIR")
        lines += _twin_body(slurm, twin_dir)
    return "\n".join(lines) + "\n"


def submit(
    script: str,
    sbatch: str = "sbatch",
    extra: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> str:
    """Submit a script with ``sbatch --parsable`` and return the job id.

    Args:
        script: Script text from :func:`render_sbatch`.
        sbatch: The ``sbatch`` executable.
        extra: Further command-line options for ``sbatch``.
        env: Environment of ``sbatch`` (and so of the job); default ``os.environ``.

    Returns:
        The job id (without the ``;cluster`` suffix of federated setups).

    Raises:
        TwinsError: ``sbatch`` is missing or refuses the job.
    """
    exe = shutil.which(sbatch)
    if exe is None:
        raise TwinsError(
            f"{sbatch} not found: this machine is not a Slurm submit host",
            "run without --submit to print the script, and submit it from a login node",
        )
    with tempfile.NamedTemporaryFile("w", suffix=".sbatch", delete=False) as fh:
        fh.write(script)
        path = Path(fh.name)
    try:
        proc = subprocess.run(
            [exe, "--parsable", *extra, str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            env=None if env is None else dict(env),
        )
    finally:
        path.unlink(missing_ok=True)
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        raise TwinsError(f"sbatch refused the job: {msg[-1] if msg else proc.returncode}")
    job_id = proc.stdout.strip().split(";")[0]
    log.info("submitted Slurm job %s", job_id)
    return job_id
