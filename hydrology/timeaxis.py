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

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from twins.errors import DataError

__all__ = [
    "calendar",
    "check_time",
    "is_standard",
    "month_label",
    "month_starts",
    "time_problem",
    "time_steps",
    "whole_months",
]

_DAY = 86400.0  # [s]


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
    """Months of a daily or sub-daily dataset; raise unless it covers whole calendar months.

    The steps must be regular (checked by :func:`check_time`), at most a day and divide a
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
    if index.size < 2:
        raise DataError(
            f"{source}: a single time step {index[0]} (variable 'time'); the twin ingests daily "
            "or sub-daily data",
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
