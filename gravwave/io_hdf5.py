"""The multi-channel HDF5 layout of the noise twin, and checks of HDF5 attributes and datasets.

One dataset per channel, named after it, with the attributes ``channel`` (str),
``sample_rate`` [Hz], ``t0`` [GPS s] and ``unit`` (str). Importable from :mod:`gravwave.io`.

Every failure to read is a one-line :class:`~twins.errors.DataError` naming the file, the
channel or attribute, what was found and what was expected: a truncated or corrupt file
(metadata checksum errors included), attributes of the wrong type (``sample_rate = '4096 Hz'``,
``t0 = 'yesterday'``), a NaN, zero or negative rate, a dataset of byte strings or of the
wrong rank, a missing channel.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from gwpy.timeseries import TimeSeries, TimeSeriesDict

from gravwave.io_common import (
    PathLike,
    check_request,
    foreign_errors,
    listing,
    rate,
    reason,
    require_file,
)
from twins.atomic import atomic_write
from twins.errors import DataError

__all__ = [
    "atomic_h5",
    "attr_number",
    "check_series_dataset",
    "read_multichannel_hdf5",
    "write_multichannel_hdf5",
]

log = logging.getLogger(__name__)

_CORRUPT_HINT = "the file is truncated or corrupt: copy or write it again"
#: What a numpy dtype kind holds, for messages.
_KIND_WORDS = {
    "S": "byte strings",
    "U": "unicode strings",
    "O": "Python objects (e.g. variable-length strings)",
    "c": "complex numbers",
    "b": "booleans",
    "V": "compound records",
    "M": "datetimes",
    "m": "timedeltas",
}


def atomic_h5(path: Path, fill: Callable[[h5py.File], None]) -> None:
    """Write an HDF5 file through ``fill``, replacing ``path`` atomically
    (:func:`twins.atomic.atomic_write`: a reader or a crash sees the old or the new file)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w", track_order=True) as h5:
            fill(h5)

    atomic_write(path, write)


def _shown(value: Any) -> str:
    """A short description of an attribute value: ``'4096 Hz' (a string)``."""
    if isinstance(value, np.generic) and not isinstance(value, np.bytes_ | np.str_):
        value = value.item()
    if isinstance(value, bytes | np.bytes_):
        value = bytes(value).decode("utf-8", "replace")
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"{text!r} (a string)"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    return f"{value!r} (a {type(value).__name__})"


def attr_number(
    file: Path, where: str, attrs: h5py.AttributeManager, name: str, expected: str
) -> float:
    """A scalar real attribute as float; refuse a missing one, a string, an array, a bool.

    Args:
        file: The file (its name starts messages).
        where: ``"channel V1:X"`` or ``"dataset strain/Strain"``.
        attrs: The attributes of the dataset.
        name: Attribute name.
        expected: What is expected, for messages, e.g. ``"a sample rate > 0 [Hz]"``.

    Returns:
        The value (finiteness and range are checked by the caller).

    Raises:
        DataError: Missing attribute or a value that is not one real number.
    """
    if name not in attrs:
        raise DataError(
            f"{file.name}: {where} lacks attribute {name}; expected {expected}",
            hint="datasets need sample_rate [Hz] and t0 [GPS s] attributes",
        )
    raw = attrs[name]
    value = raw
    if isinstance(raw, np.ndarray) and raw.size == 1:
        value = raw.reshape(()).item()
    if isinstance(value, bool | np.bool_) or not isinstance(
        value, int | float | np.integer | np.floating
    ):
        raise DataError(
            f"{file.name}: {where}: attribute {name} is {_shown(value)}; expected {expected}"
        )
    return float(value)


def check_series_dataset(file: Path, where: str, ds: h5py.Dataset) -> int:
    """Refuse a dataset that is not a non-empty 1-D array of real numbers.

    Returns:
        The number of samples.

    Raises:
        DataError: Wrong dtype (strings, complex, ...), wrong rank, or empty.
    """
    kind = ds.dtype.kind
    if kind not in "fiu":
        what = _KIND_WORDS.get(kind, f"dtype {ds.dtype}")
        raise DataError(
            f"{file.name}: {where}: dataset of {what} (dtype {ds.dtype}); expected real "
            "numbers (float or integer)"
        )
    if ds.ndim != 1:
        raise DataError(
            f"{file.name}: {where}: dataset of shape {ds.shape} (rank {ds.ndim}); expected a "
            "1-D series (rank 1)"
        )
    if ds.shape[0] == 0:
        raise DataError(f"{file.name}: {where}: dataset is empty; expected samples")
    return int(ds.shape[0])


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
            ds.attrs["sample_rate"] = rate(ts)
            ds.attrs["t0"] = float(ts.t0.value)
            ds.attrs["unit"] = ts.unit.to_string() if ts.unit is not None else ""

    atomic_h5(p, fill)
    log.debug("%s: wrote %d channels", p.name, len(tsdict))
    return p


