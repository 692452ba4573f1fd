"""PET derived from temperature (hydrology.pet) and SPEI on a record without ``pev``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology.dataset import DEFAULT_SPLITS, build_cube
from hydrology.forecast import monthly_inputs
from hydrology.pet import monthly_pet, pet_source
from hydrology.synthetic import generate
from twins.errors import ConfigError, DataError


def _grid(values: np.ndarray, times: pd.DatetimeIndex, lat: float = 0.0) -> xr.DataArray:
    return xr.DataArray(
        values.reshape(-1, 1, 1),
        dims=("time", "lat", "lon"),
        coords={
            "time": times,
            "lat": ("lat", [lat], {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": [10.0],
        },
        attrs={"units": "K"},
    )


def test_thornthwaite_at_the_equator_is_the_closed_form() -> None:
    """Constant 20 degC at the equator (12-h days all year): Thornthwaite (1948) gives
    16 (10 T / I)^a mm per month, I = 12 (T / 5)^1.514, a cubic in I (xclim's coefficients),
    the same total in every month (xclim's convention), so the rate is that over its days."""
    times = pd.date_range("2001-01-01", periods=24, freq="MS")
    ds = xr.Dataset({"t2m": _grid(np.full(24, 293.15), times)})
    got = monthly_pet(ds, "thornthwaite").values.ravel()
    heat = 12 * (20 / 5) ** 1.514
    a = 6.75e-7 * heat**3 - 7.71e-5 * heat**2 + 0.01791 * heat + 0.49239
    per_month = 16 * (10 * 20 / heat) ** a  # mm per month
    # the same float64 formula evaluated by xclim (day length arccos(0) = pi/2 exactly at
    # the equator) and divided by the days of the month: a few ulp
    np.testing.assert_allclose(got * times.days_in_month.values, per_month, rtol=1e-12)
    cold = xr.Dataset({"t2m": _grid(np.full(24, 263.15), times)})  # -10 degC: no PET
    assert np.all(monthly_pet(cold, "thornthwaite").values == 0)


def _cycle(years: int, lat: float = 45.0) -> xr.Dataset:
    """Monthly t2m repeating one annual cycle (-5 .. 25 degC) every year, at ``lat``."""
    times = pd.date_range("2001-01-01", periods=12 * years, freq="MS")
    c = 273.15 + 10.0 - 15.0 * np.cos(2 * np.pi * (times.month.values - 1) / 12)
    return xr.Dataset({"t2m": _grid(c, times, lat)})


def test_trailing_heat_index_equals_the_calendar_one_in_a_repeating_climate() -> None:
    """A twin's new months take the heat index of the 12 months ending with each: where
    every year repeats one annual cycle those 12 months hold the calendar year's values,
    so each month's PET equals the calendar computation of the whole record (the same
    float64 formula on the same numbers: a few ulp)."""
    ds = _cycle(3)
    whole = monthly_pet(ds, "thornthwaite")
    for start in (14, 17, 23, 29):  # 2002-03, 2002-06, 2002-12, 2003-06: and 3 months on
        new = ds.isel(time=slice(start, start + 3))
        before = ds["t2m"].isel(time=slice(0, start))
        got = monthly_pet(new, "thornthwaite", tas_before=before)
        np.testing.assert_allclose(got.values, whole.isel(time=slice(start, start + 3)).values,
                                   rtol=1e-12)  # fmt: skip
    # a December's 12 months are its calendar year whatever the climate does
    rng = np.random.default_rng(3)
    noisy = ds.copy()
    noisy["t2m"] = ds["t2m"] + rng.normal(0, 2, ds["t2m"].shape)
    dec = monthly_pet(noisy.isel(time=[23]), "thornthwaite", noisy["t2m"].isel(time=slice(0, 23)))
    np.testing.assert_allclose(dec.values, monthly_pet(noisy, "thornthwaite").values[[23]],
                               rtol=1e-12)  # fmt: skip


def test_trailing_heat_index_needs_the_eleven_months_before() -> None:
    ds = _cycle(2)
    with pytest.raises(DataError) as err:
        monthly_pet(ds.isel(time=[20]), "thornthwaite", ds["t2m"].isel(time=slice(12, 20)))
    assert str(err.value) == (
        "Thornthwaite PET of 2002-09 needs monthly temperature 't2m' of the 12 months "
        "2001-10..2002-09; 9 of them are available"
    )


def test_hargreaves_scales_with_the_mean_temperature() -> None:
    """Hargreaves (1985): PET = 0.0023 Ra (T + 17.8) sqrt(Tmax - Tmin); with the same daily
    range and radiation, two records differing only in T give PETs in the ratio of
    T + 17.8."""
    times = pd.date_range("2001-01-01", periods=365, freq="D")

    def pet(t_c: float) -> np.ndarray:
        ds = xr.Dataset(
            {
                "mn2t": _grid(np.full(365, 273.15 + t_c - 5), times, 30.0),
                "mx2t": _grid(np.full(365, 273.15 + t_c + 5), times, 30.0),
            }
        )
        assert pet_source(ds, "auto") == "hargreaves"
        return monthly_pet(ds, "hargreaves").values.ravel()

    warm, mild = pet(25.0), pet(5.0)
    assert np.all(warm > 0)
    # each monthly mean is a sum of the same radiation terms times a constant factor:
    # the ratio holds to float64 rounding of ~31-term sums
    np.testing.assert_allclose(warm / mild, (25 + 17.8) / (5 + 17.8), rtol=1e-12)


def test_pet_source_picks_what_the_record_holds() -> None:
    times = pd.date_range("2001-01-01", periods=24, freq="MS")
    t = _grid(np.full(24, 290.0), times)
    monthly = xr.Dataset({"t2m": t, "mn2t": t - 5, "mx2t": t + 5})
    assert pet_source(monthly, "auto") == "thornthwaite"  # extremes, but monthly
    assert pet_source(monthly, "hargreaves") is None
    assert pet_source(monthly.assign(pev=t * 0), "auto") == "pev"
    assert pet_source(monthly[["mn2t", "mx2t"]], "thornthwaite") == "thornthwaite"
    assert pet_source(xr.Dataset({"tp": t}), "auto") is None


@pytest.fixture(scope="module")
def no_pev() -> xr.Dataset:
    # 2 x 2 land cells: SPEI's log-logistic ML fit (scipy) costs ~0.1 s per cell and month
    return generate("tiny").drop_vars("pev").isel(lat=slice(7, 9), lon=slice(7, 9))


def test_spei_from_temperature_when_pev_is_absent(no_pev: xr.Dataset) -> None:
    cube = build_cube(
        no_pev, DEFAULT_SPLITS["tiny"], ["spi_3", "spei_3"], pet="auto", require_val_drought=False
    )
    assert cube.meta["pet"] == "thornthwaite"
    assert cube.meta["inputs"] == ["pr", "wb", "sm", "t2m"]
    monthly = monthly_inputs(no_pev, "thornthwaite")
    wb = monthly["wb"]
    np.testing.assert_array_equal(
        wb.values, (monthly["pr"] - monthly_pet(no_pev, "thornthwaite")).values
    )
    # SPEI-3 is a per-calendar-month CDF transform of the 3-month water balance: over the
    # calibration months it ranks every cell's months exactly as the water balance does
    a, b = cube.split_range("train")
    spei = cube.obs[:, a + 2 : b + 1, 1]  # (cell, month); the first two lack a full window
    assert np.isfinite(spei).all()
    wb3 = wb.rolling(time=3).mean().values.reshape(wb.sizes["time"], -1)[a + 2 : b + 1]
    wb3 = wb3[:, cube.cells].T
    cal_months = cube.times[a + 2 : b + 1].month
    for c in range(cube.cells.size):
        for m in range(1, 13):
            sel = cal_months == m
            order = np.argsort(wb3[c, sel])
            assert np.all(np.diff(spei[c, sel][order]) >= 0), (c, m)
    # given pev only: the target is refused, naming what is missing
    with pytest.raises(ConfigError, match=r"'spei_3' needs potential evaporation 'pev'"):
        build_cube(no_pev, DEFAULT_SPLITS["tiny"], ["spei_3"], pet="pev", source="tiny.nc")
