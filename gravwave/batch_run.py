"""One batch-cleaning run from Python: :func:`clean_batch` (what ``twins gravwave clean`` runs)
and its summary.

Example:
    >>> s = clean_batch([Path("frames")], Path("cascade.pt"), Path("cleaned"))  # doctest: +SKIP
    >>> print(format_summary(s))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from gravwave.batch import (
    BatchSettings,
    OutputFormat,
    Progress,
    SegmentOutcome,
    check_channels,
    cleaner_from_bytes,
    find_segments,
    plan,
    run_serial,
)
from gravwave.policy import TwinPolicy
from twins.errors import ConfigError, DataError

__all__ = ["DEFAULT_PATTERNS", "BatchSummary", "clean_batch", "format_summary"]

log = logging.getLogger(__name__)

#: Files of an input directory taken as segments.
DEFAULT_PATTERNS = ("*.gwf", "*.h5", "*.hdf5")
Backend = Literal["auto", "serial", "ray"]


class BatchSummary(BaseModel):
    """A batch-cleaning run.

    Attributes:
        cleaner: The cleaner file.
        cleaner_kind: Its class.
        out: The output directory.
        channels: Channels read, strain first.
        backend: ``"serial"`` (this process) or ``"ray"``.
        workers: Workers (Ray actors, one CPU each; 1 when serial).
        segments: One outcome per segment, in GPS order.
        startup_s: Starting Ray and its workers [s] (0 when serial).
        clean_s: Cleaning, from the first segment to the last [s].
        total_s: The whole run [s].
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cleaner: str
    cleaner_kind: str
    out: str
    channels: tuple[str, ...]
    backend: Literal["serial", "ray"]
    workers: int
    segments: list[SegmentOutcome]
    startup_s: float
    clean_s: float
    total_s: float

    def count(self, status: str) -> int:
        """Segments with this status."""
        return sum(s.status == status for s in self.segments)

    @property
    def failed(self) -> list[SegmentOutcome]:
        """The segments that failed."""
        return [s for s in self.segments if s.status == "failed"]

    @property
    def cleaned_seconds(self) -> float:
        """Seconds of data cleaned in this run [s] (skipped segments not counted)."""
        return sum(s.duration for s in self.segments if s.status == "cleaned")

    @property
    def exit_code(self) -> int:
        """0 when no segment failed; 3 when every failure is a refused segment (bad data);
        1 when any failed unexpectedly."""
        if not self.failed:
            return 0
        if any(s.error_kind == "unexpected" for s in self.failed):
            return 1
        return DataError.exit_code


