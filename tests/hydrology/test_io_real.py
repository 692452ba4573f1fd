"""open_grids on real downloads, unedited: GPCC, ERA5 in the 2024+ and the legacy CDS layouts,
GRIB through cfgrib, and the refusal of ERA5 data that cannot give a monthly total."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology.gates import Gates, check_gates
from hydrology.io import open_grids
from hydrology.timeaxis import is_monthly, whole_months
from hydrology.units import to_units

DATA = Path(__file__).resolve().parents[2] / "data" / "hydrology"
GPCC = DATA / "gpcc_v2018_2.5deg_africa_monthly_1946-2016.nc"
VIETNAM = DATA / "era5_new_cds" / "vietnam_monthly"
AVGAD = VIETNAM / "data_stream-moda_stepType-avgad.nc"
AVGUA = VIETNAM / "data_stream-moda_stepType-avgua.nc"
INDIA = DATA / "era5_new_cds" / "india_5x5_monthly_instants"
LEGACY_NC = DATA / "era5_legacy" / "era5_1995-07-14T12.nc"
GRIB = DATA / "era5_legacy" / "era5-2mt-2019-03-uk.grib"


@pytest.fixture(scope="module")
def gpcc() -> xr.Dataset:
    return open_grids(GPCC)


def test_gpcc_opens_in_the_canonical_form(gpcc: xr.Dataset) -> None:
    raw = xr.open_dataset(GPCC)
    assert list(gpcc.data_vars) == ["tp"]
    tp = gpcc["tp"]
    assert tp.dims == ("time", "lat", "lon") and tp.shape == (841, 32, 34)
    assert tp.attrs["source_name"] == "precip" and tp.attrs["units"] == "mm"
    lat, lon = gpcc["lat"].values, gpcc["lon"].values
    assert np.all(np.diff(lat) > 0) and np.all(np.diff(lon) > 0)
    # stored 336.25..358.75 then 1.25..58.75 (wrapping through 0): now -23.75..58.75
    assert lon[0] == -23.75 and lon[-1] == 58.75 and np.all(np.abs(lon) <= 180)
    t = gpcc.indexes["time"]
    assert t[0] == pd.Timestamp("1946-01-01") and t[-1] == pd.Timestamp("2016-01-01")
    assert np.all(t.day == 1) and np.all(t.hour == 0)
    assert is_monthly(gpcc) and gpcc.attrs["time_step"] == "month"
    # the same numbers, moved: the cell at 1.25 S, 21.25 E, July 1990
    one = raw["precip"].sel(lat=-1.25, lon=21.25, time="1990-07-01").item()
    assert float(tp.sel(lat=-1.25, lon=21.25, time="1990-07-01")) == one
    assert int(np.isfinite(tp.values).all(axis=0).sum()) == 635  # land cells, as published


def test_gpcc_monthly_amount_is_a_daily_rate_at_use_and_passes_the_gates(
    gpcc: xr.Dataset,
) -> None:
    rate = to_units(gpcc["tp"], "mm/day")  # mm per month / days in that month
    # rtol: the reference divides in float32 (relative rounding 6e-8); 1e-6 leaves margin
    feb = gpcc["tp"].sel(time="1984-02-01")  # a leap February: 29 days
    np.testing.assert_allclose(
        rate.sel(time="1984-02-01").values, feb.values / 29.0, rtol=1e-6, equal_nan=True
    )
    check_gates(gpcc.load(), str(GPCC), Gates())  # the largest month, 536 mm, is ~17 mm/day
    assert whole_months(gpcc, str(GPCC))[:2] == ["1946-01", "1946-02"]
