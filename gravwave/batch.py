"""Batch cleaning of a long stretch: every GWF / HDF5 segment file of a directory through one
fitted cleaner, each segment on its own, resumable.

Each segment file is read (:func:`gravwave.io.read_gwf`,
:func:`gravwave.io.read_multichannel_hdf5`), checked and resampled to the cleaner's rate
(:func:`gravwave.io.prepare` with the policy's ingest gates), cleaned
(:meth:`gravwave.cleaners.Cleaner.clean`), measured (:func:`gravwave.quality.quality_of`,
:func:`gravwave.quality.glitch_flags`) and written as two files in the output directory:

* the cleaned strain, channel ``<strain>_CLEANED`` (multi-channel HDF5, or GWF): for an input
  named as LIGO/Virgo frames are, ``H-H1_STRAIN-1126259446-32.gwf``, the output is
  ``H-H1_STRAIN_CLEANED-1126259446-32.h5``; otherwise ``<stem>_CLEANED.h5``;
* its record ``<output stem>.quality.json`` (:class:`CleanedSegment`): the SHA-256 of the
  input, the cleaner and the output, the GPS span, the quality and the glitch flags.

Both are written through :func:`twins.atomic.atomic_write`, the record last: a segment is
*finished* when its record is there, names the same input, cleaner and policy, and the output
file it names has the SHA-256 it records. A rerun skips finished segments and redoes the rest
(after removing their stale outputs and temporaries), so a run killed at any instant leaves
nothing that looks finished and is resumed by running the same command again.

A segment that cannot be cleaned (an unreadable file, a missing channel, a gate refusal, a span
too short) is reported by name with the one-line reason and does not stop the others.

The output depends on the cleaner and the segment only: every worker runs torch with one
intra-op thread (:func:`pin_threads`), so a segment cleaned alone, in a serial run or by any
Ray worker gives the same samples, and for HDF5 the same bytes (a GWF file also holds the time
it was written, in the frame history that FrameL adds).

Segments are cleaned independently: the cleaner's edge effects at each file's boundaries are
those of cleaning that file alone.
"""

from __future__ import annotations

import io
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from gwpy.timeseries import TimeSeries, TimeSeriesDict
from pydantic import BaseModel, ConfigDict

from gravwave.cleaners import Cleaner, cleaner_from_state
from gravwave.io import prepare, read_gwf, read_multichannel_hdf5, write_multichannel_hdf5
from gravwave.policy import TwinPolicy, policy_hash
from gravwave.quality import GlitchFlag, Quality, glitch_flags, quality_of
from twins.atomic import atomic_write, json_dumps, sha256_file
from twins.errors import ConfigError, DataError, TwinsError

__all__ = [
    "CLEANED_SUFFIX",
    "GWF_SUFFIXES",
    "HDF5_SUFFIXES",
    "RECORD_SUFFIX",
    "BatchSettings",
    "CleanedSegment",
    "OutputFormat",
    "Progress",
    "SegmentJob",
    "SegmentOutcome",
    "SegmentWorker",
    "check_channels",
    "cleaner_from_bytes",
    "find_segments",
    "pin_threads",
    "plan",
    "run_serial",
]

log = logging.getLogger(__name__)

#: Suffix of the cleaned strain channel and of the output file's tag.
CLEANED_SUFFIX = "_CLEANED"
#: Suffix of a segment's record.
RECORD_SUFFIX = ".quality.json"
GWF_SUFFIXES = (".gwf",)
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
#: ``OBSERVATORY-TAG-GPSSTART-DURATION`` (LIGO-T010150): the frame file naming convention.
FRAME_NAME = re.compile(
    r"^(?P<obs>[A-Za-z0-9]+)-(?P<tag>[^-]+)-(?P<gps>\d+(?:\.\d+)?)-(?P<dur>\d+(?:\.\d+)?)$"
)
OutputFormat = Literal["hdf5", "gwf"]
Status = Literal["cleaned", "skipped", "failed"]


# -- what is cleaned, where it goes -----------------------------------------------------------


