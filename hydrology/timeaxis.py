"""Time axes of ingested grids: decoded dates, regular steps, whole months, any CF calendar.

The readers hand over a ``time`` index that is either a :class:`pandas.DatetimeIndex`
(standard/gregorian calendars) or an :class:`xarray.CFTimeIndex` (``noleap``, ``360_day``,
``all_leap``, ... as CMIP model output comes). Everything here works on both, so a model
calendar never reaches a ``pd.DatetimeIndex(...)`` conversion that cannot represent it.
Monthly results are relabelled to standard month starts (:func:`month_starts`): a monthly
mean is a calendar-free quantity, and the twin's history and the training cube use
``datetime64`` month starts.

Every problem is a :class:`twins.errors.DataError` whose one-line message names the source
and the variable ``'time'``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from twins.errors import DataError

logger = logging.getLogger(__name__)

__all__ = [
    "MONTHLY",
    "align_months",
    "calendar",
    "check_time",
    "declared_monthly",
    "is_monthly",
    "is_standard",
    "month_label",
    "month_starts",
    "time_problem",
    "time_steps",
    "whole_months",
]

_DAY = 86400.0  # [s]
#: ``ds.attrs["time_step"]`` of a record with one step per calendar month (set on ingest).
MONTHLY = "month"
# NOAA PSL's declaration of a monthly step on the time variable (GPCC, CPC, CMAP, ...)
_PSL_MONTH = ("0000-01-00 00:00:00", "00-01-0000")


def calendar(index: pd.Index) -> str:
    """CF calendar of a decoded time index: ``"standard"`` for a DatetimeIndex."""
    if isinstance(index, xr.CFTimeIndex):
        return str(index.calendar)
    return "standard"


def is_standard(ds: xr.Dataset) -> bool:
    """True when ``ds`` has no time axis or a numpy ``datetime64`` one."""
    return "time" not in ds.indexes or isinstance(ds.indexes["time"], pd.DatetimeIndex)


def month_label(t: Any) -> str:
    """``"YYYY-MM"`` of a pandas/numpy or cftime date."""
    if isinstance(t, np.datetime64):
        t = pd.Timestamp(t)
    return f"{int(t.year):04d}-{int(t.month):02d}"


def time_steps(index: pd.Index) -> np.ndarray:
    """Differences of a (pandas or cftime) time index, shape ``(n - 1,)``, in seconds."""
    if isinstance(index, pd.DatetimeIndex):
        return np.diff(index.values).astype("timedelta64[ns]").astype(np.float64) / 1e9
    v = np.asarray(index)
    return np.array([(b - a).total_seconds() for a, b in zip(v[:-1], v[1:], strict=True)])


def _decoded(index: pd.Index, source: str) -> None:
    """Raise unless ``index`` holds dates (numbers mean the file's time has no CF units)."""
    if isinstance(index, pd.DatetimeIndex | xr.CFTimeIndex):
        return
    values = np.asarray(index)
    what = f"{values[0]}..{values[-1]}" if values.size else "no values"
    raise DataError(
        f"{source}: variable 'time' is not decoded as dates ({values.dtype} values {what}): "
        "it has no CF units attribute, or one that cannot be read",
        hint="give time CF units such as 'days since 2000-01-01' (and a calendar)",
    )


def time_problem(index: pd.Index) -> tuple[str, int, str] | None:
    """First problem of a decoded time axis as ``(message, position, hint)``, or None.

    Checks duplicates, decreasing steps and gaps; the step is inferred (fixed steps such as
    daily, or calendar months in any calendar).
    """
    if index.size < 2:
        return None
    steps = time_steps(index)
    if np.any(steps == 0):
        k = int(np.argmax(steps == 0))
        return f"duplicated time {index[k + 1]}", k, "Remove the duplicated steps."
    if np.any(steps < 0):
        k = int(np.argmax(steps < 0))
        return (
            f"time is not increasing at {index[k]} -> {index[k + 1]}",
            k,
            "Sort the file by time.",
        )
    step = float(np.median(steps))
    if 28 * _DAY <= step <= 31 * _DAY:  # calendar months (30 days in 360_day)
        months = np.asarray(index.year) * 12 + np.asarray(index.month)
        bad = np.diff(months) != 1
        what = "monthly"
    else:
        bad = ~np.isclose(steps, step)
        what = f"{step / _DAY:g}-day" if step >= _DAY else f"{step / 3600:g}-hour"
    if np.any(bad):
        k = int(np.argmax(bad))
        return (
            f"gap in time between {index[k]} and {index[k + 1]} ({what} steps)",
            k,
            "Fill or remove the missing steps; indices need a complete time axis.",
        )
    return None


def _monthly_steps(index: pd.Index) -> bool:
    """At least two steps, their median 28..31 days (calendar months in any calendar)."""
    if index.size < 2:
        return False
    step = float(np.median(time_steps(index)))
    return 28 * _DAY <= step <= 31 * _DAY


def declared_monthly(ds: xr.Dataset | xr.DataArray) -> bool:
    """True when the record declares one step per calendar month, whatever its length.

    Declarations read, in order: ``attrs["time_step"] == "month"`` of the dataset or of its
    ``time`` coordinate (set by :func:`align_months`, kept when a month is cut from an opened
    record and written), NOAA PSL's ``delta_t``/``avg_period`` of a month on ``time`` (GPCC,
    CPC, CMAP files), and CF time bounds 28..31 days long.
    """
    if ds.attrs.get("time_step") == MONTHLY:
        return True
    if "time" not in ds.coords:
        return False
    t = ds["time"].attrs
    if t.get("time_step") == MONTHLY or t.get("delta_t") in _PSL_MONTH:
        return True
    if t.get("avg_period") in _PSL_MONTH:
        return True
    bounds = t.get("bounds")
    if isinstance(ds, xr.Dataset) and isinstance(bounds, str) and bounds in ds.variables:
        b = ds[bounds]
        if b.ndim == 2 and b.shape[1] == 2 and b.shape[0] > 0:
            v = np.asarray(b.values)
            try:
                span = (v[0, 1] - v[0, 0]) / np.timedelta64(1, "s")
            except TypeError:  # cftime dates: differences are datetime.timedelta
                span = (v[0, 1] - v[0, 0]).total_seconds()
            return bool(28 * _DAY <= float(span) <= 31 * _DAY)
    return False


def is_monthly(ds: xr.Dataset | xr.DataArray) -> bool:
    """True when ``ds`` has one time step per calendar month.

    Inferred from the steps (median 28..31 days) when there are two or more, else from a
    declaration (:func:`declared_monthly`). Monthly records such as GPCC or ERA5 monthly means
    are recognised this way downstream; :func:`hydrology.io.open_grids` also stamps them at
    month starts and sets ``ds.attrs["time_step"] = "month"``.
    """
    if "time" not in ds.dims:
        return False
    index = ds.indexes["time"]
    if not isinstance(index, pd.DatetimeIndex | xr.CFTimeIndex):
        return False
    if index.size >= 2:
        return _monthly_steps(index)
    return declared_monthly(ds)


def _month_start(t: Any) -> Any:
    return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def align_months(ds: xr.Dataset, source: str) -> xr.Dataset:
    """Stamp a monthly record at month starts and mark it ``time_step = "month"``.

    ERA5 monthly means come stamped at 00:00 or 06:00 of the 1st depending on the variable
    (the two stepType files of one CDS request), other products mid-month or at the end;
    one stamp per month, at the start of its month, lets variables and files line up. The
    calendar is kept (a ``noleap`` record stays ``noleap``). Records that are not monthly are
    returned unchanged.

    Args:
        ds: Dataset with a decoded ``time`` dimension (pandas or cftime), or none.
        source: File name for the messages.

    Returns:
        ``ds`` relabelled, with ``attrs["time_step"] = "month"`` on the dataset and on its
        ``time`` coordinate (so a DataArray or a month cut from it still says so), or ``ds``
        itself.

    Raises:
        DataError: Two stamps in one calendar month of a monthly record.
    """
    if not is_monthly(ds):
        return ds
    index = ds.indexes["time"]
    keys = np.asarray(index.year) * 12 + np.asarray(index.month)
    dup = np.flatnonzero(np.diff(keys) == 0)
    if dup.size:
        k = int(dup[0])
        raise DataError(
            f"{source}: two time steps in {month_label(index[k])} ({index[k]} and "
            f"{index[k + 1]}) of a monthly record (variable 'time')",
            hint="keep one value per month",
        )
    if isinstance(index, pd.DatetimeIndex):
        starts: pd.Index = index.to_period("M").to_timestamp().as_unit(index.unit)
    else:
        starts = xr.CFTimeIndex([_month_start(t) for t in index], name="time")
    if not starts.equals(index):
        moved = int(np.sum(np.asarray(starts != index)))
        logger.info("%s: %d monthly stamps moved to their month starts", source, moved)
        ds = ds.assign_coords(time=ds["time"].copy(data=np.asarray(starts)))
    ds = ds.copy()
    ds.attrs["time_step"] = MONTHLY
    ds["time"].attrs["time_step"] = MONTHLY  # travels with every variable cut from ds
    return ds


def check_time(ds: xr.Dataset, source: str) -> None:
    """Raise unless ``ds``'s time axis (if any) is decoded, increasing and without gaps."""
    if "time" not in ds.dims:
        return
    index = ds.indexes["time"]
    _decoded(index, source)
    problem = time_problem(index)
    if problem is not None:
        msg, _, hint = problem
        raise DataError(f"{source}: {msg} (variable 'time')", hint=hint)


def whole_months(ds: xr.Dataset, source: str) -> list[str]:
    """Months of a dataset; raise unless it covers whole calendar months.

    A monthly record (:func:`is_monthly`: one step per calendar month, or one step declared
    monthly) covers its months by definition; its months must be consecutive. Otherwise the
    steps must be regular (checked by :func:`check_time`), at most a day and divide a
    day. The first stamp may lie anywhere inside the first step of its month (daily means
    stamped at 12:00 are whole days), and every month must hold ``days_in_month x
    steps_per_day`` steps of its own calendar (28 in a ``noleap`` February, 30 in every
    ``360_day`` month).

    Args:
        ds: Dataset with a decoded ``time`` dimension (pandas or cftime).
        source: File name(s) for the error messages.

    Returns:
        The months ``"YYYY-MM"``, in order.

    Raises:
        DataError: No time axis, a single step, steps longer than a day or not dividing a
            day, or months that are not complete.
    """
    if "time" not in ds.dims or ds.sizes["time"] == 0:
        raise DataError(f"{source}: no time steps (variable 'time')")
    index = ds.indexes["time"]
    _decoded(index, source)
    hint = "give the daily fields of the new months"
    if is_monthly(ds):
        return _months_of_monthly(index, source)
    if index.size < 2:
        raise DataError(
            f"{source}: a single time step {index[0]} (variable 'time'); the twin ingests daily "
            "or sub-daily data, or monthly data whose time declares its step (time bounds, "
            "delta_t, or the attribute time_step='month')",
            hint=hint,
        )
    step = float(time_steps(index[:2])[0])
    if step > _DAY:
        raise DataError(
            f"{source}: time steps of {pd.Timedelta(seconds=step)} (variable 'time'); the twin "
            "ingests daily or sub-daily data",
            hint=hint,
        )
    per_day = _DAY / step
    if abs(per_day - round(per_day)) > 1e-9:
        raise DataError(
            f"{source}: time steps of {pd.Timedelta(seconds=step)} do not divide a day "
            "(variable 'time'); the twin ingests daily or sub-daily data",
            hint=hint,
        )
    keys = np.asarray(index.year) * 12 + np.asarray(index.month) - 1
    labels = [f"{k // 12:04d}-{k % 12 + 1:02d}" for k in np.unique(keys)]
    first = index[0]
    start = first.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    offset = (first - start).total_seconds()
    months_text = f"months {labels[0]}..{labels[-1]}"
    if offset >= step:
        raise DataError(
            f"{source}: data from {index[0]} to {index[-1]} do not cover whole months "
            f"(variable 'time', {months_text}: the first step starts {offset / 3600:g} h into "
            f"{labels[0]})",
            hint="give every day of each new month",
        )
    uniq, first_pos, counts = np.unique(keys, return_index=True, return_counts=True)
    days = np.asarray(index.days_in_month)[first_pos]
    for label, have, ndays in zip(labels, counts, days, strict=True):
        want = int(ndays) * round(per_day)
        if int(have) != want:
            raise DataError(
                f"{source}: data from {index[0]} to {index[-1]} do not cover whole months "
                f"(variable 'time', {months_text}: {label} has {int(have)} of {want} steps)",
                hint="give every day of each new month",
            )
    if uniq.size > 1 and np.any(np.diff(uniq) != 1):
        raise DataError(f"{source}: months are not consecutive (variable 'time', {months_text})")
    return labels


def _months_of_monthly(index: pd.Index, source: str) -> list[str]:
    """Months of a monthly record: one step per month, consecutive."""
    keys = np.asarray(index.year) * 12 + np.asarray(index.month)
    labels = [month_label(t) for t in index]
    bad = np.flatnonzero(np.diff(keys) != 1)
    if bad.size:
        k = int(bad[0])
        raise DataError(
            f"{source}: months are not consecutive (variable 'time', monthly steps "
            f"{labels[k]} -> {labels[k + 1]})",
            hint="give one value for every month",
        )
    return labels


def month_starts(ds: xr.Dataset) -> xr.Dataset:
    """Relabel a monthly dataset (one step per month, any calendar or stamp) to month starts.

    Args:
        ds: Dataset whose ``time`` holds one date per month (e.g. a ``resample(time="MS")``
            result on a ``noleap`` axis, or monthly means stamped mid-month).

    Returns:
        ``ds`` with ``time`` as ``datetime64`` month starts of the standard calendar (a
        monthly mean does not depend on the calendar that counted its days).
    """
    if "time" not in ds.indexes:
        return ds
    index = ds.indexes["time"]
    labels = [f"{int(t.year):04d}-{int(t.month):02d}-01" for t in index]
    return ds.assign_coords(time=pd.DatetimeIndex(np.array(labels, dtype="datetime64[s]")))
