"""Per-cell skill scores against hand-computed values; NaN cells; the tidy skill table."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from hydrology import metrics as hm


def test_nse_perfect_and_mean_forecast():
    rng = np.random.default_rng(0)
    obs = rng.standard_normal((50, 3, 4))
    np.testing.assert_allclose(hm.nse(obs, obs), 1.0)
    # 1 - SSE/SST with SSE == SST up to float64 summation of 50 terms: <= 50 u64 = 6e-15.
    # (Closed-form values below use pytest.approx's rel 1e-6, far above a few u64.)
    np.testing.assert_allclose(
        hm.nse(obs, np.broadcast_to(obs.mean(0), obs.shape)), 0.0, atol=1e-12
    )
    # Hand value: obs [1, 2, 3], sim [1, 2, 4]: 1 - 1 / 2.
    assert hm.nse(np.array([1.0, 2, 3]), np.array([1.0, 2, 4])) == pytest.approx(0.5)


def test_kge_variants_and_rmse():
    obs = np.array([1.0, 2.0, 3.0, 4.0])
    assert hm.kge(obs, obs) == pytest.approx(1.0)
    assert hm.kge_nb(obs, obs) == pytest.approx(1.0)
    # sim = 2 obs: r = 1, alpha = 2, beta = 2 -> KGE = 1 - sqrt(2).
    assert hm.kge(obs, 2 * obs) == pytest.approx(1 - np.sqrt(2))
    # sim = obs + 1: r = 1, alpha = 1, beta = 1.4, bias/sigma_o = 1 / sqrt(1.25).
    assert hm.kge(obs, obs + 1) == pytest.approx(1 - 0.4)
    assert hm.kge_nb(obs, obs + 1) == pytest.approx(1 - 1 / np.sqrt(1.25))
    # Constant forecast: r := 0, alpha = 0.
    assert hm.kge_nb(obs, np.full(4, obs.mean())) == pytest.approx(1 - np.sqrt(2))
    # Zero-mean index: KGE-2009's ratio explodes, KGE_nb does not.
    z = np.array([-1.0, 1.0, -0.5, 0.5001])
    assert abs(hm.kge(z, z + 0.1)) > 100
    assert hm.kge_nb(z, z + 0.1) > 0.8
    assert hm.rmse(obs, obs + 2) == pytest.approx(2.0)


def test_pod_far_csi_contingency():
    # Events are index < -1. hits 2, misses 1, false alarms 1, correct negatives 2.
    obs = np.array([-2.0, -1.5, -1.2, 0.0, 0.5, 1.0])
    pred = np.array([-1.6, -1.1, 0.0, -1.3, 0.2, 0.8])
    h, m, f = hm.contingency(obs, pred, -1.0)
    assert (int(h), int(m), int(f)) == (2, 1, 1)
    s = hm.pod_far_csi(obs, pred, -1.0)
    assert float(s["pod"]) == pytest.approx(2 / 3)
    assert float(s["far"]) == pytest.approx(1 / 3)
    assert float(s["csi"]) == pytest.approx(2 / 4)
    # At -1.5: one hit (-2 / -1.6); obs -1.5 is not < -1.5, so no miss.
    s15 = hm.pod_far_csi(obs, pred, -1.5, pooled=True)
    assert s15 == {"pod": 1.0, "far": 0.0, "csi": 1.0}
    # Pooled over two cells = the table summed.
    two = np.stack([obs, obs], axis=1), np.stack([pred, np.zeros(6)], axis=1)
    pooled = hm.pod_far_csi(*two, -1.0, pooled=True)
    assert pooled["pod"] == pytest.approx(2 / 6) and pooled["far"] == pytest.approx(1 / 3)
    # No events anywhere: scores undefined, not 0.
    assert np.isnan(hm.pod_far_csi(np.zeros(4), np.zeros(4), -1.0)["csi"])


def test_nan_cells_are_ignored():
    rng = np.random.default_rng(1)
    obs = rng.standard_normal((40, 2, 3))
    sim = obs + 0.5 * rng.standard_normal(obs.shape)
    obs[:, 0, 0] = np.nan  # sea cell
    sim[5, 1, 1] = np.nan  # one missing forecast month
    da_o = xr.DataArray(obs, dims=("time", "lat", "lon"))
    da_s = xr.DataArray(sim, dims=("time", "lat", "lon"))
    for fn in (hm.nse, hm.kge, hm.kge_nb, hm.rmse):
        v = fn(da_o, da_s)
        assert isinstance(v, xr.DataArray) and v.dims == ("lat", "lon")
        assert np.isnan(v.values[0, 0]) and np.isfinite(v.values).sum() == 5
    keep = np.arange(40) != 5
    assert float(hm.rmse(da_o, da_s)[1, 1]) == pytest.approx(
        float(np.sqrt(np.mean((sim[keep, 1, 1] - obs[keep, 1, 1]) ** 2)))
    )
    s = hm.summarize(hm.rmse(obs, sim))
    assert s["n_cells"] == 5 and s["q25"] <= s["median"] <= s["q75"]
    assert hm.summarize(np.full(3, np.nan))["n_cells"] == 0


def test_skill_table_is_tidy():
    rng = np.random.default_rng(2)
    obs = rng.standard_normal((60, 3, 3))
    fc = {
        "perfect": {1: obs, 2: obs},
        "zero": np.zeros((2, *obs.shape)),
    }
    table = hm.skill_table(obs, fc, leads=[1, 2])
    assert set(table.columns) >= {"method", "lead", "metric", "median", "q25", "q75", "pooled"}
    # 4 continuous + 3 event metrics x 2 thresholds, per method and lead.
    assert len(table) == 2 * 2 * (4 + 6)
    row = table.query("method == 'perfect' and lead == 2 and metric == 'nse'").iloc[0]
    assert row["median"] == pytest.approx(1.0)
    csi = table.query("method == 'zero' and metric == 'csi@-1'")
    assert (csi["pooled"] == 0).all()
