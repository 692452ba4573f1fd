"""monthly_mean against xarray's resample, the reference it replaces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology.aggregate import monthly_mean


def _reference(da: xr.DataArray) -> xr.DataArray:
    return da.astype("float64").resample(time="MS").mean()


def _daily(seed: int = 0, days: int = 800, shape: tuple[int, int] = (3, 4)) -> xr.DataArray:
    rng = np.random.default_rng(seed)
    t = pd.date_range("2001-01-01", periods=days, freq="D")
    v = rng.gamma(0.8, 3.0, (days, *shape)).astype(np.float32)
    return xr.DataArray(
        v,
        dims=("time", "lat", "lon"),
        coords={"time": t, "lat": np.arange(shape[0]) * 0.1, "lon": np.arange(shape[1]) * 0.1},
        attrs={"units": "mm/d"},
        name="pr",
    )


def test_equals_resample_with_sea_and_missing_days() -> None:
    da = _daily()
    vals = da.values.copy()
    vals[:, 0, 0] = np.nan  # a sea cell
    vals[5:40, 1, 2] = np.nan  # missing days, January fully missing from day 5 on
    vals[31:59, 2, 3] = np.nan  # February 2001 entirely missing in one cell
    da = da.copy(data=vals)
    got, ref = monthly_mean(da), _reference(da)
    assert got.dtype == np.float64
    assert got.dims == ref.dims and got.shape == ref.shape
    np.testing.assert_array_equal(got.time.values, ref.time.values)
    np.testing.assert_array_equal(np.isnan(got.values), np.isnan(ref.values))
    # float64 sums of float32 values in a different order: ~1 ulp of float64
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-12, equal_nan=True)
    assert np.isnan(got.values[1, 2, 3]) and np.isfinite(got.values[1, 1, 2])
    assert got.attrs == da.attrs and got.name == "pr"
    assert pd.infer_freq(pd.DatetimeIndex(got.time.values)) == "MS"


def test_time_not_first_partial_months_and_hourly_steps() -> None:
    t = pd.date_range("2003-01-17 06:00", periods=24 * 70, freq="h")
    da = xr.DataArray(
        np.random.default_rng(1).normal(size=(2, t.size)),
        dims=("cell", "time"),
        coords={"time": t, "cell": [10, 11]},
    )
    got, ref = monthly_mean(da), _reference(da)
    assert got.dims == ("cell", "time")
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-12)
    np.testing.assert_array_equal(got.cell.values, [10, 11])


def test_lazy_and_gappy_inputs_fall_back_to_resample() -> None:
    da = _daily(days=120)
    lazy = da.chunk({"time": 50})
    got = monthly_mean(lazy)
    assert got.chunks is not None  # stays lazy
    np.testing.assert_allclose(got.values, _reference(da).values, rtol=1e-12)
    gappy = xr.concat([da.isel(time=slice(0, 20)), da.isel(time=slice(80, 120))], "time")
    got = monthly_mean(gappy)
    ref = _reference(gappy)
    assert got.sizes["time"] == ref.sizes["time"] == 4  # Jan .. Apr, Feb all-NaN
    np.testing.assert_allclose(got.values, ref.values, rtol=1e-12, equal_nan=True)


def test_rejects_array_without_time() -> None:
    with pytest.raises(ValueError, match="'x' has no 'time'"):
        monthly_mean(xr.DataArray(np.ones(3), dims="cell", name="x"))
