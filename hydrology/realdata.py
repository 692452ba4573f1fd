"""Cut a downloaded grid into the pieces a provider delivers: a region, a span of months.

A drought twin follows a record month by month: each month the provider publishes the new
month (NOAA PSL's subsetter for GPCC, CPC or CMAP; the CDS for ERA5). :func:`cut` writes such
a piece from a file already on disk **as the provider would write it**: the values are copied
unchanged, packed or not (the file is opened without decoding: no masking, scaling or time
decoding), variable and coordinate names, units and every attribute are kept (``precip``
in ``mm``, ``time`` in ``days since 1800-1-1`` with its ``delta_t``), the coordinates keep
their order and convention (longitudes 0..360 wrapping through 0, latitudes north to south)
and the netCDF data model is the source's (NETCDF3 for PSL). Only the global ``history``
changes: a line naming the cut is put first, as NCO does. (``actual_range`` attributes are
copied as they are: PSL's hold the first and last coordinate values, not a range, and no rule
for recomputing them can be read from the files.)

Example (the new month of a GPCC Africa download, and the record the twin starts from)::

    cut(GPCC, "gpcc_2016-01.nc", months=("2016-01", "2016-01"))
    cut(GPCC, "gpcc_to_2015-12.nc", months=(None, "2015-12"), region=Box(-10, 10, 30, 50))
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

from twins.errors import DataError

__all__ = ["Box", "cut", "month_positions", "region_positions"]

log = logging.getLogger(__name__)

#: netCDF4-python data models -> the ``format`` xarray writes them with.
_FORMATS = {
    "NETCDF3_CLASSIC": "NETCDF3_CLASSIC",
    "NETCDF3_64BIT_OFFSET": "NETCDF3_64BIT",
    "NETCDF3_64BIT_DATA": "NETCDF4",
    "NETCDF4_CLASSIC": "NETCDF4_CLASSIC",
    "NETCDF4": "NETCDF4",
}
_LAT = ("lat", "latitude")
_LON = ("lon", "longitude")
_TIME = ("time", "valid_time")


@dataclass(frozen=True)
class Box:
    """A latitude-longitude box, degrees; cells whose centres lie inside are kept.

    Attributes:
        lat_min: Southern edge, degrees north (-90..90).
        lat_max: Northern edge, degrees north.
        lon_min: Western edge, degrees east, -180..180 or 0..360 (either convention).
        lon_max: Eastern edge; a box with ``lon_min > lon_max`` (after wrapping to
            -180..180) crosses the antimeridian.
    """

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float


def _dim(ds: xr.Dataset, names: tuple[str, ...], source: str, what: str) -> str:
    for name in names:
        if name in ds.dims:
            return name
    raise DataError(
        f"{source}: no {what} dimension (looked for {', '.join(repr(n) for n in names)}; "
        f"dims: {', '.join(str(d) for d in ds.dims)})"
    )


def _wrap(lon: np.ndarray | float) -> np.ndarray:
    return (np.asarray(lon, dtype=np.float64) + 180.0) % 360.0 - 180.0


def region_positions(
    lat: np.ndarray, lon: np.ndarray, box: Box, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Positions along the file's own latitude and longitude axes of the cells in ``box``.

    Args:
        lat: Latitudes as stored (any order), degrees north.
        lon: Longitudes as stored (-180..180 or 0..360, any order), degrees east.
        box: The region.
        source: The file, for messages.

    Returns:
        ``(lat positions, lon positions)``, increasing (the file's order is kept).

    Raises:
        DataError: The box is inverted in latitude or holds no cell.
    """
    if box.lat_min > box.lat_max:
        raise DataError(
            f"{source}: region latitudes {box.lat_min:g}..{box.lat_max:g} are inverted "
            "(variable 'lat'); expected lat_min <= lat_max"
        )
    lat_pos = np.flatnonzero((lat >= box.lat_min) & (lat <= box.lat_max))
    x, west, east = _wrap(lon), float(_wrap(box.lon_min)), float(_wrap(box.lon_max))
    inside = (x >= west) & (x <= east) if west <= east else (x >= west) | (x <= east)
    lon_pos = np.flatnonzero(inside)
    for name, pos, values, lo, hi in (
        ("lat", lat_pos, lat, box.lat_min, box.lat_max),
        ("lon", lon_pos, lon, box.lon_min, box.lon_max),
    ):
        if pos.size == 0:
            raise DataError(
                f"{source}: no cell of variable '{name}' ({values.size} values "
                f"{np.min(values):g}..{np.max(values):g}) lies in {lo:g}..{hi:g}"
            )
    return lat_pos, lon_pos


def month_positions(
    times: pd.DatetimeIndex, first: str | None, last: str | None, source: str
) -> np.ndarray:
    """Positions of the time steps in months ``first..last`` (``"YYYY-MM"``, None: open).

    Raises:
        DataError: No step falls in those months.
    """
    months = times.to_period("M")
    keep = np.ones(len(times), dtype=bool)
    if first is not None:
        keep &= months >= pd.Period(first, "M")
    if last is not None:
        keep &= months <= pd.Period(last, "M")
    pos = np.flatnonzero(keep)
    if pos.size == 0:
        span = f"{months[0]}..{months[-1]}" if len(months) else "none"
        raise DataError(
            f"{source}: no time step in months {first or '...'}..{last or '...'} "
            f"(variable 'time' covers {span})"
        )
    return pos


def cut(
    source: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    months: tuple[str | None, str | None] = (None, None),
    region: Box | None = None,
) -> Path:
    """Write the months ``months`` and cells ``region`` of ``source`` as the provider would.

    Args:
        source: A gridded netCDF file with a ``time`` (or ``valid_time``) axis.
        dest: The file to write (replaced if present).
        months: First and last month, ``"YYYY-MM"``, inclusive (None: from the start, to the
            end).
        region: The cells to keep (None: all).

    Returns:
        ``dest``.

    Raises:
        DataError: ``source`` is unreadable, lacks a time or grid axis, or the months or the
            region select nothing.
    """
    src, out = Path(source), Path(dest)
    try:
        with netCDF4.Dataset(src) as nc:
            fmt = _FORMATS.get(nc.data_model, "NETCDF4")
    except OSError as exc:
        raise DataError(f"{src}: not a readable netCDF file ({exc})") from None
    with (
        xr.open_dataset(src, decode_cf=False, mask_and_scale=False) as raw,
        xr.open_dataset(src, decode_times=True) as decoded,
    ):
        tdim = _dim(raw, _TIME, str(src), "time")
        sel: dict[str, Any] = {
            tdim: month_positions(pd.DatetimeIndex(decoded[tdim].values), *months, str(src))
        }
        if region is not None:
            ydim = _dim(raw, _LAT, str(src), "latitude")
            xdim = _dim(raw, _LON, str(src), "longitude")
            sel[ydim], sel[xdim] = region_positions(
                raw[ydim].values, raw[xdim].values, region, str(src)
            )
        piece = raw.isel(sel).load()
    line = (
        f"{pd.Timestamp.now('UTC'):%a %b %d %H:%M:%S %Y}: hydrology.realdata.cut {src.name} "
        f"months {months[0] or '...'}..{months[1] or '...'}"
        + ("" if region is None else f" region {region}")
    )
    previous = str(piece.attrs.get("history", "")).strip()
    piece.attrs["history"] = f"{line}\n{previous}" if previous else line
    encoding = {str(name): {"_FillValue": None} for name in piece.variables}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    piece.to_netcdf(out, format=fmt, encoding=encoding)
    log.info("cut %s: %s -> %s (%s)", src, dict(piece.sizes), out, fmt)
    return out
