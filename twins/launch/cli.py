"""``twins launch slurm|k8s CONFIG``: preview (default) or submit a job for a run config.

Settings come from the config's ``launch:`` section (``launch.slurm``, ``launch.k8s``),
overridable like any key (``launch.slurm.nodes=2``) and by a few flags. Without
``--submit``/``-o`` the script or manifests are printed; nothing is submitted.

``twins launch slurm CONFIG --kind array --inputs LIST --command "CMD ..."`` writes a job
array running ``twins CMD ...`` once per input of LIST (one a line), e.g. a domain's batch
command over segment files; only the config's ``name`` and ``launch:`` section are used.

``twins launch slurm CONFIG --kind preprocess`` writes a one-node job running
``twins preprocess CONFIG`` (e.g. the drought task's cube build), its walltime, memory and
CPUs from the task's preprocessing projection (:meth:`twins.task.Task.preprocessing_projection`)
unless ``launch.slurm.time`` and ``mem`` are set.
"""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def load_with_launch(config: str, overrides: list[str]) -> tuple[Any, Any, list[str]]:
    """Load a run config and its ``launch:`` section.

    Works whether or not :class:`twins.config.schema.RunConfig` declares ``launch``:
    the section is validated by :class:`twins.launch.models.LaunchConfig` either way.

    Returns:
        ``(run config, launch config, overrides for the job)``; ``launch.*`` overrides
        are consumed here and not passed on.
    """
    from pydantic import ValidationError

    from twins.config.load import apply_overrides, format_validation_error, read_yaml, validate
    from twins.errors import ConfigError
    from twins.launch.models import LaunchConfig

    data = read_yaml(Path(config))
    origins = apply_overrides(data, overrides)
    raw = data.get("launch", {}) or {}
    try:
        launch = LaunchConfig.model_validate(raw)
    except ValidationError as exc:
        msg = format_validation_error(exc, config, prefix="launch", overrides=origins)
        raise ConfigError(msg) from None
    from twins.config.schema import RunConfig

    if "launch" not in RunConfig.model_fields:
        data.pop("launch", None)
    cfg = validate(data, config, origins)
    job_overrides = [o for o in overrides if not o.startswith("launch.")]
    return cfg, launch, job_overrides


def cmd_launch(args: argparse.Namespace) -> int:
    """Run ``twins launch slurm|k8s``."""
    from twins.errors import ConfigError

    cfg, launch, overrides = load_with_launch(args.config, list(args.overrides))
    if args.target == "slurm":
        text = _slurm(args, cfg, launch, overrides)
        if text is None:
            return 0
    else:
        from twins.launch.k8s import render_k8s, to_yaml

        k8s = launch.k8s
        if args.nodes:
            k8s = k8s.model_copy(update={"nodes": args.nodes})
        kind = {"torchrun": "train"}.get(args.kind, args.kind)
        if kind == "twin-update" and not args.twin:
            raise ConfigError("--kind twin-update needs --twin TWIN_DIR")
        docs = render_k8s(
            kind,
            k8s,
            run_name=cfg.name,
            config_text=Path(args.config).read_text() if args.ship_config else None,
            config_path=None if args.ship_config else args.config,
            overrides=overrides,
            twin_dir=args.twin,
            interlink=args.interlink,
            ray_command=launch.slurm.ray_command,
        )
        text = to_yaml(docs)
    if args.output:
        Path(args.output).write_text(text)
        log.info("wrote %s", args.output)
    else:
        print(text, end="")
    return 0


