"""Daily and monthly water totals of canonical records, complete windows only.

A total sums the amount of every step that starts inside the window: on the canonical time
axis (:func:`hydrology.io.open_grids`) an ERA5 hourly accumulation is labelled at the start
of its hour (:func:`hydrology.layouts.interval_start`), so the steps labelled 00:00..23:00
of a day are that day's 24 hours, as ECMWF defines a daily total (the accumulations stamped
01:00 of that day to 00:00 of the next). A window missing any of its steps (a NaN, as the
last hour of a download that ends at 23:00, or a stamp that is not there) has no total:
NaN, never a guess from the steps it has.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from hydrology.timeaxis import is_monthly, time_steps
from hydrology.units import to_units
from twins.errors import DataError

__all__ = ["totals"]

_FREQS = {"D": "1D", "MS": "MS"}
_DAY = 86400.0


def totals(da: xr.DataArray, freq: str = "D") -> xr.DataArray:
    """Sum a water variable over days (``"D"``) or calendar months (``"MS"``), in mm.

    Args:
        da: Canonical water variable (``tp``, ``e``, ``pev``), dims ``(time, ...)``: an amount
            per step (``m``, ``mm``, ``kg m-2``), an amount per day (``m d-1``) or a flux,
            on regular steps that divide the window (hourly, daily) or on monthly steps
            (``freq="MS"`` only).
        freq: ``"D"`` for daily totals, ``"MS"`` for monthly totals.

    Returns:
        float64 totals in ``mm``, dims ``(time, ...)`` with ``time`` at the window starts;
        NaN where the window lacks a step or a value.

    Raises:
        DataError: An unknown ``freq``, no time axis, or steps that do not divide the window.
    """
    if freq not in _FREQS:
        raise DataError(f"variable '{da.name}': totals over {freq!r}; expected 'D' or 'MS'")
    if "time" not in da.dims or da.sizes["time"] == 0:
        raise DataError(f"variable '{da.name}': no time axis to sum over")
    index = da.indexes["time"]
    monthly = is_monthly(da)
    if monthly and freq == "D":
        raise DataError(f"variable '{da.name}': monthly steps have no daily totals")
    if monthly:
        per_step = to_units(da, "mm")  # per month, whatever the unit (rates x days in month)
        return per_step.astype(np.float64).resample(time="MS").sum(min_count=1)
    step = float(np.median(time_steps(index))) if index.size > 1 else _DAY
    if step > _DAY or abs(_DAY / step - round(_DAY / step)) > 1e-9:
        raise DataError(
            f"variable '{da.name}': steps of {pd.Timedelta(seconds=step)} do not divide a day"
        )
    per_step = to_units(da, "mm").astype(np.float64)
    resampled = per_step.resample(time=_FREQS[freq])
    summed = resampled.sum(skipna=True)
    count = per_step.notnull().resample(time=_FREQS[freq]).sum()
    starts = summed.indexes["time"]
    per_day = round(_DAY / step)
    if freq == "D":
        expected = np.full(starts.size, per_day)
    else:
        expected = np.asarray(starts.days_in_month) * per_day
    shape = [expected.size if d == "time" else 1 for d in summed.dims]
    full = count.transpose(*summed.dims).values == expected.reshape(shape)
    out = summed.where(full)
    out.attrs = {**dict(da.attrs), "units": "mm", "cell_methods": "time: sum"}
    out.name = da.name
    return out
