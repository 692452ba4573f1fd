"""timeaxis.whole_months: the months of a daily record, and its one-line refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology.timeaxis import align_months, is_monthly, whole_months
from twins.errors import DataError


def _record(times: pd.Index | xr.CFTimeIndex) -> xr.Dataset:
    """One-cell record on ``times``: ``tp`` of shape ``(time,)``."""
    return xr.Dataset({"tp": ("time", np.zeros(len(times)))}, coords={"time": times})


def test_whole_months_of_daily_noon_stamps_and_model_calendars() -> None:
    noon = pd.date_range("2001-01-01T12:00", "2001-03-31T12:00", freq="D")
    assert whole_months(_record(noon), "a.nc") == ["2001-01", "2001-02", "2001-03"]
    hourly = pd.date_range("2004-02-01", "2004-02-29T23:00", freq="h")  # leap February
    assert whole_months(_record(hourly), "h.nc") == ["2004-02"]
    noleap = xr.date_range("2004-02-01", "2004-02-28", freq="D", calendar="noleap")
    assert whole_months(_record(noleap), "n.nc") == ["2004-02"]
    d360 = xr.date_range("2004-02-01", "2004-03-30", freq="D", calendar="360_day")
    assert whole_months(_record(d360), "m.nc") == ["2004-02", "2004-03"]


@pytest.mark.parametrize(
    ("times", "match"),
    [
        (pd.DatetimeIndex([]), r"x\.nc: no time steps \(variable 'time'\)"),
        (
            pd.DatetimeIndex(["2001-01-01"]),
            r"x\.nc: a single time step 2001-01-01 00:00:00 \(variable 'time'\)",
        ),
        (
            pd.date_range("2001-01-01", periods=60, freq="2D"),
            r"x\.nc: time steps of 2 days 00:00:00 \(variable 'time'\)",
        ),
        (
            pd.date_range("2001-01-01", "2001-01-31T14:00", freq="7h"),
            r"x\.nc: time steps of 0 days 07:00:00 do not divide a day \(variable 'time'\)",
        ),
        (
            pd.date_range("2001-01-02", "2001-02-28", freq="D"),
            r"x\.nc: .* do not cover whole months \(variable 'time', months 2001-01\.\.2001-02: "
            r"the first step starts 24 h into 2001-01\)",
        ),
        (
            pd.date_range("2001-01-01", "2001-02-27", freq="D"),
            r"x\.nc: .* \(variable 'time', months 2001-01\.\.2001-02: "
            r"2001-02 has 27 of 28 steps\)",
        ),
        (
            pd.date_range("2001-01-01", "2001-01-31", freq="D").append(
                pd.date_range("2001-03-01", "2001-03-31", freq="D")
            ),
            r"x\.nc: months are not consecutive \(variable 'time', months 2001-01\.\.2001-03\)",
        ),
    ],
    ids=["empty", "single-step", "two-day", "seven-hour", "late-start", "short-month", "gap"],
)
def test_whole_months_refusals_name_file_variable_and_value(times: pd.Index, match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        whole_months(_record(times), "x.nc")
    assert "\n" not in str(info.value)


def test_monthly_records_are_stamped_at_month_starts() -> None:
    """ERA5 monthly means stamped 06:00 (avgad) or 00:00 (avgua), other products mid-month:
    one stamp per month, at its start; a noleap record keeps its calendar."""
    six = pd.date_range("2005-01-01T06:00", periods=4, freq="MS") + pd.Timedelta(hours=6)
    out = align_months(_record(six), "a.nc")
    assert list(out.indexes["time"]) == list(pd.date_range("2005-01-01", periods=4, freq="MS"))
    assert out.attrs["time_step"] == "month" and out["time"].attrs["time_step"] == "month"
    mid = xr.date_range("2001-01-16", periods=3, freq="MS", calendar="noleap") + pd.Timedelta(
        days=15
    )
    got = align_months(_record(mid), "n.nc").indexes["time"]
    assert isinstance(got, xr.CFTimeIndex) and got.calendar == "noleap"
    assert [(t.month, t.day) for t in got] == [(2, 1), (3, 1), (4, 1)]
    daily = _record(pd.date_range("2001-01-01", periods=40, freq="D"))
    assert align_months(daily, "d.nc") is daily and not is_monthly(daily)
    twice = pd.DatetimeIndex(["2001-01-01", "2001-01-31", "2001-03-01", "2001-04-01"])
    with pytest.raises(DataError, match=r"t\.nc: two time steps in 2001-01 \(2001-01-01 "):
        align_months(_record(twice), "t.nc")


def test_monthly_steps_declared_or_inferred() -> None:
    one = _record(pd.DatetimeIndex(["2016-01-01"]))
    assert not is_monthly(one)  # one step, nothing says how long it lasts
    psl = one.copy()
    psl["time"].attrs["delta_t"] = "0000-01-00 00:00:00"  # NOAA PSL (GPCC, CPC, CMAP)
    assert is_monthly(psl) and whole_months(psl, "p.nc") == ["2016-01"]
    bounds = one.assign(
        time_bnds=(("time", "nv"), np.array([["2016-01-01", "2016-02-01"]], "datetime64[ns]"))
    )
    bounds["time"].attrs["bounds"] = "time_bnds"
    assert is_monthly(bounds)
    marked = one.assign_attrs(time_step="month")
    assert is_monthly(marked)
    months = _record(pd.date_range("2001-01-01", periods=6, freq="MS"))
    assert is_monthly(months) and whole_months(months, "m.nc")[-1] == "2001-06"
    gap = _record(pd.DatetimeIndex(["2001-01-01", "2001-02-01", "2001-04-01", "2001-05-01"]))
    with pytest.raises(
        DataError,
        match=r"g\.nc: months are not consecutive \(variable 'time', "
        r"monthly steps 2001-02 -> 2001-04\)",
    ):
        whole_months(gap, "g.nc")
