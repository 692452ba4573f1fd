"""Ingest of gravitational-wave data through gwpy: GWF, GWOSC HDF5, multi-channel HDF5, ASD.

Every reader returns gwpy objects (:class:`~gwpy.timeseries.TimeSeries`,
:class:`~gwpy.timeseries.TimeSeriesDict`, :class:`~gwpy.frequencyseries.FrequencySeries`)
and raises :class:`twins.errors.DataError` with a one-line message naming the file and the
channel when the input is unusable; any exception of h5py, gwpy or lalframe while reading is
wrapped into one (:func:`gravwave.io_common.foreign_errors`), and frame checksums are verified
before lalframe reads a GWF file. Nothing partial is returned on failure. :func:`prepare`
applies the plausibility gates of :mod:`gravwave.gates` (finite, no dead channel, every
sample within :class:`~gravwave.gates.IngestBounds`).

The multi-channel HDF5 and GWOSC layouts live in :mod:`gravwave.io_hdf5` and
:mod:`gravwave.io_gwosc` and are importable from here.

Times are GPS seconds, sample rates Hz, durations s. Requested spans are half-open,
``[start, end)``.

Typical use::

    channels = read_channel_list("channels.txt")            # strain first
    raw = read_gwf(["V-A-1000000000-64.gwf", "V-A-1000000064-64.gwf"], channels)
    data = prepare(raw, channels, sample_rate=4096.0, min_duration=8.0,
                   source="V-A-*.gwf")                       # resampled, checked
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path
from typing import Literal

import numpy as np
from gwpy.frequencyseries import FrequencySeries
from gwpy.timeseries import TimeSeries, TimeSeriesDict

from gravwave.gates import IngestBounds, check_segment
from gravwave.io_common import (
    TOL_SAMPLES,
    PathLike,
    check_request,
    foreign_errors,
    listing,
    rate,
    read_utf8,
    require_file,
    span,
)
from gravwave.io_gwosc import (
    DEFAULT_DQ_FLAGS,
    GWOSC_DQ_DESCRIPTIONS,
    GWOSC_DQ_SHORTNAMES,
    read_gwosc_hdf5,
    write_gwosc_hdf5,
)
from gravwave.io_hdf5 import read_multichannel_hdf5, write_multichannel_hdf5
from twins.errors import DataError

__all__ = [
    "DEFAULT_DQ_FLAGS",
    "DEFAULT_WINDOW",
    "GWOSC_DQ_DESCRIPTIONS",
    "GWOSC_DQ_SHORTNAMES",
    "PSD_AUTO_THRESHOLD",
    "WORKING_RATE",
    "IngestBounds",
    "concatenate",
    "prepare",
    "read_asd",
    "read_channel_list",
    "read_gwf",
    "read_gwosc_hdf5",
    "read_multichannel_hdf5",
    "write_gwosc_hdf5",
    "write_multichannel_hdf5",
]

log = logging.getLogger(__name__)

#: Working sample rate of the noise twin [Hz].
WORKING_RATE = 4096.0
#: Length of one training window [s]; the default shortest usable span.
DEFAULT_WINDOW = 8.0
#: Foreign exceptions of a GWF read are wrapped with this hint.
_GWF_HINT = "the frame file is truncated, corrupt or not a GWF file"


# -- channel lists ---------------------------------------------------------------------------


def read_channel_list(path: PathLike) -> list[str]:
    """Read a channel list: one channel per line, the strain channel first.

    ``#`` starts a comment (whole line or trailing); blank lines are ignored.

    Args:
        path: Text file.

    Returns:
        Channel names in file order; element 0 is the strain (target) channel.

    Raises:
        DataError: File missing, not UTF-8 text, empty, a line with more than one token, or
            a duplicate.
    """
    p = require_file(path)
    text = read_utf8(p, "a text file of channel names")
    channels: list[str] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line.split()) != 1:
            raise DataError(f"{p.name}:{lineno}: expected one channel per line, got {line!r}")
        if line in seen:
            raise DataError(
                f"{p.name}:{lineno}: channel {line} duplicated (first on line {seen[line]})"
            )
        seen[line] = lineno
        channels.append(line)
    if not channels:
        raise DataError(f"{p.name}: no channels listed", hint="put the strain channel first")
    log.debug("%s: %d channels, strain %s", p.name, len(channels), channels[0])
    return channels


# -- joining pieces in time ------------------------------------------------------------------


def _join(pieces: Sequence[TimeSeries], sources: Sequence[str], channel: str) -> TimeSeries:
    """Concatenate time-ordered pieces of one channel, rejecting rate changes, gaps, overlaps."""
    first = pieces[0]
    fs = rate(first)
    for i in range(1, len(pieces)):
        prev, cur = pieces[i - 1], pieces[i]
        if not math.isclose(rate(cur), fs, rel_tol=1e-9):
            raise DataError(
                f"{sources[i]}: channel {channel} sampled at {rate(cur):g} Hz, "
                f"but at {fs:g} Hz in {sources[0]}",
                hint="sample-rate mismatch between files",
            )
        prev_end = span(prev)[1]
        cur_start = span(cur)[0]
        delta = cur_start - prev_end
        if abs(delta) > TOL_SAMPLES / fs:
            kind = "gap" if delta > 0 else "overlap"
            raise DataError(
                f"{sources[i - 1]} -> {sources[i]}: channel {channel}: {kind} of "
                f"{abs(delta):.6g} s at GPS {min(prev_end, cur_start)}",
                hint="give contiguous, non-overlapping files/segments in time order",
            )
    if len(pieces) == 1:
        return first
    out = TimeSeries(
        np.concatenate([np.asarray(p.value) for p in pieces]),
        t0=first.t0,
        sample_rate=fs,
        unit=first.unit,
        name=channel,
        channel=channel,
    )
    return out


def concatenate(
    pieces: Sequence[TimeSeriesDict],
    channels: Sequence[str] | None = None,
    sources: Sequence[str] | None = None,
) -> TimeSeriesDict:
    """Join time-ordered segments channel by channel.

    Args:
        pieces: Dicts covering consecutive spans, earliest first.
        channels: Channels to keep; default the keys of ``pieces[0]``.
        sources: One label per piece (e.g. file name) used in error messages.

    Returns:
        One dict with each channel contiguous over the union span.

    Raises:
        DataError: Missing channel, sample-rate change, gap or overlap between pieces.
    """
    if not pieces:
        raise DataError("no data segments given")
    if sources is None:
        sources = [f"segment {i}" for i in range(len(pieces))]
    if len(sources) != len(pieces):
        raise ValueError("need one source label per piece")
    chans = list(pieces[0].keys()) if channels is None else list(channels)
    for piece, src in zip(pieces, sources, strict=True):
        for ch in chans:
            if ch not in piece:
                raise DataError(
                    f"{src}: channel {ch} not found; available: {listing(piece.keys())}"
                )
    out = TimeSeriesDict()
    for ch in chans:
        out[ch] = _join([p[ch] for p in pieces], sources, ch)
    return out


# -- GWF frames ------------------------------------------------------------------------------


def _check_gwf_checksum(path: Path) -> None:
    """Verify a frame file's checksums with lalframe before anything else reads it.

    lalframe's reader crashes the process (SIGSEGV) on a truncated frame file and reads a
    corrupt one silently; the checksum check refuses both. lalframe's own error text is
    captured (not printed) and quoted on the one line of the error.

    Raises:
        DataError: The checksum does not match or the file cannot be opened as a frame file.
    """
    import lal
    import lalframe

    captured = StringIO()
    previous = lal.swig_redirect_standard_output_error(True)
    try:
        with redirect_stderr(captured), redirect_stdout(captured):
            stream = lalframe.FrameUFrFileOpen(str(path), "r")
            valid = bool(lalframe.FrameUFileCksumValid(stream))
            del stream
    except Exception as exc:  # lalframe raises RuntimeError("Generic failure")
        detail = " ".join(captured.getvalue().split())[:200] or str(exc)
        raise DataError(
            f"{path.name}: not a readable GWF file: truncated or corrupt, the frame checksum "
            f"check failed ({detail})",
            hint=_GWF_HINT,
        ) from None
    finally:
        lal.swig_redirect_standard_output_error(previous)
    if not valid:
        raise DataError(
            f"{path.name}: not a readable GWF file: its checksum does not match its content",
            hint=_GWF_HINT,
        )


def _gwf_span(path: Path, channel: str) -> tuple[float, float]:
    from gwpy.io.gwf import data_segments

    # lalframe raises bare RuntimeError/ValueError
    with foreign_errors(path, "cannot read the GWF frame structure", _GWF_HINT):
        segs = data_segments([str(path)], channel, warn=False)
    if not segs:
        raise DataError(f"{path.name}: channel {channel} has no data in the file")
    return float(segs[0][0]), float(segs[-1][1])


def read_gwf(
    paths: PathLike | Sequence[PathLike],
    channels: str | Sequence[str],
    start: float | None = None,
    end: float | None = None,
) -> TimeSeriesDict:
    """Read channels from one or several GWF frame files with gwpy's LALFrame backend.

    Several files must be contiguous in time (any order is accepted; they are sorted by GPS
    start). Only files overlapping ``[start, end)`` are read. Channels keep their native
    rates; use :func:`prepare` to resample.

    Args:
        paths: One GWF file or a list of them.
        channels: Channel name(s), e.g. ``["V1:h_16384Hz"]``.
        start: First GPS time [s] to return; default the start of the data.
        end: GPS time [s] to stop at (exclusive); default the end of the data.

    Returns:
        Dict channel -> TimeSeries, in the order of ``channels``.

    Raises:
        DataError: File missing, unreadable, truncated or corrupt (the frame checksums are
            verified first), channel missing, gap/overlap between files,
            a sample-rate change between files, or a request outside the data.
    """
    from gwpy.io.gwf import get_channel_names

    file_list = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    chans = [channels] if isinstance(channels, str) else list(channels)
    if not file_list:
        raise DataError("no GWF files given")
    if not chans:
        raise DataError("no channels requested")
    files = [require_file(f) for f in file_list]
    spans: list[tuple[float, float, Path]] = []
    for f in files:
        _check_gwf_checksum(f)
        with foreign_errors(f, "not a readable GWF file", _GWF_HINT):
            available = [str(c) for c in get_channel_names(str(f))]
        have = set(available)
        for ch in chans:
            if ch not in have:
                raise DataError(
                    f"{f.name}: channel {ch} not found; available: {listing(available)}",
                    hint="check the channel list",
                )
        t0, t1 = _gwf_span(f, chans[0])
        spans.append((t0, t1, f))
    spans.sort(key=lambda s: s[0])
    for (_, e0, f0), (s1, _, f1) in zip(spans, spans[1:], strict=False):
        delta = s1 - e0
        if abs(delta) > 1e-6:
            kind = "gap" if delta > 0 else "overlap"
            raise DataError(
                f"{f0.name} -> {f1.name}: {kind} of {abs(delta):.6g} s at GPS {min(e0, s1)}",
                hint="give contiguous, non-overlapping frame files",
            )
    label = files[0].name if len(files) == 1 else f"{spans[0][2].name}..{spans[-1][2].name}"
    lo, hi = check_request(start, end, (spans[0][0], spans[-1][1]), label)
    pieces: list[TimeSeriesDict] = []
    sources: list[str] = []
    for t0, t1, f in spans:
        a, b = max(lo, t0), min(hi, t1)
        if b <= a:
            continue
        with foreign_errors(f, f"failed to read {listing(chans)}", _GWF_HINT):
            piece = TimeSeriesDict.read(str(f), chans, start=a, end=b, format="gwf")
        pieces.append(piece)
        sources.append(f.name)
    out = concatenate(pieces, chans, sources)
    for ch, ts in out.items():
        ts.name = ch
        log.debug("%s: %s %g Hz GPS [%s, %s)", label, ch, rate(ts), *span(ts))
    return out


# -- ASD / PSD text files --------------------------------------------------------------------

#: Below this median value a strain spectrum file is taken to hold a PSD [1/Hz] rather than
#: an ASD [1/sqrt(Hz)]: ground-based strain ASDs lie around 1e-24..1e-18, PSDs 1e-48..1e-36.
PSD_AUTO_THRESHOLD = 1e-30
#: Characters that start a comment in a spectrum text file (whole line or trailing).
_COMMENT = re.compile(r"[#%]")
#: Column separators of a spectrum text file: whitespace and/or one comma.
_SEPARATOR = re.compile(r"\s*,\s*|\s+")


def _spectrum_rows(p: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Parse a spectrum text file into frequency, value and line-number arrays.

    Returns:
        ``(freq, value, lineno, ncols)``: the first two columns as float64 arrays of shape
        ``(rows,)``, the 1-based line of each row, and the column count (2 or 3).

    Raises:
        DataError: Not UTF-8 text, a non-numeric row, a row with other than 2 or 3 columns,
            or a column count that changes between rows.
    """
    text = read_utf8(p, "a text file of frequency and ASD/PSD columns")
    freq: list[float] = []
    val: list[float] = []
    lines: list[int] = []
    ncols = 0
    first_line = 0
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.split(raw, 1)[0].strip()
        if not line:
            continue
        fields = _SEPARATOR.split(line)
        try:
            numbers = [float(x) for x in fields]
        except ValueError:
            shown = line if len(line) <= 60 else line[:57] + "..."
            raise DataError(
                f"{p.name}: cannot parse as numbers (line {lineno}: {shown!r})",
                hint="expected columns of numbers; comment lines start with # or %",
            ) from None
        if len(numbers) not in (2, 3):
            raise DataError(
                f"{p.name}:{lineno}: {len(numbers)} columns; expected two or three columns "
                "(frequency Hz, ASD or PSD[, ignored])"
            )
        if ncols and len(numbers) != ncols:
            raise DataError(
                f"{p.name}:{lineno}: {len(numbers)} columns, but {ncols} on line {first_line}; "
                "expected the same two or three columns on every row"
            )
        if not ncols:
            ncols, first_line = len(numbers), lineno
        freq.append(numbers[0])
        val.append(numbers[1])
        lines.append(lineno)
    return np.asarray(freq), np.asarray(val), np.asarray(lines), ncols


