"""The ``twins`` command line. Imports are lazy so that ``--help`` is fast.

Exit codes: 0 success, 1 runtime failure, 2 config error, 3 data error, 4 twin error,
10 nothing new (twin update), 75 twin locked, 130 interrupted. A user mistake prints one line
and a hint, never a traceback; an unexpected failure prints one line and the path of a log
holding its traceback (``$TWINS_LOG_DIR``, else ``$XDG_STATE_HOME/twins``, else
``~/.local/state/twins``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger("twins")

QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TQDM_MININTERVAL": "1",
}


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose >= 0 else logging.WARNING
    rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID"))
    fmt = "%(asctime)s twins" + (f"[{rank}]" if rank else "") + " %(levelname)s %(message)s"
    logging.basicConfig(level=logging.WARNING, format=fmt, datefmt="%H:%M:%S", stream=sys.stderr)
    for name in ("twins", "hydrology", "gravwave"):
        logging.getLogger(name).setLevel(level)
    # pint warns "Redefining ..." each time xclim and cf_xarray extend its unit registry
    for noisy in ("mlflow", "alembic", "ray", "urllib3", "matplotlib", "pint"):
        logging.getLogger(noisy).setLevel(logging.ERROR)


def _load(args: argparse.Namespace) -> Any:
    from twins.config import load_config

    return load_config(args.config, args.overrides)


def _apply_launch_flags(cfg: Any, args: argparse.Namespace) -> Any:
    updates: dict[str, Any] = {}
    if getattr(args, "backend", None):
        updates["backend"] = args.backend
    if getattr(args, "workers", None):
        updates["workers"] = args.workers
    if getattr(args, "address", None):
        updates["address"] = args.address
    if updates:
        from twins.config import validate

        data = cfg.model_dump(mode="json")
        data["distributed"].update(updates)
        cfg = validate(data, "<command line>")
    return cfg


def cmd_train(args: argparse.Namespace) -> int:
    cfg = _apply_launch_flags(_load(args), args)
    if cfg.distributed.backend == "ray":
        from twins.train.ray_backend import run_on_ray

        summary = run_on_ray(cfg, resume=args.resume)
    else:
        from twins.train.run import train_process

        summary = train_process(cfg, resume=args.resume)
    if summary and int(os.environ.get("RANK", "0")) == 0:
        log.info("summary written to %s", cfg.run_dir / "summary.json")
    return 0


def cmd_dryrun(args: argparse.Namespace) -> int:
    from twins.dryrun import dry_run

    cfg = _apply_launch_flags(_load(args), args)
    launch = " ".join([args.config, *args.overrides])
    report = dry_run(
        cfg,
        workers=args.workers or cfg.distributed.workers,
        steps=args.steps,
        nodes=args.nodes,
        config_path=launch,
    )
    print(report.render())
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    """``twins preprocess CONFIG``: the task's preprocessing alone (e.g. as its own job)."""
    from twins.config import check_workdir
    from twins.task import build_task

    cfg = _load(args)
    check_workdir(cfg)
    task = build_task(cfg)
    t0 = time.perf_counter()
    done = task.preprocess()
    if done is None:
        print(f"{cfg.task.target}: nothing to preprocess (training builds its data itself)")
    else:
        print(f"preprocessed {cfg.name} in {time.perf_counter() - t0:.1f} s: {done}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from twins.config import config_hash, to_yaml

    cfg = _load(args)
    print(f"# config hash {config_hash(cfg)}")
    print(to_yaml(cfg), end="")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from twins.domains import demo_domains
    from twins.errors import ConfigError

    if args.overrides and args.domain is None:
        raise ConfigError(
            "demo overrides apply to one domain's config",
            "name it: twins demo --domain hydrology task.params.preset=tiny",
        )
    chosen = demo_domains(args.domain)
    workdir = Path(args.workdir)
    for domain in chosen:
        where = workdir if len(chosen) == 1 else workdir / domain.name
        log.info("demo of %s (%s) in %s", domain.name, domain.description, where)
        rc = int(domain.demo(where, list(args.overrides)) or 0)
        if rc:
            return rc
    return 0


def cmd_twin(args: argparse.Namespace) -> int:
    from twins.domains import domains, find_domain
    from twins.twin import TwinStore, format_status
    from twins.twin.commands import run_store_command, run_twin_command

    twin_dir = Path(args.twin_dir)
    rest = list(args.rest)
    if args.twin_cmd == "init":
        pre = argparse.ArgumentParser(prog="twins twin init", add_help=False)
        pre.add_argument("--kind", required=True, help="the domain of the new twin")
        known, _ = pre.parse_known_args(rest)
        twin_cls = find_domain(known.kind).twin
    else:
        store = TwinStore.open(twin_dir)  # a twin error (exit 4) if this is not a twin
        domain = domains().get(store.state.kind)
        twin_cls = domain.twin if domain is not None else None
        if twin_cls is None:  # the domain is not installed: the core still shows and restores
            if args.twin_cmd == "status":
                print(format_status(store))
                return 0
            if args.twin_cmd in ("history", "rollback"):
                return run_store_command(store, args.twin_cmd, rest)
            find_domain(store.state.kind)  # raises the clear error
    assert twin_cls is not None
    return run_twin_command(twin_cls, args.twin_cmd, twin_dir, rest)


def cmd_domain(args: argparse.Namespace) -> int:
    from twins.domains import run_domain_command

    return run_domain_command(args.domain_name, list(args.rest))


def _domain_names() -> list[str]:
    """Installed domains, from their entry points' names: nothing is imported."""
    from importlib.metadata import entry_points

    return sorted({ep.name for ep in entry_points(group="twins.domains")})


def cmd_env(args: argparse.Namespace) -> int:
    import torch

    from twins.energy import available_sources
    from twins.train.dist import detect_env

    env = detect_env()
    print(
        f"launcher      {env.launcher} (rank {env.rank}/{env.world_size}, "
        f"local {env.local_rank}/{env.local_world_size})"
    )
    print(
        f"torch         {torch.__version__}, threads {torch.get_num_threads()}, "
        f"cuda {torch.cuda.is_available()}"
    )
    print(f"OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    sources = available_sources()
    print(f"energy        {', '.join(sources) if sources else 'unavailable (no RAPL or NVML)'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``twins`` command."""
    p = argparse.ArgumentParser(
        prog="twins", description="AI digital twins for science, on one shared core."
    )
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def with_config(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("config", help="run config (YAML)")
        sp.add_argument(
            "overrides",
            nargs="*",
            metavar="section.key=value",
            help="override config values, e.g. train.epochs=3",
        )

    sp = sub.add_parser("demo", help="end-to-end demo on generated data")
    sp.add_argument(
        "--workdir", default="twins-demo", help="where outputs go (default twins-demo)"
    )
    sp.add_argument(
        "--domain", default=None, help="which domain's demo (default: the first found)"
    )
    sp.add_argument("overrides", nargs="*", metavar="section.key=value")
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("train", help="train a config (local, torchrun/srun ranks, or Ray)")
    with_config(sp)
    sp.add_argument("--backend", choices=["auto", "local", "torchrun", "ray"])
    sp.add_argument("--workers", type=int, help="Ray Train workers")
    sp.add_argument("--address", help="existing Ray cluster address")
    sp.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("dryrun", help="build everything, run a few steps, project the full run")
    with_config(sp)
    sp.add_argument("--workers", type=int, default=None, help="ranks of the projected run")
    sp.add_argument("--nodes", type=int, default=1, help="nodes of the projected run")
    sp.add_argument("--backend", choices=["auto", "local", "torchrun", "ray"])
    sp.add_argument("--steps", type=int, default=5, help="steps to time (default 5)")
    sp.set_defaults(func=cmd_dryrun)

    sp = sub.add_parser(
        "preprocess", help="run the task's preprocessing only (e.g. build a data cube once)"
    )
    with_config(sp)
    sp.set_defaults(func=cmd_preprocess)

    sp = sub.add_parser("config", help="print the resolved config and its hash")
    with_config(sp)
    sp.set_defaults(func=cmd_config)

    sp = sub.add_parser("twin", help="operate a twin directory")
    sp.add_argument(
        "twin_cmd", choices=["init", "update", "simulate", "status", "history", "rollback"]
    )
    sp.add_argument("twin_dir", help="twin directory")
    sp.add_argument(
        "rest", nargs=argparse.REMAINDER, help="the command's arguments (twins twin CMD DIR -h)"
    )
    sp.set_defaults(func=cmd_twin)

    sp = sub.add_parser("env", help="what this process sees: launcher, ranks, threads, energy")
    sp.set_defaults(func=cmd_env)

    from twins.launch.cli import register as register_launch  # light: no torch import

    register_launch(sub)
    from twins.tune.cli import register as register_tune  # light: ray/torch load on use

    register_tune(sub)
    core = set(sub.choices)
    for name in _domain_names():  # twins <domain> <command> ...: the domain's own commands
        if name in core:
            continue
        sp = sub.add_parser(
            name, help=f"the {name} domain's own commands (twins {name} -h)", add_help=False
        )
        sp.add_argument("rest", nargs=argparse.REMAINDER, help="COMMAND and its arguments")
        sp.set_defaults(func=cmd_domain, domain_name=name)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse a command line; ``key=value`` overrides may come before or after the flags.

    Raises:
        SystemExit: Usage error (exit code 2), as argparse does.
    """
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and getattr(args, "domain_name", None):  # twins <domain> -h: the domain's parser
        args.rest, extra = [*extra, *args.rest], []
    if extra:
        overrides = [a for a in extra if "=" in a and not a.startswith("-")]
        if len(overrides) != len(extra) or not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *overrides]
    return args


def log_dir() -> Path:
    """Where the CLI writes tracebacks of unexpected failures.

    ``$TWINS_LOG_DIR``, else ``$XDG_STATE_HOME/twins``, else ``~/.local/state/twins``.
    """
    if os.environ.get("TWINS_LOG_DIR"):
        return Path(os.environ["TWINS_LOG_DIR"])
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "twins"


def _report_unexpected(exc: BaseException, argv: Sequence[str] | None) -> None:
    """Write the traceback to a log file and print one line pointing at it."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text = f"twins {' '.join(sys.argv[1:] if argv is None else argv)}\n" + "".join(
        traceback.format_exception(exc)
    )
    where = "(could not write a log)"
    for directory in (log_dir(), Path(tempfile.gettempdir())):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            path = directory / f"twins-error-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
        except OSError:
            continue
        where = str(path)
        break
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    print(f"twins: error: unexpected {type(exc).__name__}: {first}", file=sys.stderr)
    print(
        f"twins: hint: this is a bug or an unhandled input; traceback in {where}", file=sys.stderr
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``twins`` console script and ``python -m twins``."""
    for k, v in QUIET_ENV.items():
        os.environ.setdefault(k, v)
    args = parse_args(argv)
    _setup_logging(-1 if args.quiet else args.verbose)
    from twins.errors import TwinsError

    try:
        rc = int(args.func(args) or 0)
    except TwinsError as exc:
        print(f"twins: error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"twins: hint: {exc.hint}", file=sys.stderr)
        rc = exc.exit_code
    except KeyboardInterrupt:
        print("twins: interrupted", file=sys.stderr)
        rc = 130
    except Exception as exc:  # the last guard: one line and a log, never a bare traceback
        _report_unexpected(exc, argv)
        rc = 1
    if argv is None and _is_distributed_worker():
        _exit_now(rc)
    return rc


def _is_distributed_worker() -> bool:
    """True in a rank of a multi-process job (torchrun, or an srun step of several tasks)."""
    if "WORLD_SIZE" not in os.environ and "SLURM_PROCID" not in os.environ:
        return False  # the usual case, without importing torch
    from twins.train.dist import detect_env

    try:
        return detect_env().world_size > 1
    except ValueError:
        return False


def _exit_now(rc: int) -> None:
    """Flush and leave without interpreter finalisation.

    At finalisation, torch's gloo threads can still drop the last reference to a Python-owned
    tensor; taking the GIL then ends the thread with ``pthread_exit``, whose unwinding through
    torch's ``noexcept`` frames aborts the rank ("terminate called without an active
    exception", SIGABRT; 2-6 runs in 10 of a 2-rank job on torch 2.13 / Python 3.11). Every
    result is written and every MLflow run ended before this point.
    """
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
