"""GWOSC HDF5 strain files: write the public layout, read strain and data-quality segments.

Importable from :mod:`gravwave.io`. The layout is checked with h5py before gwpy reads it, so
a file that is not in the layout, is truncated or corrupt, or holds a strain of the wrong
type or rank, or ``Xspacing``/``Xstart`` attributes that are not numbers, is refused with a
one-line :class:`~twins.errors.DataError` naming the file, the dataset or attribute, what was
found and what was expected; any other exception of h5py or gwpy while reading is wrapped
the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
from gwpy.segments import Segment, SegmentList
from gwpy.timeseries import StateVector, TimeSeries

from gravwave.io_common import (
    PathLike,
    check_request,
    foreign_errors,
    listing,
    rate,
    reason,
    require_file,
    span,
)
from gravwave.io_hdf5 import atomic_h5, attr_number, check_series_dataset
from twins.errors import DataError

__all__ = [
    "DEFAULT_DQ_FLAGS",
    "GWOSC_DQ_DESCRIPTIONS",
    "GWOSC_DQ_SHORTNAMES",
    "read_gwosc_hdf5",
    "write_gwosc_hdf5",
]

log = logging.getLogger(__name__)

_LAYOUT_HINT = "expected strain/Strain, meta/Detector and quality/simple/DQmask"

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


def _gwosc_rate_tag(fs: float) -> str:
    if math.isclose(fs, 4096.0):
        return "4KHZ"
    if math.isclose(fs, 16384.0):
        return "16KHZ"
    return f"{fs:g}HZ"


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
    fs = rate(strain)
    t0, t1 = span(strain)
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
    tag = _gwosc_rate_tag(fs)
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
                "Xspacing": 1.0 / fs,
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

    atomic_h5(p, fill)
    return p


def _names(values: np.ndarray) -> list[str]:
    return [
        bytes(v).decode("utf-8", "replace") if isinstance(v, bytes | np.bytes_) else str(v)
        for v in np.asarray(values).ravel()
    ]


def _check_layout(p: Path) -> list[str]:
    """Check the GWOSC layout with h5py before gwpy reads it; return the DQ bit names.

    Raises:
        DataError: Unreadable/corrupt file, a missing dataset, a strain that is not a
            non-empty 1-D real array, or ``Xspacing``/``Xstart`` that are not finite numbers
            (``Xspacing`` > 0).
    """
    what = "not a GWOSC HDF5 strain file"
    try:
        h5 = h5py.File(p, "r")
    except Exception as exc:  # h5py raises OSError, rarely others, for any unreadable file
        raise DataError(
            f"{p.name}: {what}: not a readable HDF5 file ({reason(exc)})", hint=_LAYOUT_HINT
        ) from exc
    with h5, foreign_errors(p, f"{what}: corrupt HDF5 metadata", _LAYOUT_HINT):
        for name in ("strain/Strain", "quality/simple/DQmask"):
            if not isinstance(h5.get(name), h5py.Dataset):
                raise DataError(f"{p.name}: {what}: no dataset {name}", hint=_LAYOUT_HINT)
        ds = h5["strain/Strain"]
        where = "dataset strain/Strain"
        check_series_dataset(p, where, ds)
        dt = attr_number(p, where, ds.attrs, "Xspacing", "a sample spacing > 0 [s]")
        x0 = attr_number(p, where, ds.attrs, "Xstart", "a GPS start time [s]")
        check_series_dataset(p, "dataset quality/simple/DQmask", h5["quality/simple/DQmask"])
        simple = h5["quality/simple"]
        if "DQShortnames" in simple:
            shortnames = _names(simple["DQShortnames"][()])
        else:
            shortnames = list(GWOSC_DQ_SHORTNAMES)
    if not (math.isfinite(dt) and dt > 0):
        raise DataError(
            f"{p.name}: {where}: attribute Xspacing is {dt:g}; expected a finite sample "
            "spacing > 0 [s]"
        )
    if not math.isfinite(x0):
        raise DataError(
            f"{p.name}: {where}: attribute Xstart is {x0:g}; expected a finite GPS start [s]"
        )
    return shortnames


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
        DataError: File missing, truncated, corrupt or not in the GWOSC layout (strain not
            a 1-D real array, ``Xspacing``/``Xstart`` not finite numbers), unknown flag, no
            analysable segment left, or non-finite strain inside an analysis segment.
    """
    p = require_file(path)
    shortnames = _check_layout(p)
    with foreign_errors(p, "not a GWOSC HDF5 strain file: gwpy cannot read it", _LAYOUT_HINT):
        strain = TimeSeries.read(str(p), format="hdf5.gwosc")
        state = StateVector.read(str(p), format="hdf5.gwosc")
    channel = str(strain.name)
    lo, hi = check_request(start, end, span(strain), f"{p.name}: channel {channel}")
    bits: list[int] = []
    for flag in flags:
        if flag not in shortnames:
            raise DataError(
                f"{p.name}: DQ flag {flag} not in the mask; available: {listing(shortnames)}"
            )
        bits.append(shortnames.index(flag))
    with foreign_errors(p, "cannot interpret the data-quality mask quality/simple/DQmask"):
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
            t_bad = float(seg[0]) + int(np.argmax(bad)) / rate(strain)
            raise DataError(
                f"{p.name}: channel {channel}: {int(bad.sum())} NaN/inf samples inside "
                f"analysis segment {seg}, first at GPS {t_bad}"
            )
    log.info(
        "%s: %s %g Hz, %d analysis segments, %g s analysable",
        p.name,
        channel,
        rate(strain),
        len(kept),
        float(abs(kept)),
    )
    return strain, kept