def read_asd(
    path: PathLike, kind: Literal["asd", "psd", "auto"] = "asd", *, psd: bool | None = None
) -> FrequencySeries:
    """Read a published sensitivity curve: frequency [Hz] and ASD [strain/sqrt(Hz)] or PSD.

    Files are taken as LVK/GWOSC release them: ``#`` and ``%`` start comments (whole lines or
    trailing), blank lines are skipped, columns are separated by whitespace or commas. A file
    has two or three columns on every row; a third column (e.g. a second curve or an
    uncertainty) is ignored and the log says so. A first row at exactly 0 Hz, common in LVK
    releases, is dropped (logged at INFO). ``kind="psd"`` (or ``psd=True``) declares the
    second column a PSD [strain^2/Hz], which is square-rooted. ``kind="auto"`` decides from
    the values: a median below :data:`PSD_AUTO_THRESHOLD` (1e-30) means PSD; this only holds
    for strain curves, not for witness-channel spectra.

    Args:
        path: Text file, e.g. ``data/gravwave/O3-V1_sensitivity_strain_asd.txt``.
        kind: ``"asd"``, ``"psd"`` or ``"auto"``.
        psd: Shortcut overriding ``kind``: ``True`` = ``"psd"``, ``False`` = ``"asd"``.

    Returns:
        ASD [1/sqrt(Hz)] of shape ``(rows,)`` on the file's (possibly irregular) frequencies,
        the 0-Hz row excluded; square it for a PSD.

    Raises:
        DataError: File missing, not text, a non-numeric row, other than two or three
            columns, fewer than 2 rows after the 0-Hz row, frequencies not positive, finite
            and strictly increasing (a duplicate included), or values not positive and
            finite. The message names the file and the line.
    """
    if psd is not None:
        kind = "psd" if psd else "asd"
    if kind not in ("asd", "psd", "auto"):
        raise ValueError(f"kind must be 'asd', 'psd' or 'auto', got {kind!r}")
    p = require_file(path)
    freq, val, lines, ncols = _spectrum_rows(p)
    dropped = ""
    if len(freq) and freq[0] == 0.0:
        log.info("%s: line %d: 0-Hz row dropped (value %g)", p.name, lines[0], val[0])
        freq, val, lines = freq[1:], val[1:], lines[1:]
        dropped = " after the 0-Hz row"
    if len(freq) < 2:
        raise DataError(
            f"{p.name}: {len(freq)} data rows{dropped}; expected at least 2 rows of frequency "
            "Hz and ASD/PSD"
        )
    bad_f = ~np.isfinite(freq) | (freq <= 0)
    if bad_f.any():
        i = int(np.argmax(bad_f))
        raise DataError(
            f"{p.name}:{lines[i]}: frequency {freq[i]:g} Hz; frequencies must be positive, "
            "finite and strictly increasing"
        )
    step = np.diff(freq)
    if np.any(step <= 0):
        i = int(np.argmax(step <= 0)) + 1
        what = "repeats" if step[i - 1] == 0 else "is below"
        raise DataError(
            f"{p.name}:{lines[i]}: frequency {freq[i]:g} Hz {what} {freq[i - 1]:g} Hz on line "
            f"{lines[i - 1]}; frequencies must be positive, finite and strictly increasing"
        )
    bad = ~np.isfinite(val) | (val <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{p.name}: {int(bad.sum())} non-positive or non-finite values, first at "
            f"{freq[i]:g} Hz on line {lines[i]} ({val[i]:g}); expected positive finite values"
        )
    if kind == "auto":
        kind = "psd" if float(np.median(val)) < PSD_AUTO_THRESHOLD else "asd"
        log.info("%s: detected %s", p.name, kind.upper())
    if ncols == 3:
        log.info(
            "%s: third column ignored; frequency from column 1, %s from column 2",
            p.name,
            kind.upper(),
        )
    asd = np.sqrt(val) if kind == "psd" else val
    return FrequencySeries(asd, frequencies=freq, unit="1/Hz^(1/2)", name=p.stem)


