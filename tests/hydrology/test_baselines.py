"""Baselines: persistence, climatology, overlap-aware analogues (no leakage); plots."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.figure import Figure

from hydrology import baselines as hb
from hydrology import indices as hi
from hydrology import metrics as hm
from hydrology import plots as hp
from hydrology.model_forecaster import esp_forecast

CAL = ("1981-01-01", "2010-12-31")


def monthly_pr(n_years: int = 30, ny: int = 3, nx: int = 4, seed: int = 0) -> xr.DataArray:
    """AR-free monthly precipitation rate (mm/d): independent seasonal gamma draws."""
    rng = np.random.default_rng(seed)
    t = pd.date_range("1981-01-01", periods=12 * n_years, freq="MS")
    seas = np.sin(2 * np.pi * t.month.values / 12)[:, None, None]
    rate = rng.gamma((2.0 + seas) * np.ones((t.size, ny, nx)), 1.5)
    rate[rng.random(rate.shape) < 0.03] = 0.0
    return xr.DataArray(
        rate,
        dims=("time", "lat", "lon"),
        coords={"time": t, "lat": np.arange(ny, dtype=float), "lon": np.arange(nx, dtype=float)},
        attrs={"units": "mm/d"},
    )


@pytest.fixture(scope="module")
def spi3():
    pr = monthly_pr()
    params = hi.fit_spi(pr, 3, *CAL)
    return pr, params, hi.spi(pr, params=params)


def test_persistence_and_climatology(spi3):
    _, _, s = spi3
    p = hb.persistence(s, 2)
    np.testing.assert_array_equal(p.values[5:], s.values[3:-2])
    assert np.isnan(p.values[:2]).all()
    c0 = hb.climatology(s)
    assert float(np.abs(c0).max()) == 0.0
    masked = s.where(s.lat > 0)  # a "sea" row
    assert np.isnan(hb.climatology(masked).values[:, 0]).all()
    cm = hb.climatology(s, calibration=("1981", "2010"))
    jan = s.sel(time=s.time.dt.month == 1).mean("time")
    np.testing.assert_allclose(cm.sel(time="1995-01-01").values, jan.values)


def test_analogue_reproduces_spi_with_own_transform(spi3):
    """Members use our own zero-inflated gamma -> Phi^-1; with the true months they must give
    xclim's SPI. Check via the transform helper on the observed window means."""
    pr, params, s = spi3
    mean3 = pr.rolling(time=3).mean().values
    month = pr.time.dt.month.values
    out = np.full_like(mean3, np.nan)
    for m in range(1, 13):
        p = params.sel(month=m)
        p0 = (p.number_of_zeros / p.number_of_notnull).values
        out[month == m] = hb.spi_from_window_mean(
            mean3[month == m], p.transpose("dparams", ...).values, p0
        )
    assert np.nanmax(np.abs(out - s.values)) < 1e-9


def test_analogue_does_not_leak(spi3):
    """Perturb every month after the issue month inside the target year: the forecast for
    that target must not move (the unknown months come only from other years)."""
    pr, params, _ = spi3
    lead, target = 2, pd.Timestamp("1995-06-01")
    f0 = hb.overlap_analogue(pr, params, window=3, lead=lead).sel(time=target)
    issue = target - pd.DateOffset(months=lead)
    bumped = pr.where(~((pr.time > issue) & (pr.time.dt.year == 1995)), pr * 5 + 3)
    f1 = hb.overlap_analogue(bumped, params, window=3, lead=lead).sel(time=target)
    np.testing.assert_array_equal(f0.values, f1.values)
    # ... while the observed (known) month does matter.
    known = pr.where(pr.time != issue, pr * 5 + 3)
    f2 = hb.overlap_analogue(known, params, window=3, lead=lead).sel(time=target)
    assert np.all(f2.values > f0.values)
    mem = hb.overlap_analogue(pr, params, window=3, lead=lead, return_members=True)
    assert mem.sizes["member"] == 30
    assert np.isnan(mem.sel(time=target, member=1995)).all()


def test_analogue_at_full_lead_is_loo_climatology(spi3):
    """At lead >= window nothing is observed: the forecast is the mean of the training
    years' SPI for that calendar month without the target year (a leave-one-out mean)."""
    pr, params, s = spi3
    f = hb.overlap_analogue(pr, params, window=3, lead=3)
    target = pd.Timestamp("1999-07-01")
    july = s.sel(time=(s.time.dt.month == 7) & (s.time.dt.year != 1999))
    # two float64 means of ~20 SPI values (|SPI| <= 3.09) in different orders: <= 20 u64 * 3
    # = 7e-15; 1e-9 keeps a wide margin and still catches a float32 stage (u32 * 3 = 2e-7)
    np.testing.assert_allclose(f.sel(time=target).values, july.mean("time").values, atol=1e-9)
    assert float(np.abs(f.sel(time=slice("1982", None)).mean())) < 0.05