def pin_threads() -> int:
    """Run torch with one intra-op thread (what each worker does); returns the previous count.

    One thread per worker lets N workers use N cores without oversubscription, and makes the
    network's floating-point sums independent of the worker (same samples everywhere).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    return before


def cleaner_from_bytes(data: bytes, source: str) -> Cleaner:
    """A cleaner from the bytes of its file (what :meth:`Cleaner.save` wrote).

    Raises:
        DataError: Not a cleaner file, or an unknown kind.
    """
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same user error
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cleaner file {source} cannot be read: {first}") from None
    return cleaner_from_state(state, f"cleaner file {source}")


def check_channels(cleaner: Cleaner, channels: Sequence[str] | None, source: str) -> list[str]:
    """The channels to read: the cleaner's, strain first; ``channels`` if given must name them.

    Args:
        cleaner: The fitted cleaner.
        channels: The user's channel list (strain first), or None.
        source: Where the list came from, for messages.

    Returns:
        ``[strain, *witnesses]`` in the cleaner's order.

    Raises:
        ConfigError: The list's first channel is not the cleaner's strain, or the list and the
            cleaner's channels differ (both differences named).
    """
    wanted = [cleaner.strain_channel, *cleaner.witness_channels]
    if channels is None:
        return wanted
    given = list(channels)
    if not given or given[0] != cleaner.strain_channel:
        first = given[0] if given else "nothing"
        raise ConfigError(
            f"{source}: the first channel is {first}; the cleaner cleans {cleaner.strain_channel}",
            "put the strain channel first, or use the cleaner fitted for these channels",
        )
    missing = [c for c in wanted if c not in given]
    extra = [c for c in given if c not in wanted]
    if missing or extra:
        raise ConfigError(
            f"{source}: channels differ from the cleaner's: missing {', '.join(missing) or '-'}; "
            f"not used by the cleaner {', '.join(extra) or '-'}",
            "list exactly the cleaner's channels, or leave --channels out to read them",
        )
    return wanted


def _sort_key(path: Path) -> tuple[int, float, str]:
    m = FRAME_NAME.match(path.stem)
    return (0, float(m["gps"]), path.name) if m else (1, 0.0, path.name)


def find_segments(inputs: Sequence[Path], patterns: Sequence[str]) -> list[Path]:
    """The segment files of ``inputs``: directories contribute their files matching
    ``patterns`` (not recursively), files themselves; in GPS order of the frame file names
    (others after, by name), each once.

    Raises:
        ConfigError: An input that does not exist, or no segment file found.
    """
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found += [p for pat in patterns for p in item.glob(pat) if p.is_file()]
        elif item.exists():
            found.append(item)
        else:
            raise ConfigError(f"input {item} does not exist", "give segment files or directories")
    unique = sorted({p.resolve(): p for p in found}.values(), key=_sort_key)
    if not unique:
        where = ", ".join(str(i) for i in inputs)
        raise ConfigError(
            f"no segment files in {where} (patterns {', '.join(patterns)})",
            "check the directory, or pass --pattern",
        )
    return unique


def output_stem(source: Path) -> str:
    """``H-H1_STRAIN_CLEANED-1126259446-32`` for ``H-H1_STRAIN-1126259446-32.gwf``;
    ``<stem>_CLEANED`` for a name outside the frame naming convention."""
    m = FRAME_NAME.match(source.stem)
    if m is None:
        return f"{source.stem}{CLEANED_SUFFIX}"
    return f"{m['obs']}-{m['tag']}{CLEANED_SUFFIX}-{m['gps']}-{m['dur']}"


@dataclass(frozen=True)
class SegmentJob:
    """One segment to clean.

    Attributes:
        source: The input file.
        output: The cleaned strain file.
        record: Its record (:class:`CleanedSegment` as JSON).
    """

    source: Path
    output: Path
    record: Path


def plan(sources: Sequence[Path], out: Path, output_format: OutputFormat) -> list[SegmentJob]:
    """The job of every segment file: its output and record paths in ``out``.

    Raises:
        ConfigError: ``out`` is one of the input directories, or two inputs would write the same
            output (both named).
    """
    out_resolved = out.resolve()
    if any(s.resolve().parent == out_resolved for s in sources):
        raise ConfigError(
            f"output directory {out} holds input segments; its cleaned files would be read as "
            "input by the next run",
            "write to another directory (--out)",
        )
    ext = ".gwf" if output_format == "gwf" else ".h5"
    jobs: list[SegmentJob] = []
    taken: dict[str, Path] = {}
    for src in sources:
        stem = output_stem(src)
        if stem in taken:
            raise ConfigError(
                f"{taken[stem]} and {src} would both be written as {stem}{ext}",
                "clean them into different output directories",
            )
        taken[stem] = src
        jobs.append(SegmentJob(src, out / f"{stem}{ext}", out / f"{stem}{RECORD_SUFFIX}"))
    return jobs


# -- the record and the outcome ---------------------------------------------------------------


class BatchSettings(BaseModel):
    """What every worker needs besides the cleaner.

    Attributes:
        cleaner_name: The cleaner file's name (recorded).
        cleaner_sha256: SHA-256 of the cleaner file.
        channels: Channels read from each file, strain first (the cleaner's).
        output_format: ``"hdf5"`` or ``"gwf"``.
        policy: Quality settings (FFT lengths, glitch search), the shortest segment and the
            ingest gates, as the noise twin uses them (:class:`gravwave.policy.TwinPolicy`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    cleaner_name: str
    cleaner_sha256: str
    channels: tuple[str, ...]
    output_format: OutputFormat = "hdf5"
    policy: TwinPolicy = TwinPolicy()

    @property
    def policy_hash(self) -> str:
        """Hash of the policy (recorded: another policy means another quality)."""
        return policy_hash(self.policy)


class CleanedSegment(BaseModel):
    """The record of one cleaned segment, written beside its output as
    ``<output stem>.quality.json``.

    Attributes:
        source: Input file name.
        source_sha256: SHA-256 of the input file.
        cleaner: Cleaner file name.
        cleaner_sha256: SHA-256 of the cleaner file.
        policy_hash: Hash of the quality policy.
        output: Output file name (same directory).
        output_sha256: SHA-256 of the output file.
        output_format: ``"hdf5"`` or ``"gwf"``.
        channels: Channels read, strain first.
        cleaned_channel: Channel of the cleaned strain in the output.
        sample_rate: Rate of the output [Hz] (the cleaner's).
        gps_start: GPS start [s].
        gps_end: GPS end [s] (exclusive).
        quality: In-band and out-of-band ASD ratios and BNS range raw and cleaned.
        glitches: Glitch flags of the cleaned strain.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    source_sha256: str
    cleaner: str
    cleaner_sha256: str
    policy_hash: str
    output: str
    output_sha256: str
    output_format: OutputFormat
    channels: tuple[str, ...]
    cleaned_channel: str
    sample_rate: float
    gps_start: float
    gps_end: float
    quality: Quality
    glitches: tuple[GlitchFlag, ...]


class SegmentOutcome(BaseModel):
    """What became of one segment in a run.

    Attributes:
        source: The input path as given.
        status: ``"cleaned"``, ``"skipped"`` (finished by an earlier run) or ``"failed"``.
        output: The cleaned file (cleaned or skipped).
        gps_start: GPS start [s] (cleaned or skipped).
        gps_end: GPS end [s].
        quality: The quality (cleaned or skipped).
        glitches: Number of glitch flags.
        error: Why it failed: one line naming the file.
        error_kind: ``"data"`` (the segment is refused), ``"config"`` or ``"unexpected"``.
        seconds: Wall time spent on it [s].
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    status: Status
    output: str | None = None
    gps_start: float | None = None
    gps_end: float | None = None
    quality: Quality | None = None
    glitches: int = 0
    error: str | None = None
    error_kind: Literal["data", "config", "unexpected"] | None = None
    seconds: float = 0.0

    @property
    def duration(self) -> float:
        """Seconds of data [s] (0 when failed)."""
        if self.gps_start is None or self.gps_end is None:
            return 0.0
        return self.gps_end - self.gps_start


def _finished(job: SegmentJob, settings: BatchSettings, source_sha: str) -> CleanedSegment | None:
    """The segment's record if it is finished for this input, cleaner and policy, else None
    (the reason is logged)."""
    if not job.record.is_file():
        return None
    why = ""
    try:
        rec = CleanedSegment.model_validate_json(job.record.read_bytes())
    except ValueError:
        why = "its record is unreadable"
    else:
        if rec.source_sha256 != source_sha:
            why = "the input changed"
        elif rec.cleaner_sha256 != settings.cleaner_sha256:
            why = "another cleaner"
        elif rec.policy_hash != settings.policy_hash or rec.output != job.output.name:
            why = "another policy or output format"
        elif not job.output.is_file() or sha256_file(job.output) != rec.output_sha256:
            why = "its output is missing or incomplete"
        else:
            return rec
    log.info("%s: redone (%s)", job.source.name, why)
    return None


def _remove_stale(job: SegmentJob) -> None:
    """Remove a segment's old record, output and temporaries (the record first)."""
    for path in (job.record, job.output):
        path.unlink(missing_ok=True)
        for tmp in path.parent.glob(f".{path.name}.tmp-*"):
            tmp.unlink(missing_ok=True)


def _read(path: Path, channels: Sequence[str]) -> TimeSeriesDict:
    suffix = path.suffix.lower()
    if suffix in GWF_SUFFIXES:
        return read_gwf(path, channels)
    if suffix in HDF5_SUFFIXES:
        return read_multichannel_hdf5(path, channels)
    raise DataError(
        f"{path.name}: unknown segment file type {suffix or '(none)'}; expected .gwf, .h5 or .hdf5"
    )


def _write(path: Path, cleaned: TimeSeries, output_format: OutputFormat) -> None:
    if output_format == "gwf":
        atomic_write(path, lambda tmp: cleaned.write(str(tmp), format="gwf"))
    else:
        write_multichannel_hdf5(path, TimeSeriesDict({cleaned.name: cleaned}))


class SegmentWorker:
    """Cleans segment files with one cleaner; one per worker process (a Ray actor or the
    serial loop), torch pinned to one thread.

    Args:
        settings: What every worker shares.
        cleaner_data: The bytes of the cleaner file.
    """

    def __init__(self, settings: BatchSettings, cleaner_data: bytes) -> None:
        pin_threads()
        self.settings = settings
        self.cleaner = cleaner_from_bytes(cleaner_data, settings.cleaner_name)

    def ready(self) -> bool:
        """True once the worker has started (imports done, cleaner loaded)."""
        return True

    def clean(self, job: SegmentJob) -> SegmentOutcome:
        """Clean one segment, or skip it if finished; never raises for a bad segment."""
        tic = time.perf_counter()
        try:
            outcome = self._clean(job)
        except TwinsError as exc:
            kind: Literal["data", "config"] = "config" if isinstance(exc, ConfigError) else "data"
            outcome = _failed(job, _one_line(str(exc), job), kind)
        except Exception as exc:  # noqa: BLE001 - one bad segment must not stop the others
            text = f"unexpected {type(exc).__name__}: {str(exc).strip()}"
            outcome = _failed(job, _one_line(text, job), "unexpected")
            log.exception("%s: unexpected failure", job.source)
        return outcome.model_copy(update={"seconds": time.perf_counter() - tic})

    def _clean(self, job: SegmentJob) -> SegmentOutcome:
        s = self.settings
        if not job.source.is_file():
            raise DataError(f"{job.source.name}: file not found")
        source_sha = sha256_file(job.source)
        done = _finished(job, s, source_sha)
        if done is not None:
            return _outcome(job, "skipped", done)
        _remove_stale(job)
        cleaner, p = self.cleaner, s.policy
        data = prepare(
            _read(job.source, s.channels),
            list(s.channels),
            sample_rate=cleaner.sample_rate,
            min_duration=p.min_segment_seconds,
            source=job.source.name,
            bounds=p.ingest,
        )
        raw = data[cleaner.strain_channel]
        cleaned = cleaner.clean(raw, data, name=f"{cleaner.strain_channel}{CLEANED_SUFFIX}")
        quality = quality_of(cleaned, raw, cleaner.bands, p.fftlength, p.range_fftlength)
        fs, t0 = float(raw.sample_rate.value), float(raw.t0.value)
        flags = glitch_flags(
            cleaned.value, fs, t0, band=p.glitch_band, threshold=p.glitch_threshold
        )
        job.output.parent.mkdir(parents=True, exist_ok=True)
        _write(job.output, cleaned, s.output_format)
        record = CleanedSegment(
            source=job.source.name,
            source_sha256=source_sha,
            cleaner=s.cleaner_name,
            cleaner_sha256=s.cleaner_sha256,
            policy_hash=s.policy_hash,
            output=job.output.name,
            output_sha256=sha256_file(job.output),
            output_format=s.output_format,
            channels=s.channels,
            cleaned_channel=str(cleaned.name),
            sample_rate=fs,
            gps_start=t0,
            gps_end=t0 + len(raw) / fs,
            quality=quality,
            glitches=tuple(flags),
        )
        atomic_write(job.record, json_dumps(record.model_dump(mode="json")))
        return _outcome(job, "cleaned", record)


def _one_line(text: str, job: SegmentJob) -> str:
    line = " ".join(text.split())
    return line if job.source.name in line else f"{job.source.name}: {line}"


def _failed(
    job: SegmentJob, error: str, kind: Literal["data", "config", "unexpected"]
) -> SegmentOutcome:
    return SegmentOutcome(source=str(job.source), status="failed", error=error, error_kind=kind)


def _outcome(job: SegmentJob, status: Status, rec: CleanedSegment) -> SegmentOutcome:
    return SegmentOutcome(
        source=str(job.source),
        status=status,
        output=str(job.output),
        gps_start=rec.gps_start,
        gps_end=rec.gps_end,
        quality=rec.quality,
        glitches=len(rec.glitches),
    )


#: ``progress(outcome, done, total)``: called as each segment finishes.
Progress = Callable[[SegmentOutcome, int, int], None]


def run_serial(
    jobs: Iterable[SegmentJob],
    settings: BatchSettings,
    cleaner_data: bytes,
    progress: Progress | None = None,
) -> list[SegmentOutcome]:
    """Clean the segments one after another in this process (torch at one thread meanwhile).

    Returns:
        One outcome per job, in order.
    """
    jobs = list(jobs)
    before = torch.get_num_threads()
    try:
        worker = SegmentWorker(settings, cleaner_data)
        outcomes: list[SegmentOutcome] = []
        for job in jobs:
            outcomes.append(worker.clean(job))
            if progress is not None:
                progress(outcomes[-1], len(outcomes), len(jobs))
    finally:
        torch.set_num_threads(before)
    return outcomes
