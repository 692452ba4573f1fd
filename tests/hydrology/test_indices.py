"""Drought indices: agreement with climate_indices and xclim's published values, updates."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology import indices as hi
from twins.errors import DataError

CANESM2 = Path(__file__).resolve().parents[2] / "data" / "hydrology" / "CanESM2_1950-2100.nc"


@pytest.fixture(autouse=True, scope="module")
def _quiet_climate_indices():
    """climate_indices logs every call at INFO through structlog and, on import, replaces the
    root logger's handlers and level: undo that and raise its own loggers to WARNING."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    import climate_indices.indices  # noqa: F401  (triggers its logging setup)

    root.handlers, root.level = handlers, level
    logging.getLogger("climate_indices").setLevel(logging.WARNING)
    yield


def synthetic(n_years: int = 30, ny: int = 4, nx: int = 5, seed: int = 0) -> xr.Dataset:
    """Monthly ERA5-like amounts: seasonal gamma precipitation (m), pev (m, negative), swvl1."""
    rng = np.random.default_rng(seed)
    t = pd.date_range("1981-01-01", periods=12 * n_years, freq="MS")
    seas = np.sin(2 * np.pi * t.month.values / 12)[:, None, None]
    ndays = t.days_in_month.values[:, None, None]
    shape = (t.size, ny, nx)
    rate = rng.gamma((2.0 + seas) * np.ones(shape), 1.5)  # mm/d
    rate[rng.random(shape) < 0.03] = 0.0  # some dry months: exercises p0
    pet = 2.5 + 1.5 * seas + 0.3 * rng.standard_normal(shape)  # mm/d
    sm = 0.3 + 0.05 * seas + 0.02 * rng.standard_normal(shape)
    dims = ("time", "lat", "lon")
    return xr.Dataset(
        {
            "tp": (dims, rate * ndays / 1000.0, {"units": "m"}),
            "pev": (dims, -pet * ndays / 1000.0, {"units": "m"}),
            "swvl1": (dims, sm, {"units": "m3 m-3"}),
        },
        coords={"time": t, "lat": np.arange(ny, dtype=float), "lon": np.arange(nx, dtype=float)},
    )


def climate_indices_spi(pr: xr.DataArray, window: int, y0: int, cal: tuple[int, int]):
    from climate_indices import compute, indices

    values = pr.transpose("time", ...).values
    flat = values.reshape(values.shape[0], -1)
    out = np.stack(
        [
            indices.spi(
                flat[:, i],
                window,
                indices.Distribution.gamma,
                y0,
                cal[0],
                cal[1],
                compute.Periodicity.monthly,
            )  # fmt: skip
            for i in range(flat.shape[1])
        ],
        axis=1,
    )
    return out.reshape(values.shape)


def test_monthly_rate_units_chain():
    ds = synthetic(n_years=2, ny=1, nx=2)
    pr_m = hi.monthly_precip_rate(ds.tp)
    assert pr_m.attrs["units"] == "mm d-1" and pr_m.dtype == np.float64
    # A monthly amount in m over a 31-day January is amount / 31 * 1000 mm/d. Rates are a
    # mean and a unit factor in float64: a few u64 (1e-16) apart, so rtol 1e-12.
    np.testing.assert_allclose(pr_m[0].values, ds.tp[0].values / 31 * 1000, rtol=1e-12)
    # The same amounts in mm (E-OBS) give the same rates.
    mm = (ds.tp * 1000).assign_attrs(units="mm")
    np.testing.assert_allclose(hi.monthly_precip_rate(mm).values, pr_m.values, rtol=1e-12)
    # Daily amounts (ERA5 daily tp in m) are averaged within months.
    t = pd.date_range("2000-01-01", "2000-02-29", freq="D")
    daily = xr.DataArray(
        np.r_[np.full(31, 0.002), np.full(29, 0.001)], dims="time", coords={"time": t}
    ).assign_attrs(units="m")
    np.testing.assert_allclose(hi.monthly_precip_rate(daily).values, [2.0, 1.0], rtol=1e-12)
    # Water balance: P - PET = tp + pev (ECMWF sign).
    wb = hi.monthly_water_balance(ds.tp, ds.pev)
    np.testing.assert_allclose(wb.values, pr_m.values + hi.monthly_precip_rate(ds.pev).values)
    with pytest.raises(DataError):
        hi.monthly_precip_rate(ds.tp.assign_attrs(units=None).drop_attrs())