def clean_batch(
    inputs: Sequence[Path],
    cleaner: Path,
    out: Path,
    *,
    channels: Sequence[str] | None = None,
    channels_source: str = "--channels",
    patterns: Sequence[str] = DEFAULT_PATTERNS,
    output_format: OutputFormat | None = None,
    policy: TwinPolicy | None = None,
    workers: int = 1,
    address: str | None = None,
    backend: Backend = "auto",
    progress: Progress | None = None,
) -> BatchSummary:
    """Clean every segment file of ``inputs`` with the cleaner in ``cleaner`` into ``out``.

    Finished segments (a matching record and output in ``out``) are skipped; a segment that
    fails is reported in the summary and does not stop the others.

    Args:
        inputs: Segment files and directories of them (GWF, multi-channel HDF5).
        cleaner: A saved cleaner (:meth:`gravwave.cleaners.Cleaner.save`).
        out: Output directory (created).
        channels: Channels to read, strain first; must be the cleaner's (default: those).
        channels_source: Where ``channels`` came from, for messages.
        patterns: Files of an input directory taken as segments.
        output_format: ``"hdf5"`` or ``"gwf"``; default the policy's ``output_format``.
        policy: Quality settings and ingest gates; default :class:`TwinPolicy` ``()``.
        workers: Parallel workers (Ray actors with one CPU each).
        address: Ray cluster to join (default ``$RAY_ADDRESS`` when on Ray).
        backend: ``"serial"`` (this process), ``"ray"``, or ``"auto"``: Ray when ``workers``
            is above 1 or ``address`` is given.
        progress: Called as each segment finishes.

    Returns:
        The summary; ``summary.exit_code`` is what the command exits with.

    Raises:
        ConfigError: Bad ``workers``, channels other than the cleaner's, an input that does not
            exist or holds no segment file, clashing outputs, ``out`` among the inputs or not
            creatable; nothing is written.
        DataError: The cleaner file is missing or unreadable; nothing is written.
        TwinsError: Ray cannot be started or joined.
    """
    tic = time.perf_counter()
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if not cleaner.is_file():
        raise DataError(f"cleaner file {cleaner} not found", "give a saved cleaner (.pt)")
    data = cleaner.read_bytes()
    model = cleaner_from_bytes(data, cleaner.name)
    chans = check_channels(model, channels, channels_source)
    pol = policy or TwinPolicy()
    fmt: OutputFormat = output_format or pol.output_format
    jobs = plan(find_segments(list(inputs), patterns), out, fmt)
    settings = BatchSettings(
        cleaner_name=cleaner.name,
        cleaner_sha256=hashlib.sha256(data).hexdigest(),
        channels=tuple(chans),
        output_format=fmt,
        policy=pol,
    )
    use_ray = backend == "ray" or (backend == "auto" and (workers > 1 or bool(address)))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output directory {out}: {exc.strerror}") from None
    log.info(
        "cleaning %d segment(s) into %s with %s (%s), %s",
        len(jobs),
        out,
        cleaner.name,
        type(model).__name__,
        f"{workers} Ray worker(s)" if use_ray else "serially in this process",
    )
    if use_ray:
        from gravwave.batch_ray import run_ray  # Ray loads only for a parallel run

        run = run_ray(jobs, settings, data, workers, address, progress)
        outcomes, startup, clean_s = run.outcomes, run.startup_s, run.clean_s
    else:
        t0 = time.perf_counter()
        outcomes, startup = run_serial(jobs, settings, data, progress), 0.0
        clean_s = time.perf_counter() - t0
    return BatchSummary(
        cleaner=str(cleaner),
        cleaner_kind=type(model).__name__,
        out=str(out),
        channels=tuple(chans),
        backend="ray" if use_ray else "serial",
        workers=workers if use_ray else 1,
        segments=outcomes,
        startup_s=startup,
        clean_s=clean_s,
        total_s=time.perf_counter() - tic,
    )


def _gps(t: float) -> str:
    return f"{t:.3f}".rstrip("0").rstrip(".")


def _row(s: SegmentOutcome) -> str:
    name = Path(s.source).name
    if s.status == "failed":
        return f"  {name}  FAILED  {s.error}"
    q = s.quality
    assert q is not None and s.gps_start is not None and s.gps_end is not None
    ratios = ", ".join(f"{b} Hz {v:.3f}" for b, v in q.asd_ratio.items())
    return (
        f"  {name}  {s.status}  GPS {_gps(s.gps_start)}-{_gps(s.gps_end)}  in-band {ratios}  "
        f"out-of-band {q.out_of_band_ratio:.4f}  range {q.range_raw_mpc:.2f} -> "
        f"{q.range_cleaned_mpc:.2f} Mpc  {s.glitches} glitch flag(s)"
    )


def format_summary(s: BatchSummary) -> str:
    """The summary as text: one line per segment, then the totals."""
    how = f"{s.workers} Ray worker(s)" if s.backend == "ray" else "1 worker (serial)"
    lines = [f"cleaned with {Path(s.cleaner).name} ({s.cleaner_kind}) into {s.out}, {how}:"]
    lines += [_row(seg) for seg in s.segments]
    data_s = s.cleaned_seconds
    speed = f" ({data_s / s.clean_s:.0f}x real time)" if data_s and s.clean_s > 0 else ""
    lines.append(
        f"cleaned {s.count('cleaned')}, skipped {s.count('skipped')} (finished before), failed "
        f"{s.count('failed')} of {len(s.segments)} segment(s): {data_s:g} s of data in "
        f"{s.clean_s:.1f} s{speed}; {s.total_s:.1f} s in all"
    )
    if s.failed:
        lines.append("failed: " + ", ".join(Path(f.source).name for f in s.failed))
    return "\n".join(lines)