def _slurm(args: argparse.Namespace, cfg: Any, launch: Any, overrides: list[str]) -> str | None:
    from twins.launch.slurm import SINGLE_TASK_KINDS, render_sbatch, submit

    slurm = launch.slurm
    updates: dict[str, Any] = {}
    for flag, key in (
        ("nodes", "nodes"),
        ("tasks_per_node", "tasks_per_node"),
        ("time", "time"),
        ("mem", "mem"),
        ("array_limit", "array_limit"),
    ):
        if getattr(args, flag, None):
            updates[key] = getattr(args, flag)
    if updates:
        from pydantic import ValidationError

        from twins.errors import ConfigError
        from twins.launch.models import SlurmConfig

        try:
            slurm = SlurmConfig.model_validate({**slurm.model_dump(), **updates})
        except ValidationError as exc:
            err = exc.errors()[0]
            flag = "--" + str(err["loc"][0]).replace("_", "-") if err["loc"] else "a flag"
            raise ConfigError(f"command line: {flag}: {err['msg']}") from None
    inputs: list[str] = []
    if args.kind == "array":
        from twins.errors import ConfigError
        from twins.launch.array import read_inputs

        if not args.inputs or not args.command:
            raise ConfigError(
                "--kind array needs --inputs LIST and --command",
                'e.g. --inputs segments.txt --command "gravwave clean --cleaner c.pt --out out"',
            )
        inputs = read_inputs(args.inputs)
    report: Any = None
    needs_projection = args.kind not in SINGLE_TASK_KINDS and not (slurm.time and slurm.mem)
    if needs_projection and not args.no_dryrun and args.kind == "preprocess":
        from twins.dryrun import project_preprocessing

        log.info("projecting the preprocessing for the resource request")
        report = project_preprocessing(cfg)
    elif needs_projection and not args.no_dryrun:
        from twins.dryrun import dry_run

        workers = slurm.nodes * slurm.tasks_per_node
        log.info(
            "dry run at %d worker(s) on %d node(s) for the resource request", workers, slurm.nodes
        )
        report = dry_run(
            cfg,
            workers=workers,
            steps=args.steps,
            nodes=slurm.nodes,
            config_path=shlex.join([args.config, *overrides]),
        )
    script = render_sbatch(
        args.kind,
        args.config,
        slurm,
        report,
        overrides=overrides,
        run_name=cfg.name,
        twin_dir=args.twin,
        inputs=inputs,
        command=args.command or (),
    )
    if args.submit:
        job_id = submit(script)
        print(job_id)
        return None
    return script


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``launch`` to the ``twins`` subcommands.

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers``.

    Returns:
        The ``launch`` parser.
    """
    p = subparsers.add_parser(
        "launch", help="print (or submit) a Slurm script or Kubernetes manifests for a config"
    )
    sub = p.add_subparsers(dest="target", required=True, metavar="TARGET")
    for target, help_text, kinds in (
        (
            "slurm",
            "an sbatch script: torchrun, Ray on Slurm, a recurring twin update, a job array, "
            "the task's preprocessing",
            ["torchrun", "ray", "twin-update", "array", "preprocess"],
        ),
        (
            "k8s",
            "manifests: training Job, KubeRay RayCluster, twin-update CronJob",
            ["torchrun", "ray", "twin-update"],
        ),
    ):
        sp = sub.add_parser(target, help=help_text)
        sp.add_argument("config", help="run config (YAML) with an optional launch: section")
        sp.add_argument("overrides", nargs="*", metavar="section.key=value")
        sp.add_argument(
            "--kind",
            choices=kinds,
            default="torchrun",
            help="torchrun training (default), a Ray cluster + train/tune, a twin update"
            + (
                ", a job array running a command per input, or the task's preprocessing "
                "(twins preprocess)"
                if target == "slurm"
                else ""
            ),
        )
        sp.add_argument("--twin", help="twin directory (--kind twin-update)")
        sp.add_argument("--nodes", type=int, help="nodes (overrides launch.*.nodes)")
        sp.add_argument("-o", "--output", help="write to this file instead of printing")
        sp.set_defaults(func=cmd_launch)
        if target == "slurm":
            sp.add_argument("--tasks-per-node", type=int, help="processes per node")
            sp.add_argument("--time", help="walltime [D-]HH:MM:SS (default: from a dry run)")
            sp.add_argument("--mem", help="memory per node, e.g. 8G (default: from a dry run)")
            sp.add_argument(
                "--inputs", help="--kind array: text file of inputs, one per line (one task each)"
            )
            sp.add_argument(
                "--command",
                help="--kind array: the twins command each task runs, {input} where its input "
                'goes (default: last), e.g. "gravwave clean --cleaner c.pt --out cleaned"',
            )
            sp.add_argument(
                "--array-limit", type=int, help="--kind array: most tasks running at once"
            )
            sp.add_argument("--steps", type=int, default=5, help="dry-run steps to time")
            sp.add_argument(
                "--no-dryrun", action="store_true", help="do not dry-run; time and mem must be set"
            )
            sp.add_argument("--submit", action="store_true", help="sbatch it; print the job id")
        else:
            sp.add_argument(
                "--interlink", action="store_true", help="target interLink virtual nodes"
            )
            sp.add_argument(
                "--ship-config",
                action=argparse.BooleanOptionalAction,
                default=True,
                help="ship the config in a ConfigMap (default) or use its path in the image",
            )
    return p