def test_spi_matches_climate_indices():
    """Same estimator (Thom's gamma, loc 0), same p0, same clip: equal to rounding.

    Both sides run the same float64 formulas, so the differences are a few ulps amplified by
    the gamma CDF and Phi^-1 (measured <= 2e-13 here and in reference/hydrology.md); 1e-6
    leaves room for other BLAS/scipy builds while still catching any modelling difference
    (ML vs APP differs by ~1e-5..1e-3, a wrong p0 by >1e-2).
    """
    ds = synthetic()
    pr = hi.monthly_precip_rate(ds.tp)
    for window in (1, 3, 6, 12):
        ours = hi.spi(pr, window, cal_start="1981-01-01", cal_end="2010-12-31")
        ref = climate_indices_spi(pr, window, 1981, (1981, 2010))
        assert np.array_equal(np.isnan(ours.values), np.isnan(ref))
        assert np.nanmax(np.abs(ours.values - ref)) < 1e-6
        assert ours.attrs["clipping"] == hi.CLIPPING_POLICY
        assert np.nanmax(np.abs(ours.values)) <= hi.CLIP


def test_spi_on_real_canesm2():
    """Real CMIP5 data (data/hydrology copy): xclim's published SPI values and climate_indices.

    xclim's test suite pins SPI at Kugluktuk, calibration 1950-1980, months 2000-02..2000-10
    (every other month), values from climate_indices printed with 5-6 significant digits:
    tolerance 1e-5 covers that rounding.
    """
    ds = xr.open_dataset(CANESM2).sel(time=slice("1950", "2000"))
    pr = hi.monthly_precip_rate(ds.pr)  # kg m-2 s-1 flux -> mm/d
    published = {
        1: [1.31664, 1.45069, 1.94609, -3.09, 0.850681],
        12: [0.598209, 1.55976, 1.69309, 0.9964, 0.7028],
    }
    for window in (1, 3, 12):
        ours = hi.spi(pr, window, cal_start="1950-01-01", cal_end="1980-12-31")
        ref = climate_indices_spi(pr, window, 1950, (1950, 1980))
        assert np.nanmax(np.abs(ours.values - ref)) < 1e-6
        if window in published:
            got = ours.isel(location=1, time=slice(-11, -1, 2)).values
            np.testing.assert_allclose(got, published[window], rtol=0, atol=1e-5)


def test_spi_standard_normal_over_calibration():
    ds = synthetic()
    pr = hi.monthly_precip_rate(ds.tp)
    for window in (1, 3, 12):
        s = hi.spi(pr, window, cal_start="1981-01-01", cal_end="2010-12-31")
        v = s.values[np.isfinite(s.values)]
        # ~7000 correlated values; a Thom fit is not exact ML: 0.05 is ~4 standard errors.
        assert abs(v.mean()) < 0.05 and abs(v.std() - 1) < 0.05


