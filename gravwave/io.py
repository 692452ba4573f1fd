"""Ingest of gravitational-wave data through gwpy: GWF, GWOSC HDF5, multi-channel HDF5, ASD.

Every reader returns gwpy objects (:class:`~gwpy.timeseries.TimeSeries`,
:class:`~gwpy.timeseries.TimeSeriesDict`, :class:`~gwpy.frequencyseries.FrequencySeries`)
and raises :class:`twins.errors.DataError` with a one-line message naming the file and the
channel when the input is unusable. Nothing partial is returned on failure.

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
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
from gwpy.frequencyseries import FrequencySeries
from gwpy.segments import Segment, SegmentList
from gwpy.timeseries import StateVector, TimeSeries, TimeSeriesDict

from twins.errors import DataError

__all__ = [
    "DEFAULT_DQ_FLAGS",
    "DEFAULT_WINDOW",
    "GWOSC_DQ_DESCRIPTIONS",
    "GWOSC_DQ_SHORTNAMES",
    "PSD_AUTO_THRESHOLD",
    "WORKING_RATE",
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

PathLike = str | os.PathLike[str]

#: Working sample rate of the noise twin [Hz].
WORKING_RATE = 4096.0
#: Length of one training window [s]; the default shortest usable span.
DEFAULT_WINDOW = 8.0
#: GWOSC ``quality/simple`` bit names, bit 0 first (O2/O3 files).
GWOSC_DQ_SHORTNAMES = (
    "DATA",
    "CBC_CAT1",
    "CBC_CAT2",
    "CBC_CAT3",
    "BURST_CAT1",
    "BURST_CAT2",
    "BURST_CAT3",
)
#: Descriptions written next to :data:`GWOSC_DQ_SHORTNAMES` (GWOSC wording, shortened).
GWOSC_DQ_DESCRIPTIONS = (
    "data present",
    "passes the cbc CAT1 test",
    "passes cbc CAT2 test",
    "passes cbc CAT3 test",
    "passes the burst CAT1 test",
    "passes the burst CAT2 test",
    "passes the burst CAT3 test",
)
#: Data-quality bits that must all be set for a second to count as analysable: data present
#: and no severe (category-1) problem. CAT2/CAT3 vetoes target transient searches and would
#: throw away the stationary noise the twin learns from, so they are not required by default.
DEFAULT_DQ_FLAGS = ("DATA", "CBC_CAT1")
_INJ_SHORTNAMES = (
    "NO_CBC_HW_INJ",
    "NO_BURST_HW_INJ",
    "NO_DETCHAR_HW_INJ",
    "NO_CW_HW_INJ",
    "NO_STOCH_HW_INJ",
)
#: Relative time tolerance in samples when comparing GPS boundaries.
_TOL_SAMPLES = 0.25
_MAX_LISTED = 8


def _fname(path: PathLike) -> str:
    return Path(path).name


def _listing(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        shown += f", ... ({len(names)} in all)"
    return shown or "none"


def _require_file(path: PathLike) -> Path:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found", hint="check the path")
    return p


def _span(ts: TimeSeries) -> tuple[float, float]:
    t0 = float(ts.t0.value)
    return t0, t0 + len(ts) / float(ts.sample_rate.value)


def _rate(ts: TimeSeries) -> float:
    return float(ts.sample_rate.value)


def _check_request(
    start: float | None, end: float | None, span: tuple[float, float], what: str
) -> tuple[float, float]:
    lo = span[0] if start is None else float(start)
    hi = span[1] if end is None else float(end)
    if hi <= lo:
        raise DataError(f"{what}: empty request, end GPS {hi} <= start GPS {lo}")
    if lo < span[0] - 1e-6 or hi > span[1] + 1e-6:
        raise DataError(
            f"{what}: requested GPS [{lo}, {hi}) not covered by the data [{span[0]}, {span[1]})",
            hint="pick start/end inside the file span",
        )
    return lo, hi


# -- channel lists ---------------------------------------------------------------------------


def read_channel_list(path: PathLike) -> list[str]:
    """Read a channel list: one channel per line, the strain channel first.

    ``#`` starts a comment (whole line or trailing); blank lines are ignored.

    Args:
        path: Text file.

    Returns:
        Channel names in file order; element 0 is the strain (target) channel.

    Raises:
        DataError: File missing, empty, a line with more than one token, or a duplicate.
    """
    p = _require_file(path)
    channels: list[str] = []
    seen: dict[str, int] = {}
    for lineno, raw in enumerate(p.read_text().splitlines(), start=1):
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
    rate = _rate(first)
    for i in range(1, len(pieces)):
        prev, cur = pieces[i - 1], pieces[i]
        if not math.isclose(_rate(cur), rate, rel_tol=1e-9):
            raise DataError(
                f"{sources[i]}: channel {channel} sampled at {_rate(cur):g} Hz, "
                f"but at {rate:g} Hz in {sources[0]}",
                hint="sample-rate mismatch between files",
            )
        prev_end = _span(prev)[1]
        cur_start = _span(cur)[0]
        delta = cur_start - prev_end
        if abs(delta) > _TOL_SAMPLES / rate:
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
        sample_rate=rate,
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
                    f"{src}: channel {ch} not found; available: {_listing(piece.keys())}"
                )
    out = TimeSeriesDict()
    for ch in chans:
        out[ch] = _join([p[ch] for p in pieces], sources, ch)
    return out


# -- GWF frames ------------------------------------------------------------------------------


def _gwf_span(path: Path, channel: str) -> tuple[float, float]:
    from gwpy.io.gwf import data_segments

    try:
        segs = data_segments([str(path)], channel, warn=False)
    except Exception as exc:  # lalframe raises bare RuntimeError/ValueError
        raise DataError(f"{path.name}: cannot read GWF frame structure ({exc})") from exc
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
        DataError: File missing or unreadable, channel missing, gap/overlap between files,
            a sample-rate change between files, or a request outside the data.
    """
    from gwpy.io.gwf import get_channel_names

    file_list = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    chans = [channels] if isinstance(channels, str) else list(channels)
    if not file_list:
        raise DataError("no GWF files given")
    if not chans:
        raise DataError("no channels requested")
    files = [_require_file(f) for f in file_list]
    spans: list[tuple[float, float, Path]] = []
    for f in files:
        try:
            available = get_channel_names(str(f))
        except Exception as exc:
            raise DataError(f"{f.name}: not a readable GWF file ({exc})") from exc
        have = set(available)
        for ch in chans:
            if ch not in have:
                raise DataError(
                    f"{f.name}: channel {ch} not found; available: {_listing(available)}",
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
    lo, hi = _check_request(start, end, (spans[0][0], spans[-1][1]), label)
    pieces: list[TimeSeriesDict] = []
    sources: list[str] = []
    for t0, t1, f in spans:
        a, b = max(lo, t0), min(hi, t1)
        if b <= a:
            continue
        try:
            piece = TimeSeriesDict.read(str(f), chans, start=a, end=b, format="gwf")
        except Exception as exc:
            raise DataError(f"{f.name}: failed to read {_listing(chans)} ({exc})") from exc
        pieces.append(piece)
        sources.append(f.name)
    out = concatenate(pieces, chans, sources)
    for ch, ts in out.items():
        ts.name = ch
        log.debug("%s: %s %g Hz GPS [%s, %s)", label, ch, _rate(ts), *_span(ts))
    return out


# -- GWOSC HDF5 ------------------------------------------------------------------------------


def _gwosc_rate_tag(rate: float) -> str:
    if math.isclose(rate, 4096.0):
        return "4KHZ"
    if math.isclose(rate, 16384.0):
        return "16KHZ"
    return f"{rate:g}HZ"


def write_gwosc_hdf5(
    path: PathLike,
    strain: TimeSeries,
    dq_mask: np.ndarray | None = None,
    *,
    detector: str = "V1",
    run: str = "O3b",
) -> Path:
    """Write strain (and a 1-Hz data-quality mask) in the GWOSC HDF5 layout.

    Layout as in the public O3 files: ``meta/*`` scalars (``Detector``, ``GPSstart``,
    ``Duration``, ...), ``strain/Strain`` with ``Xstart``/``Xspacing``/``Npoints`` attributes
    and ``strain/GWOSCmeta``, ``quality/simple/{DQmask,DQShortnames,DQDescriptions}`` (bits
    :data:`GWOSC_DQ_SHORTNAMES`) and ``quality/injections/{Injmask,...}`` (no injections).
    gwpy reads it with ``format='hdf5.gwosc'``. Used for demos and tests; written atomically.

    Args:
        path: Output ``.hdf5`` file.
        strain: Strain series; must start on an integer GPS second and last whole seconds.
        dq_mask: One integer per second (bit i = ``GWOSC_DQ_SHORTNAMES[i]``); default all
            seven bits set.
        detector: Detector prefix, e.g. ``"V1"``.
        run: Observing-run label stored in the metadata.

    Returns:
        The written path.

    Raises:
        DataError: Strain not on whole GPS seconds, or a mask of the wrong length.
    """
    import lal

    p = Path(path)
    rate = _rate(strain)
    t0, t1 = _span(strain)
    duration = t1 - t0
    if abs(t0 - round(t0)) > 1e-6 or abs(duration - round(duration)) > 1e-6:
        raise DataError(f"{p.name}: GWOSC layout needs whole GPS seconds, got [{t0}, {t1})")
    gps, dur = round(t0), round(duration)
    nbits = len(GWOSC_DQ_SHORTNAMES)
    mask = (
        np.full(dur, 2**nbits - 1, dtype=np.int32)
        if dq_mask is None
        else np.asarray(dq_mask, dtype=np.int32)
    )
    if mask.shape != (dur,):
        raise DataError(f"{p.name}: DQ mask has {mask.size} entries, expected {dur} (1 per s)")
    tag = _gwosc_rate_tag(rate)
    utc = lal.GPSToUTC(gps)
    utc_str = "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}".format(*utc[:6])
    obs = detector[0]

    def fill(h5: h5py.File) -> None:
        meta = h5.create_group("meta")
        meta["Description"] = np.bytes_(f"Strain data time series from {obs}")
        meta["DescriptionURL"] = np.bytes_("https://gwosc.org/")
        meta["Detector"] = np.bytes_(detector)
        meta["Duration"] = np.int64(dur)
        meta["FrameType"] = np.bytes_(f"{detector}_GWOSC_{run}_{tag}_R1")
        meta["GPSstart"] = np.int64(gps)
        meta["Observatory"] = np.bytes_(obs)
        meta["StrainChannel"] = np.bytes_(f"{detector}:GWOSC-{tag}_R1_STRAIN")
        meta["Type"] = np.bytes_("StrainTimeSeries")
        meta["UTCstart"] = np.bytes_(utc_str)
        grp = h5.create_group("strain")
        ds = grp.create_dataset("Strain", data=np.asarray(strain.value, dtype=np.float64))
        ds.attrs.update(
            {
                "Npoints": np.int64(len(strain)),
                "Xspacing": 1.0 / rate,
                "Xstart": np.int64(gps),
                "Xlabel": np.bytes_("GPS time"),
                "Xunits": np.bytes_("second"),
                "Ylabel": np.bytes_("Strain"),
                "Yunits": np.bytes_(""),
            }
        )
        grp["GWOSCmeta"] = np.bytes_(f"GWOSC-{tag}_R1_STRAIN")
        qual = h5.create_group("quality")
        simple = qual.create_group("simple")
        dq = simple.create_dataset("DQmask", data=mask)
        dq.attrs.update(
            {
                "Bits": np.int64(nbits),
                "Npoints": np.int64(dur),
                "Xspacing": 1.0,
                "Xstart": np.int64(gps),
                "Xunits": np.bytes_("second"),
                "Description": np.bytes_("Data quality bitmask, 1 Hz"),
            }
        )
        simple["DQShortnames"] = np.array([np.bytes_(s) for s in GWOSC_DQ_SHORTNAMES])
        simple["DQDescriptions"] = np.array([np.bytes_(s) for s in GWOSC_DQ_DESCRIPTIONS])
        simple["GWOSCmeta"] = np.bytes_(f"GWOSC-{tag}_R1_DQMASK")
        inj = qual.create_group("injections")
        im = inj.create_dataset(
            "Injmask", data=np.full(dur, 2 ** len(_INJ_SHORTNAMES) - 1, dtype=np.int32)
        )
        im.attrs.update(
            {
                "Bits": np.int64(len(_INJ_SHORTNAMES)),
                "Npoints": np.int64(dur),
                "Xspacing": 1.0,
                "Xstart": np.int64(gps),
                "Xunits": np.bytes_("second"),
            }
        )
        inj["InjShortnames"] = np.array([np.bytes_(s) for s in _INJ_SHORTNAMES])
        inj["InjDescriptions"] = np.array(
            [np.bytes_(f"no {s[3:-7].lower()} hardware injection") for s in _INJ_SHORTNAMES]
        )
        inj["GWOSCmeta"] = np.bytes_(f"GWOSC-{tag}_R1_INJMASK")
        qual.create_group("detail")

    _atomic_h5(p, fill)
    return p


def read_gwosc_hdf5(
    path: PathLike,
    start: float | None = None,
    end: float | None = None,
    *,
    flags: Sequence[str] = DEFAULT_DQ_FLAGS,
    min_duration: float = 0.0,
) -> tuple[TimeSeries, SegmentList]:
    """Read a GWOSC strain file and turn its data-quality mask into analysis segments.

    The strain is read with gwpy (``format='hdf5.gwosc'``), the 1-Hz ``quality/simple``
    bitmask with ``StateVector.read(..., format='hdf5.gwosc').to_dqflags()``. A second is
    analysable when every bit in ``flags`` is set (default :data:`DEFAULT_DQ_FLAGS`: data
    present and CBC CAT1 passed). Bits are looked up by name in ``DQShortnames``.

    Args:
        path: GWOSC ``.hdf5`` file.
        start: First GPS time [s]; default the file start.
        end: GPS end time [s] (exclusive); default the file end.
        flags: DQ bit short names that must all be active.
        min_duration: Drop analysis segments shorter than this [s] (logged).

    Returns:
        ``(strain, segments)``: strain cropped to ``[start, end)`` (may hold NaN outside
        the segments, as GWOSC files do), and the analysis segments inside that span.

    Raises:
        DataError: File missing or not in the GWOSC layout, unknown flag, no analysable
            segment left, or non-finite strain inside an analysis segment.
    """
    p = _require_file(path)
    try:
        strain = TimeSeries.read(str(p), format="hdf5.gwosc")
        state = StateVector.read(str(p), format="hdf5.gwosc")
        with h5py.File(p, "r") as h5:
            simple = h5["quality/simple"]
            if "DQShortnames" in simple:
                shortnames = [bytes(b).decode() for b in simple["DQShortnames"][()]]
            else:
                shortnames = list(GWOSC_DQ_SHORTNAMES)
    except (KeyError, OSError, ValueError) as exc:
        raise DataError(
            f"{p.name}: not a GWOSC HDF5 strain file ({exc})",
            hint="expected strain/Strain, meta/Detector and quality/simple/DQmask",
        ) from exc
    channel = str(strain.name)
    lo, hi = _check_request(start, end, _span(strain), f"{p.name}: channel {channel}")
    bits: list[int] = []
    for flag in flags:
        if flag not in shortnames:
            raise DataError(
                f"{p.name}: DQ flag {flag} not in the mask; available: {_listing(shortnames)}"
            )
        bits.append(shortnames.index(flag))
    dq = state.to_dqflags(bits=bits)
    segments = SegmentList([Segment(lo, hi)])
    for flag in dq.values():
        segments &= flag.active
    segments.coalesce()
    kept = SegmentList()
    for seg in segments:
        if abs(seg) < min_duration:
            log.info(
                "%s: dropping %gs analysis segment %s (< %g s)",
                p.name,
                abs(seg),
                seg,
                min_duration,
            )
        else:
            kept.append(Segment(float(seg[0]), float(seg[1])))
    if not kept:
        raise DataError(
            f"{p.name}: channel {channel}: no analysis segment ({'+'.join(flags)}) of at least "
            f"{min_duration:g} s in GPS [{lo}, {hi})",
            hint="pick another span or relax the DQ flags",
        )
    strain = strain.crop(lo, hi, copy=True)
    for seg in kept:
        values = strain.crop(seg[0], seg[1]).value
        bad = ~np.isfinite(values)
        if bad.any():
            t_bad = float(seg[0]) + int(np.argmax(bad)) / _rate(strain)
            raise DataError(
                f"{p.name}: channel {channel}: {int(bad.sum())} NaN/inf samples inside "
                f"analysis segment {seg}, first at GPS {t_bad}"
            )
    log.info(
        "%s: %s %g Hz, %d analysis segments, %g s analysable",
        p.name,
        channel,
        _rate(strain),
        len(kept),
        float(abs(kept)),
    )
    return strain, kept


# -- multi-channel HDF5 ----------------------------------------------------------------------


def _atomic_h5(path: Path, fill: Callable[[h5py.File], None]) -> None:
    """Write an HDF5 file through ``fill`` into a temp file, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with h5py.File(tmp, "w", track_order=True) as h5:
            fill(h5)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_multichannel_hdf5(path: PathLike, tsdict: TimeSeriesDict) -> Path:
    """Write channels to one HDF5 file, one dataset per channel, atomically.

    Each dataset is named after its channel and carries the attributes ``channel`` (str),
    ``sample_rate`` [Hz], ``t0`` [GPS s] and ``unit`` (str). Creation order is tracked, so
    reading back without a channel list keeps the strain first. The file is written to a
    temporary name in the same directory and renamed into place.

    Args:
        path: Output file (``.h5``/``.hdf5``).
        tsdict: Channel -> TimeSeries; channels may have different rates and spans.

    Returns:
        The written path.

    Raises:
        DataError: Empty dict, an empty series, or a channel name containing ``/``.
    """
    p = Path(path)
    if not tsdict:
        raise DataError(f"{p.name}: nothing to write (no channels)")
    for name, ts in tsdict.items():
        if "/" in str(name):
            raise DataError(f"{p.name}: channel {name} contains '/', not allowed in HDF5 names")
        if len(ts) == 0:
            raise DataError(f"{p.name}: channel {name} is empty")

    def fill(h5: h5py.File) -> None:
        for name, ts in tsdict.items():
            ds = h5.create_dataset(str(name), data=np.asarray(ts.value))
            ds.attrs["channel"] = str(name)
            ds.attrs["sample_rate"] = _rate(ts)
            ds.attrs["t0"] = float(ts.t0.value)
            ds.attrs["unit"] = ts.unit.to_string() if ts.unit is not None else ""

    _atomic_h5(p, fill)
    log.debug("%s: wrote %d channels", p.name, len(tsdict))
    return p


def read_multichannel_hdf5(
    path: PathLike,
    channels: Sequence[str] | None = None,
    start: float | None = None,
    end: float | None = None,
) -> TimeSeriesDict:
    """Read the multi-channel HDF5 layout of :func:`write_multichannel_hdf5`.

    Only the requested samples are read from disk. Slicing keeps the samples whose time
    lies in ``[start, end)``.

    Args:
        path: HDF5 file.
        channels: Channels to read, in this order; default all, in file order (creation
            order when tracked, else alphabetical).
        start: First GPS time [s]; default each channel's start.
        end: GPS end time [s] (exclusive); default each channel's end.

    Returns:
        Dict channel -> TimeSeries at the native rates.

    Raises:
        DataError: File missing/unreadable, channel missing, missing or invalid
            ``sample_rate``/``t0`` attributes, or a request outside a channel's span.
    """
    p = _require_file(path)
    out = TimeSeriesDict()
    try:
        h5 = h5py.File(p, "r")
    except OSError as exc:
        raise DataError(f"{p.name}: not a readable HDF5 file ({exc})") from exc
    with h5:
        index: dict[str, h5py.Dataset] = {}
        for key, obj in h5.items():
            if isinstance(obj, h5py.Dataset):
                name = obj.attrs.get("channel", key)
                index[name.decode() if isinstance(name, bytes) else str(name)] = obj
        wanted = list(index) if channels is None else list(channels)
        if not wanted:
            raise DataError(f"{p.name}: no channel datasets in the file")
        for ch in wanted:
            if ch not in index:
                raise DataError(
                    f"{p.name}: channel {ch} not found; available: {_listing(index)}",
                    hint="check the channel list",
                )
            ds = index[ch]
            for attr in ("sample_rate", "t0"):
                if attr not in ds.attrs:
                    raise DataError(
                        f"{p.name}: channel {ch} lacks attribute {attr}",
                        hint="datasets need sample_rate [Hz] and t0 [GPS s] attributes",
                    )
            rate = float(ds.attrs["sample_rate"])
            t0 = float(ds.attrs["t0"])
            if not (math.isfinite(rate) and rate > 0 and math.isfinite(t0)):
                raise DataError(f"{p.name}: channel {ch}: invalid sample_rate {rate} or t0 {t0}")
            if ds.ndim != 1 or ds.shape[0] == 0:
                raise DataError(f"{p.name}: channel {ch}: expected a non-empty 1-D dataset")
            n = ds.shape[0]
            lo, hi = _check_request(start, end, (t0, t0 + n / rate), f"{p.name}: channel {ch}")
            i0 = max(0, math.ceil((lo - t0) * rate - 1e-6))
            i1 = min(n, math.ceil((hi - t0) * rate - 1e-6))
            unit = ds.attrs.get("unit", "")
            unit = unit.decode() if isinstance(unit, bytes) else str(unit)
            out[ch] = TimeSeries(
                ds[i0:i1],
                t0=t0 + i0 / rate,
                sample_rate=rate,
                unit=unit or None,
                name=ch,
                channel=ch,
            )
    return out


# -- ASD / PSD text files --------------------------------------------------------------------

#: Below this median value a strain spectrum file is taken to hold a PSD [1/Hz] rather than
#: an ASD [1/sqrt(Hz)]: ground-based strain ASDs lie around 1e-24..1e-18, PSDs 1e-48..1e-36.
PSD_AUTO_THRESHOLD = 1e-30


def read_asd(
    path: PathLike, kind: Literal["asd", "psd", "auto"] = "asd", *, psd: bool | None = None
) -> FrequencySeries:
    """Read a two-column sensitivity curve (frequency [Hz], ASD [strain/sqrt(Hz)]).

    ``#`` lines are comments. ``kind="psd"`` (or ``psd=True``) declares the second column a
    PSD [strain^2/Hz], which is square-rooted. ``kind="auto"`` decides from the values: a
    median below :data:`PSD_AUTO_THRESHOLD` (1e-30) means PSD. Auto-detection only holds
    for strain curves, not for witness-channel spectra.

    Args:
        path: Text file, e.g. ``lalapps/data/LIGO-P1200087-v18-AdV_DESIGN.txt``.
        kind: ``"asd"``, ``"psd"`` or ``"auto"``.
        psd: Shortcut overriding ``kind``: ``True`` = ``"psd"``, ``False`` = ``"asd"``.

    Returns:
        ASD [1/sqrt(Hz)] on the file's (possibly irregular) frequencies; square it for a PSD.

    Raises:
        DataError: File missing/unparsable, not exactly two columns, frequencies not
            positive and strictly increasing, or values not positive and finite.
    """
    if psd is not None:
        kind = "psd" if psd else "asd"
    if kind not in ("asd", "psd", "auto"):
        raise ValueError(f"kind must be 'asd', 'psd' or 'auto', got {kind!r}")
    p = _require_file(path)
    try:
        table = np.loadtxt(p, comments="#", ndmin=2, dtype=np.float64)
    except ValueError as exc:
        raise DataError(f"{p.name}: cannot parse as numbers ({exc})") from exc
    if table.shape[0] < 2 or table.shape[1] != 2:
        raise DataError(
            f"{p.name}: expected two columns (frequency Hz, ASD) and >= 2 rows, "
            f"got shape {table.shape}"
        )
    freq, val = table[:, 0], table[:, 1]
    if not np.all(np.isfinite(freq)) or freq[0] <= 0 or np.any(np.diff(freq) <= 0):
        raise DataError(f"{p.name}: frequencies must be positive, finite and strictly increasing")
    bad = ~np.isfinite(val) | (val <= 0)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{p.name}: {int(bad.sum())} non-positive or non-finite values, first at "
            f"{freq[i]:g} Hz ({val[i]})"
        )
    if kind == "auto":
        kind = "psd" if float(np.median(val)) < PSD_AUTO_THRESHOLD else "asd"
        log.info("%s: detected %s", p.name, kind.upper())
    asd = np.sqrt(val) if kind == "psd" else val
    return FrequencySeries(asd, frequencies=freq, unit="1/Hz^(1/2)", name=p.stem)


# -- preparation for training/cleaning -------------------------------------------------------


def prepare(
    data: TimeSeriesDict | Sequence[TimeSeriesDict],
    channels: Sequence[str] | None = None,
    sample_rate: float | None = WORKING_RATE,
    min_duration: float = DEFAULT_WINDOW,
    source: str | Sequence[str] = "data",
) -> TimeSeriesDict:
    """Check and resample data to the working rate: the last step before cleaning/training.

    Steps: select ``channels`` (strain first); join several time-ordered segments (rejecting
    gaps, overlaps and rate changes); reject NaN/inf; check every channel covers the strain's
    span; resample each channel explicitly to ``sample_rate`` with gwpy ``.resample`` (integer
    down-sampling by FIR decimation, otherwise FFT resampling); check equal sample counts;
    reject spans shorter than ``min_duration``. Output series are float64.

    Args:
        data: One dict, or a sequence of dicts covering consecutive spans.
        channels: Channels in output order (strain first); default the keys of the first dict.
        sample_rate: Working rate [Hz]; ``None`` keeps native rates but then requires all
            channels to share one rate.
        min_duration: Shortest acceptable span [s], normally one training window.
        source: Label(s) for messages, e.g. the file name; one per segment or one for all.

    Returns:
        Dict channel -> float64 TimeSeries, all at ``sample_rate`` over the same GPS span.

    Raises:
        DataError: Missing channel, gap/overlap, NaN/inf, sample-rate or length mismatch,
            or a span shorter than ``min_duration``.
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
                    f"{src}: channel {ch} not found; available: {_listing(piece.keys())}",
                    hint="check the channel list",
                )
            ts = piece[ch]
            if ts.ndim != 1 or len(ts) == 0:
                raise DataError(f"{src}: channel {ch} is empty or not 1-D")
            values = np.asarray(ts.value)
            bad = ~np.isfinite(values)
            if bad.any():
                t_bad = _span(ts)[0] + int(np.argmax(bad)) / _rate(ts)
                raise DataError(
                    f"{src}: channel {ch}: {int(bad.sum())} NaN/inf samples, first at GPS "
                    f"{t_bad:.6f}",
                    hint="cut the span to analysis segments",
                )
    joined = concatenate(pieces, chans, sources)
    ref = chans[0]
    ref_span = _span(joined[ref])
    rates = {ch: _rate(ts) for ch, ts in joined.items()}
    for ch in chans[1:]:
        span = _span(joined[ch])
        tol = _TOL_SAMPLES / max(rates[ch], rates[ref])
        if abs(span[0] - ref_span[0]) > tol or abs(span[1] - ref_span[1]) > tol:
            raise DataError(
                f"{label}: length mismatch: channel {ch} spans GPS [{span[0]}, {span[1]}) "
                f"({len(joined[ch])} samples at {rates[ch]:g} Hz), strain {ref} spans "
                f"[{ref_span[0]}, {ref_span[1]})",
                hint="crop all channels to a common span",
            )
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