def test_analogue_fills_a_missing_observed_month_from_the_analogue_years(spi3):
    """SPI-3 at lead 1 with the issue month missing (a gauge gap) is the lead-2 analogue
    issued a month earlier: the missing month is drawn with the unknown one; the twin's
    ESP (model_forecaster.esp_forecast) does the same. A missing window stays NaN."""
    pr, params, _ = spi3
    target = pd.Timestamp("1996-06-01")  # not January: the lead-2 block stays in its year
    issue = target - pd.DateOffset(months=1)
    gap = pr.where(pr.time != issue)
    f = hb.overlap_analogue(gap, params, window=3, lead=1).sel(time=target)
    ref = hb.overlap_analogue(pr, params, window=3, lead=2).sel(time=target)
    # the same float64 sums of three months added in another order: a few ulp of ~5 mm/d
    # through the gamma CDF and Phi^-1 (condition number O(10)): 1e-12 is a wide margin
    np.testing.assert_allclose(f.values, ref.values, rtol=0, atol=1e-12)
    assert np.isfinite(f.values).all()
    # the twin's ESP, fed the history with the gap and the training years (1981-2010)
    years = list(range(1981, 2011))
    train = pr.sel(time=slice("1981", "2010")).values.reshape(len(years), 12, -1)
    m = target.month - 1
    gamma = params.transpose("month", "dparams", ...).values.reshape(12, 3, -1)
    p0 = (params.number_of_zeros / params.number_of_notnull).values.reshape(12, -1)
    hist = gap.sel(time=slice(None, issue)).values.reshape(-1, train.shape[-1])[-3:]
    twin = esp_forecast(hist, issue, 1, 3, train, years, gamma, p0)
    # esp_forecast has no leave-one-out (its targets lie after the analogue years): the
    # target year 1996 is one more member; remove it from the mean to compare
    one = hb.overlap_analogue(gap, params, window=3, lead=1, return_members=True)
    full = one.sel(time=target).values.reshape(len(years), -1)
    with np.errstate(invalid="ignore"):
        own = hb.spi_from_window_mean(
            (hist[1] + train[years.index(1996), m - 1] + train[years.index(1996), m]) / 3,
            gamma[m],
            p0[m],
        )
    n = np.isfinite(full).sum(0)
    np.testing.assert_allclose((twin * (n + 1) - own) / n, np.nanmean(full, 0), atol=1e-12)
    assert np.isnan(hb.spi_from_window_mean(np.array([np.nan]), gamma[m][:, :1], p0[m][:1]))


def test_analogue_beats_persistence_at_lead_1(spi3):
    """On AR-free data persistence keeps 2 of 3 months (RMSE ~ sqrt(2/3) ~ 0.8); ESP keeps
    them and averages the unknown one (RMSE ~ sqrt(1/3) ~ 0.6)."""
    pr, params, s = spi3
    obs = s.sel(time=slice("1982", None))
    esp = hb.overlap_analogue(pr, params, window=3, lead=1).sel(time=obs.time)
    pers = hb.persistence(s, 1).sel(time=obs.time)
    r_esp = hm.summarize(hm.rmse(obs, esp))["median"]
    r_pers = hm.summarize(hm.rmse(obs, pers))["median"]
    r_clim = hm.summarize(hm.rmse(obs, hb.climatology(obs)))["median"]
    assert r_esp < 0.8 * r_pers and r_esp < 0.8 * r_clim
    assert 0.45 < r_esp < 0.75


def test_skill_and_drought_maps(spi3):
    _, _, s = spi3
    score = hm.nse(s, hb.persistence(s, 1))
    fig = hp.skill_map(score, "NSE persistence, lead 1", vmin=-1, vmax=1)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # map + colorbar
    one = s.isel(time=100).copy()
    one.values[0, :] = [-0.5, -1.2, -1.7, -2.5]
    fig2 = hp.drought_map(one)
    assert isinstance(fig2, Figure) and len(fig2.axes) == 2
    labels = [t.get_text() for t in fig2.axes[1].get_yticklabels()]
    assert labels[-1].startswith("extreme")
    fig2.canvas.draw()
