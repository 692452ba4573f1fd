"""``twins gravwave clean INPUT... --cleaner FILE --out DIR``: batch cleaning of a stretch.

Segment files (GWF frames, multi-channel HDF5) or directories of them are cleaned with a saved
cleaner, each into a cleaned file and its quality record in ``--out``
(:mod:`gravwave.batch`), serially or on Ray (``--workers N``, ``--address``). Running the same
command again skips finished segments. The summary is printed at the end (``--json``: as
JSON; ``--summary FILE``: also written there). Exit code 0 when every segment is cleaned or
was finished before, 3 when a segment is refused (bad data, named in the summary), 1 when one
failed unexpectedly.

A Slurm array job runs the command once per segment:
``twins launch slurm CONFIG --kind array --inputs LIST --command "gravwave clean --cleaner
FILE --out DIR"``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from gravwave.batch import SegmentOutcome
from gravwave.batch_run import DEFAULT_PATTERNS, clean_batch, format_summary
from gravwave.io import read_channel_list
from gravwave.policy import load_policy
from twins.atomic import json_dumps, write_json_atomic
from twins.errors import ConfigError

__all__ = ["configure", "run"]

log = logging.getLogger(__name__)


def configure(p: argparse.ArgumentParser) -> None:
    """Add the arguments of ``twins gravwave clean``."""
    p.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="segment files or directories"
    )
    p.add_argument(
        "--cleaner", required=True, type=Path, metavar="FILE", help="saved cleaner (.pt)"
    )
    p.add_argument(
        "--out", required=True, type=Path, metavar="DIR", help="output directory (created)"
    )
    p.add_argument(
        "--channels",
        metavar="LIST",
        help="channel list file (strain first) or A,B,...; must be the cleaner's channels "
        "(default: read the cleaner's)",
    )
    p.add_argument(
        "--pattern",
        action="append",
        dest="patterns",
        metavar="GLOB",
        help=f"segment files of a directory (repeatable; default {' '.join(DEFAULT_PATTERNS)})",
    )
    p.add_argument(
        "--format", choices=["hdf5", "gwf"], help="output format (default: the policy's, hdf5)"
    )
    p.add_argument(
        "--policy",
        metavar="JSON",
        help="quality settings and ingest gates as JSON text or a JSON file "
        '(gravwave.policy.TwinPolicy), e.g. \'{"ingest": {"max_robust_sigma": 20}}\'',
    )
    p.add_argument(
        "--workers", type=int, default=1, metavar="N", help="parallel Ray workers (default 1)"
    )
    p.add_argument(
        "--address",
        metavar="HOST:PORT",
        help="existing Ray cluster (default: $RAY_ADDRESS, else local)",
    )
    p.add_argument(
        "--backend",
        choices=["auto", "serial", "ray"],
        default="auto",
        help="auto (default): Ray when --workers > 1 or --address is given",
    )
    p.add_argument(
        "--summary", type=Path, metavar="FILE", help="also write the summary as JSON to this file"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _channels(text: str | None) -> tuple[list[str] | None, str]:
    if text is None:
        return None, "--channels"
    path = Path(text)
    if path.is_file():
        return read_channel_list(path), path.name
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise ConfigError(f"--channels {text!r}: no channel names", "give A,B,... or a file")
    return names, "--channels"


def _policy(text: str | None) -> object:
    if text is None:
        return None
    source = text
    if not text.lstrip().startswith("{"):
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"--policy {text}: neither JSON text nor an existing file")
        source = path.read_text(encoding="utf-8")
    try:
        data = json.loads(source)
    except ValueError as exc:
        raise ConfigError(f"--policy: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--policy: expected a JSON object, got {type(data).__name__}")
    return load_policy(data)


def _progress(outcome: SegmentOutcome, done: int, total: int) -> None:
    name = Path(outcome.source).name
    if outcome.status == "failed":
        log.error("[%d/%d] %s failed: %s", done, total, name, outcome.error)
    else:
        log.info("[%d/%d] %s %s (%.1f s)", done, total, name, outcome.status, outcome.seconds)


def run(args: argparse.Namespace) -> int:
    """Run ``twins gravwave clean``; returns the exit code (see the module docstring)."""
    channels, source = _channels(args.channels)
    summary = clean_batch(
        args.inputs,
        args.cleaner,
        args.out,
        channels=channels,
        channels_source=source,
        patterns=args.patterns or DEFAULT_PATTERNS,
        output_format=args.format,
        policy=_policy(args.policy),  # type: ignore[arg-type]
        workers=args.workers,
        address=args.address,
        backend=args.backend,
        progress=_progress,
    )
    doc = summary.model_dump(mode="json")
    if args.summary is not None:
        args.summary.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(args.summary, doc)
    sys.stdout.write(json_dumps(doc) if args.json else format_summary(summary) + "\n")
    failed = summary.failed
    if failed:
        print(
            f"twins: error: {len(failed)} of {len(summary.segments)} segment(s) failed: "
            + "; ".join(f.error or f.source for f in failed[:3])
            + (f"; ... ({len(failed)} in all)" if len(failed) > 3 else ""),
            file=sys.stderr,
        )
    return summary.exit_code