# -- preparation for training/cleaning -------------------------------------------------------


def prepare(
    data: TimeSeriesDict | Sequence[TimeSeriesDict],
    channels: Sequence[str] | None = None,
    sample_rate: float | None = WORKING_RATE,
    min_duration: float = DEFAULT_WINDOW,
    source: str | Sequence[str] = "data",
    bounds: IngestBounds | None = None,
) -> TimeSeriesDict:
    """Check and resample data to the working rate: the last step before cleaning/training.

    Steps: select ``channels`` (strain first); join several time-ordered segments (rejecting
    gaps, overlaps and rate changes); reject NaN/inf and non-real samples; check every
    channel covers the strain's span; pass the plausibility gates of
    :func:`gravwave.gates.check_channel` on the joined span (no dead channel, every sample
    within ``bounds``); resample each channel explicitly to ``sample_rate`` with gwpy
    ``.resample`` (integer down-sampling by FIR decimation, otherwise FFT resampling); check
    equal sample counts; reject spans shorter than ``min_duration``. Output series are
    float64.

    Args:
        data: One dict, or a sequence of dicts covering consecutive spans.
        channels: Channels in output order (strain first); default the keys of the first dict.
        sample_rate: Working rate [Hz]; ``None`` keeps native rates but then requires all
            channels to share one rate.
        min_duration: Shortest acceptable span [s], normally one training window.
        source: Label(s) for messages, e.g. the file name; one per segment or one for all.
        bounds: Plausibility bounds; default :class:`~gravwave.gates.IngestBounds` ``()``.

    Returns:
        Dict channel -> float64 TimeSeries, all at ``sample_rate`` over the same GPS span.

    Raises:
        DataError: Missing channel, gap/overlap, NaN/inf, non-real samples, sample-rate or
            length mismatch, a dead channel, a sample outside the plausibility bounds, or a
            span shorter than ``min_duration``.
    """
    pieces = [data] if isinstance(data, TimeSeriesDict | dict) else list(data)
    if not pieces:
        raise DataError(f"{source}: no data")
    if isinstance(source, str):
        sources = [source] * len(pieces)
        if len(pieces) > 1:
            sources = [f"{source}[{i}]" for i in range(len(pieces))]
    else:
        sources = [str(s) for s in source]
        if len(sources) != len(pieces):
            raise ValueError("need one source label per segment")
    chans = list(pieces[0].keys()) if channels is None else list(channels)
    if not chans:
        raise DataError(f"{sources[0]}: no channels")
    label = sources[0] if len(sources) == 1 else f"{sources[0]}..{sources[-1]}"
    for piece, src in zip(pieces, sources, strict=True):
        for ch in chans:
            if ch not in piece:
                raise DataError(
                    f"{src}: channel {ch} not found; available: {listing(piece.keys())}",
                    hint="check the channel list",
                )
            ts = piece[ch]
            if ts.ndim != 1 or len(ts) == 0:
                raise DataError(f"{src}: channel {ch} is empty or not 1-D")
            values = np.asarray(ts.value)
            if values.dtype.kind not in "fiu":
                raise DataError(
                    f"{src}: channel {ch}: samples of dtype {values.dtype}; expected real "
                    "numbers (float or integer)"
                )
            bad = ~np.isfinite(values)
            if bad.any():
                t_bad = span(ts)[0] + int(np.argmax(bad)) / rate(ts)
                raise DataError(
                    f"{src}: channel {ch}: {int(bad.sum())} NaN/inf samples, first at GPS "
                    f"{t_bad:.6f}",
                    hint="cut the span to analysis segments",
                )
    joined = concatenate(pieces, chans, sources)
    ref = chans[0]
    ref_span = span(joined[ref])
    rates = {ch: rate(ts) for ch, ts in joined.items()}
    for ch in chans[1:]:
        ch_span = span(joined[ch])
        tol = TOL_SAMPLES / max(rates[ch], rates[ref])
        if abs(ch_span[0] - ref_span[0]) > tol or abs(ch_span[1] - ref_span[1]) > tol:
            raise DataError(
                f"{label}: length mismatch: channel {ch} spans GPS [{ch_span[0]}, {ch_span[1]}) "
                f"({len(joined[ch])} samples at {rates[ch]:g} Hz), strain {ref} spans "
                f"[{ref_span[0]}, {ref_span[1]})",
                hint="crop all channels to a common span",
            )
    check_segment(joined, label, bounds)
    if sample_rate is None:
        for ch in chans[1:]:
            if not math.isclose(rates[ch], rates[ref], rel_tol=1e-9):
                raise DataError(
                    f"{label}: sample-rate mismatch: channel {ch} at {rates[ch]:g} Hz, "
                    f"strain {ref} at {rates[ref]:g} Hz",
                    hint="pass sample_rate to resample explicitly",
                )
        target = rates[ref]
    else:
        target = float(sample_rate)
        if not (math.isfinite(target) and target > 0):
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    out = TimeSeriesDict()
    for ch in chans:
        ts = joined[ch].astype(np.float64, copy=False)
        if not math.isclose(rates[ch], target, rel_tol=1e-9):
            n_out = len(ts) * target / rates[ch]
            if abs(n_out - round(n_out)) > 1e-6:
                raise DataError(
                    f"{label}: channel {ch}: {len(ts)} samples at {rates[ch]:g} Hz is not a "
                    f"whole number of samples at {target:g} Hz",
                )
            log.info("%s: resampling %s %g Hz -> %g Hz", label, ch, rates[ch], target)
            ts = ts.resample(target)
        ts = TimeSeries(
            np.ascontiguousarray(ts.value, dtype=np.float64),
            t0=ref_span[0],
            sample_rate=target,
            unit=ts.unit,
            name=ch,
            channel=ch,
        )
        out[ch] = ts
    lengths = {ch: len(ts) for ch, ts in out.items()}
    if len(set(lengths.values())) != 1:
        raise DataError(f"{label}: length mismatch after resampling: {lengths}")
    duration = lengths[ref] / target
    if duration < min_duration:
        raise DataError(
            f"{label}: channel {ref}: span of {duration:g} s is shorter than one training "
            f"window ({min_duration:g} s)",
            hint="use more data or a shorter window",
        )
    log.info(
        "%s: %d channels at %g Hz, GPS [%s, %s)",
        label,
        len(out),
        target,
        ref_span[0],
        ref_span[0] + duration,
    )
    return out