def test_spei_sign_and_climate_indices():
    """SPEI: fisk ML (xclim) vs climate_indices' log-logistic (L-moments, like R SPEI).

    Different estimators of the same family, so not equal: measured median |diff| 0.02 and
    correlation 0.997 on this data.
    """
    from climate_indices import compute, indices

    ds = synthetic(ny=2, nx=2)
    wb = hi.monthly_water_balance(ds.tp, ds.pev)
    s = hi.spei(wb, 3, cal_start="1981-01-01", cal_end="2010-12-31")
    v = s.values[np.isfinite(s.values)]
    assert abs(v.mean()) < 0.1 and abs(v.std() - 1) < 0.1
    assert s.attrs["distribution"] == "fisk" and "3.09" in s.attrs["clipping"]
    pr = hi.monthly_precip_rate(ds.tp).values
    pet = -hi.monthly_precip_rate(ds.pev).values
    ref = indices.spei(
        pr, pet, 3, indices.Distribution.loglogistic, compute.Periodicity.monthly,
        1981, 1981, 2010, spatial_time_major=True,
    )  # fmt: skip
    ok = np.isfinite(ref) & np.isfinite(s.values)
    d = np.abs(s.values[ok] - ref[ok])
    assert np.median(d) < 0.05
    assert np.corrcoef(s.values[ok], ref[ok])[0, 1] > 0.99
    # Drier water balance -> lower SPEI: remove half the rain in the last year.
    params = hi.fit_spei(wb, 3, "1981-01-01", "2010-12-31")
    dry = ds.tp.where(ds.time.dt.year < 2010, ds.tp * 0.5).assign_attrs(units="m")
    s_dry = hi.spei(hi.monthly_water_balance(dry, ds.pev), params=params)
    last = s.time.dt.year == 2010
    assert float(s_dry.sel(time=last).mean()) < float(s.sel(time=last).mean()) - 0.5
    assert float(s_dry.sel(time=last).mean()) < 0


def test_ssmi_standardised_per_month():
    ds = synthetic()
    sm = hi.monthly_soil_moisture(ds.swvl1)
    z = hi.ssmi(sm, cal_start="1981-01-01", cal_end="2000-12-31", clip=np.inf)
    cal = z.sel(time=slice("1981", "2000")).groupby("time.month")
    # z = (x - mean) / std over these 20 values, in float64: their mean is 0 and their std 1
    # to <= 20 u64 * max|z| (< 5) = 1e-14
    np.testing.assert_allclose(cal.mean("time").values, 0, atol=1e-12)
    np.testing.assert_allclose(cal.std("time", ddof=1).values, 1, atol=1e-12)
    clipped = hi.ssmi((sm * 1.0).assign_attrs(sm.attrs), cal_start="1981", cal_end="2000")
    assert "3.09" in clipped.attrs["clipping"]


def test_update_equals_full_recompute(tmp_path):
    """Stored parameters + window-1 months of history reproduce the full series bit for bit.

    Each month's value depends only on its own window and the stored parameters, and the
    rolling mean of a window is computed from the same values either way, so equality is
    exact (no float tolerance needed).
    """
    ds = synthetic(n_years=25, ny=2, nx=2)
    di = hi.DroughtIndices(
        ["spi_1", "spi_3", "spi_12", "spei_3", "ssmi_1"], "1981-01-01", "2000-12-31"
    ).fit(ds)
    full = di.transform(ds)
    path = di.save(tmp_path / "params.nc")
    loaded = hi.DroughtIndices.load(path)
    assert loaded.names == di.names and loaded.history_months == 11
    new, hist = ds.isel(time=slice(-14, None)), ds.isel(time=slice(-14 - 11, -14))
    update = loaded.transform(new, history=hist)
    assert update.sizes["time"] == 14
    for name in di.names:
        np.testing.assert_array_equal(update[name].values, full[name].values[-14:])
    assert update.attrs["clipping"] == hi.CLIPPING_POLICY


def test_bad_inputs():
    ds = synthetic(n_years=3, ny=1, nx=1)
    pr = hi.monthly_precip_rate(ds.tp)
    params = hi.fit_spi(pr, 3, "1981-01-01", "1983-12-31")
    with pytest.raises(DataError):
        hi.spi(pr, 6, params=params)
    with pytest.raises(DataError):
        hi.fit_spi(pr, 3, "1950-01-01", "1951-12-31")
    with pytest.raises(DataError):
        hi.IndexSpec.parse("spx_3")
    with pytest.raises(DataError):
        hi.DroughtIndices(["spei_3"]).fit(ds.drop_vars("pev"))
