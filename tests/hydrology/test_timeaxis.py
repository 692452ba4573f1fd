"""timeaxis.whole_months: the months of a daily record, and its one-line refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology.timeaxis import whole_months
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