def _channel_index(h5: h5py.File, file: Path) -> dict[str, h5py.Dataset]:
    """Channel name (the ``channel`` attribute, else the dataset's name) -> dataset.

    Raises:
        DataError: Two datasets claim the same channel.
    """
    index: dict[str, h5py.Dataset] = {}
    for key, obj in h5.items():
        if isinstance(obj, h5py.Dataset):
            name = obj.attrs.get("channel", key)
            if isinstance(name, np.ndarray) and name.size == 1:
                name = name.reshape(()).item()
            channel = name.decode() if isinstance(name, bytes) else str(name)
            if channel in index:
                raise DataError(
                    f"{file.name}: channel {channel} is given twice, by datasets "
                    f"{index[channel].name.lstrip('/')} and {key}; expected one dataset a channel"
                )
            index[channel] = obj
    return index


def _text_attr(attrs: h5py.AttributeManager, name: str) -> str:
    value = attrs.get(name, "")
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _read_channel(
    p: Path, ch: str, ds: h5py.Dataset, start: float | None, end: float | None
) -> TimeSeries:
    where = f"channel {ch}"
    with foreign_errors(p, f"{where}: corrupt HDF5 metadata", _CORRUPT_HINT):
        fs = attr_number(p, where, ds.attrs, "sample_rate", "a sample rate > 0 [Hz]")
        t0 = attr_number(p, where, ds.attrs, "t0", "a GPS start time [s]")
        unit = _text_attr(ds.attrs, "unit")
        n = check_series_dataset(p, where, ds)
    if not (math.isfinite(fs) and fs > 0):
        raise DataError(
            f"{p.name}: {where}: attribute sample_rate is {fs:g}; expected a finite sample "
            "rate > 0 [Hz]"
        )
    if not math.isfinite(t0):
        raise DataError(
            f"{p.name}: {where}: attribute t0 is {t0:g}; expected a finite GPS start time [s]"
        )
    lo, hi = check_request(start, end, (t0, t0 + n / fs), f"{p.name}: {where}")
    i0 = max(0, math.ceil((lo - t0) * fs - 1e-6))
    i1 = min(n, math.ceil((hi - t0) * fs - 1e-6))
    with foreign_errors(p, f"{where}: cannot read the samples", _CORRUPT_HINT):
        values = ds[i0:i1]
    return TimeSeries(
        values, t0=t0 + i0 / fs, sample_rate=fs, unit=unit or None, name=ch, channel=ch
    )


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
        DataError: File missing, truncated or corrupt; channel missing; a missing or
            invalid ``sample_rate``/``t0`` attribute (not a number, NaN, <= 0 rate); a
            dataset that is not a non-empty 1-D real array; a request outside a channel's
            span. Each names the file and the channel or attribute.
    """
    p = require_file(path)
    out = TimeSeriesDict()
    try:
        h5 = h5py.File(p, "r")
    except Exception as exc:  # h5py raises OSError, rarely others, for any unreadable file
        raise DataError(
            f"{p.name}: not a readable HDF5 file ({reason(exc)})", hint=_CORRUPT_HINT
        ) from exc
    with h5:
        with foreign_errors(p, "corrupt HDF5 file: cannot list its datasets", _CORRUPT_HINT):
            index = _channel_index(h5, p)
        wanted = list(index) if channels is None else list(channels)
        if not wanted:
            raise DataError(f"{p.name}: no channel datasets in the file")
        for ch in wanted:
            if ch not in index:
                raise DataError(
                    f"{p.name}: channel {ch} not found; available: {listing(index)}",
                    hint="check the channel list",
                )
            out[ch] = _read_channel(p, ch, index[ch], start, end)
    return out
