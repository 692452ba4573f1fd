"""``twins tune`` and ``twins report hpo``: argument parsing and the two commands.

``twins.cli.build_parser`` calls :func:`register`; the ``twins`` command is the only entry
point (no second command line, no import cycle back to :mod:`twins.cli`).
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger("twins.tune")


def cmd_tune(args: argparse.Namespace) -> int:
    """Run (or resume) the study of ``args.config``."""
    from twins.tune.space import load_study
    from twins.tune.study import run_study

    cfg, tune_cfg = load_study(args.config, args.overrides)
    result = run_study(
        cfg, tune_cfg, resume=args.resume, address=args.address, num_cpus=args.num_cpus
    )
    print(
        f"study {cfg.name}: {result.trials} trials, {result.trial_epochs} trial-epochs, "
        f"{result.wall_s:.1f} s; best {tune_cfg.metric} {result.best_metric:.4g}"
    )
    print(f"best config: {result.best_config}  (twins train {result.best_config})")
    return 0 if result.errors == 0 else 1


def cmd_report(args: argparse.Namespace) -> int:
    """Re-train default and best configs over seeds and write the HPO report."""
    from twins.tune.report import hpo_report

    report = hpo_report(args.run, seeds=args.seeds, tracking=args.track)
    print(report.render())
    print(f"report: {report.paths['md']}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``tune`` and ``report`` to the ``twins`` sub-command parsers."""
    sp = subparsers.add_parser(
        "tune", help="hyper-parameter study (Ray Tune, ASHA) over the config's tune: section"
    )
    sp.add_argument("config", help="study config: a run config plus a tune: section (YAML)")
    sp.add_argument(
        "overrides",
        nargs="*",
        metavar="section.key=value",
        help="override config values, e.g. train.epochs=3 or tune.num_samples=4",
    )
    sp.add_argument("--resume", action="store_true", help="continue an interrupted study")
    sp.add_argument("--address", help="join this Ray cluster instead of starting a local one")
    sp.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray")
    sp.set_defaults(func=cmd_tune)

    sp = subparsers.add_parser("report", help="reports on finished work")
    sp.add_argument("kind", choices=["hpo"], help="hpo: best versus default of a study")
    sp.add_argument("run", help="study directory (<workdir>/<name>) or its study config")
    sp.add_argument("--seeds", type=int, default=3, help="seeds per configuration (>= 3)")
    sp.add_argument("--track", action="store_true", help="log the re-training runs to MLflow")
    sp.set_defaults(func=cmd_report)
