"""The drought forecaster on a precipitation-only record: GPCC, as downloaded (data/hydrology).

A slice of East Africa (8 x 8 cells of 2.5 deg, 1961-2010) cut from the real file as a user
would cut it; monthly totals in mm, no statics, no other variable.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from hydrology.dataset import build_cube
from hydrology.evaluate import evaluate_run, issue_months, predict
from hydrology.features import MIN_VALID_SHARE, input_cells
from hydrology.forecast import index_inputs, monthly_inputs
from hydrology.indices import DroughtIndices
from hydrology.io import open_grids
from hydrology.metrics import rmse
from hydrology.model_forecaster import ModelForecaster
from hydrology.models.ensemble import load_selected
from twins.cli import main
from twins.config import load_config
from twins.errors import ConfigError
from twins.task import build_task
from twins.train.callbacks import Callback
from twins.train.run import train_process

ROOT = Path(__file__).resolve().parents[2]
GPCC = ROOT / "data" / "hydrology" / "gpcc_v2018_2.5deg_africa_monthly_1946-2016.nc"
CONFIG = ROOT / "hydrology" / "configs" / "gpcc.yaml"
SPLITS = {
    "train": ("1961-01", "1992-12"),
    "val": ("1993-01", "2000-12"),
    "test": ("2001-01", "2010-12"),
}
_SPLITS_YAML = "{train: [1961-01, 1992-12], val: [1993-01, 2000-12], test: [2001-01, 2010-12]}"
GAP_SHARE = 0.10


def _east_africa() -> xr.Dataset:
    ds = open_grids(GPCC, chunks=None)
    return ds.sel(lat=slice(-10, 10), lon=slice(30, 50), time=slice("1961", "2010")).load()


@pytest.fixture(scope="module")
def slice_ds() -> xr.Dataset:
    return _east_africa()


@pytest.fixture(scope="module")
def slice_file(slice_ds: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gpcc") / "gpcc_east_africa.nc"
    slice_ds.to_netcdf(path)
    return path


def _gappy(ds: xr.Dataset, seed: int = 7) -> xr.Dataset:
    """``GAP_SHARE`` of the land cell-months of ``tp`` removed at random."""
    tp = ds["tp"].values.copy()
    land = np.isfinite(tp).all(axis=0)
    drop = (np.random.default_rng(seed).random(tp.shape) < GAP_SHARE) & land
    tp[drop] = np.nan
    return ds.assign(tp=ds["tp"].copy(data=tp))


def _cfg(tmp: Path, path: Path, *overrides: str):
    return load_config(
        CONFIG,
        [
            f"workdir={tmp}",
            "tracking.enabled=false",
            f"task.params.path={path}",
            f"task.params.splits={_SPLITS_YAML}",
            "task.params.seq_len=12",
            "task.params.hidden=16",
            "task.params.members=1",
            "task.params.val_subsample=1",
            "task.params.output_patience=0",
            "train.max_steps_per_epoch=40",
            "train.val_every=10",
            "train.batch_size=128",
            *overrides,
        ],
    )


class _ValLosses(Callback):
    """Records every validation loss."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_validation_end(self, trainer: Any, metrics: dict[str, float]) -> None:
        self.losses.append(metrics["val_loss"])


def _history(task, cube, n_months: int) -> xr.Dataset:
    """Monthly inputs and indices of the record's first ``n_months`` months, as a twin keeps
    them (indices transformed with the cube's calibration)."""
    mon = monthly_inputs(task.load_dataset())
    cal = cube.meta["calibration_period"]
    idx = DroughtIndices(cube.targets, cal[0], cal[1]).fit_transform(index_inputs(mon))
    return xr.merge([mon, idx]).isel(time=slice(0, n_months))


def test_precip_only_training_end_to_end(slice_file: Path, tmp_path: Path) -> None:
    """GPCC precipitation alone: cube, training through the core trainer, skill beside the
    baselines, and the twin's forecaster reproducing the in-task forecast."""
    cfg = _cfg(tmp_path, slice_file)
    summary = train_process(cfg, progress=False)
    task = build_task(cfg)
    cube = task.cube()
    assert cube.meta["inputs"] == ["pr"] and cube.meta["pet"] is None
    assert cube.meta["dynamic_features"] == ["pr_z", "spi_3", "month_sin", "month_cos"]
    assert cube.static.shape == (cube.cells.size, 0) and cube.meta["static_features"] == []
    assert not cube.meta["input_masks"]  # GPCC has no gaps over land
    m = summary["test_metrics"]
    for lead in (1, 2, 3):
        for method in ("model", "persistence", "climatology", "analogue"):
            assert np.isfinite(m[f"test_spi_3_l{lead}_{method}_rmse"])
    # plumbing-level sanity: the hybrid starts at ESP, which beats persistence at lead 1
    assert m["test_spi_3_l1_model_rmse"] < m["test_spi_3_l1_persistence_rmse"]

    fc = ModelForecaster.load(ModelForecaster.from_run(cfg.run_dir).save(tmp_path / "fc.pt"))
    t = cube.split_range("test")[1] - max(cube.leads)  # every lead inside the record
    hist = _history(task, cube, t + 1)
    assert "wb" not in hist and "sm" not in hist  # the forecaster asks only for pr
    out = fc.forecast(hist)
    vals = out["spi_3"].values.reshape(3, -1)
    land = np.zeros(vals.shape[1], bool)
    land[cube.cells] = True
    assert np.isfinite(vals[:, land]).all() and np.isnan(vals[:, ~land]).all()
    model = load_selected(
        task.build_model(), torch.load(cfg.run_dir / "model.pt", weights_only=True)["model"]
    )
    ref = predict(model, cube, np.array([t]), task.params.seq_len)
    # The same float32 network on the same features; the forecaster's ESP input is
    # recomputed in float64 from the stored float32 precipitation and rounded to float32
    # (<= 1 ulp of |SPI| <= 3.09: 2.4e-7), and the network (weights O(0.1), a few dozen
    # terms per unit) carries that to well under 1e-5.
    np.testing.assert_allclose(vals[:, cube.cells].T, ref[:, 0], atol=1e-5)


def test_target_without_its_variable_is_one_config_error(
    slice_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], dir_snapshot
) -> None:
    """SSMI and SPEI need soil moisture and PET (or temperature): GPCC has neither."""
    with pytest.raises(ConfigError) as info:
        build_task(_cfg(tmp_path, slice_file, "task.params.targets=[spi_3,ssmi_1]")).cube()
    msg = str(info.value)
    assert "'ssmi_1' needs soil moisture 'swvl1'" in msg and str(slice_file) in msg, msg
    assert "(it holds tp)" in msg and "\n" not in msg
    config = tmp_path / "spei.yaml"
    config.write_text(
        f"workdir: {tmp_path / 'runs'}\ntask:\n  target: hydrology.task:DroughtForecast\n"
        f"  params:\n    path: {slice_file}\n    splits: {_SPLITS_YAML}\n"
        "    targets: [spi_3, spei_3]\n    pet: thornthwaite\ntracking: {enabled: false}\n"
    )
    before = dir_snapshot(tmp_path)
    rc = main(["train", str(config)])
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("twins: error")]
    assert rc == 2 and len(errors) == 1, errors
    assert (
        "'spei_3' needs temperature 't2m', or 'mn2t' and 'mx2t' (pet: thornthwaite)" in errors[0]
    )
    assert str(slice_file) in errors[0] and "'spi_3'" not in errors[0]
    assert dir_snapshot(tmp_path) == before  # refused before the run wrote anything


def test_gaps_are_masked_inputs_and_thin_cells_are_not_served(slice_ds: xr.Dataset) -> None:
    gappy = _gappy(slice_ds)
    thin = gappy["tp"].values.copy()
    land = np.flatnonzero(np.isfinite(slice_ds["tp"].values).all(axis=0).ravel())
    iy, ix = np.divmod(land[0], slice_ds.sizes["lon"])
    train = slice(None, "1992-12")
    n_train = slice_ds["tp"].sel(time=train).sizes["time"]
    # keep just under MIN_VALID_SHARE of this cell's training months
    keep = int(np.ceil(MIN_VALID_SHARE * n_train)) - 1
    thin[keep:n_train, iy, ix] = np.nan
    gappy = gappy.assign(tp=gappy["tp"].copy(data=thin))
    monthly = monthly_inputs(gappy)
    cells = input_cells(monthly, (np.datetime64("1961-01"), np.datetime64("1992-12")))
    assert land[0] not in cells and set(cells) == set(land[1:])

    cube = build_cube(gappy, SPLITS, ["spi_3"], require_val_drought=False)
    names = cube.meta["dynamic_features"]
    assert cube.meta["input_masks"] and names[2:4] == ["pr_ok", "spi_3_ok"]
    pr = cube.pr  # (cell, time) mm/d, NaN where removed
    observed = np.isfinite(pr)
    # ~27k served cell-months: the removed share is binomial with sd sqrt(0.09 / 27000) =
    # 0.0018, so 0.01 is over 5 sd
    assert abs((1 - observed.mean()) - GAP_SHARE) < 0.01
    np.testing.assert_array_equal(cube.dynamic[..., 2], observed.astype(np.float32))
    assert np.all(cube.dynamic[..., 0][~observed] == 0)  # missing z-score enters as 0
    np.testing.assert_array_equal(cube.dynamic[..., 3], np.isfinite(cube.obs[..., 0]))
    assert np.isfinite(cube.dynamic).all() and np.isfinite(cube.baseline).all()
    # an SPI-3 window holding a gap has no index and no target
    gap_c, gap_t = np.argwhere(~observed[:, 3:-3])[0]
    gap_t += 3
    assert np.isnan(cube.obs[gap_c, gap_t : gap_t + 3, 0]).all()


@pytest.mark.slow
def test_training_with_gaps_stays_finite_and_keeps_its_skill(
    slice_ds: xr.Dataset, tmp_path: Path
) -> None:
    """10 % of the input cell-months removed at random: losses stay finite, and the skill
    against the gap-free truth stays within what falling back to climatology on the
    incomplete windows would cost (see the bound below)."""
    runs = {}
    for name, ds in (("full", slice_ds), ("gappy", _gappy(slice_ds))):
        path = tmp_path / f"{name}.nc"
        ds.to_netcdf(path)
        # 10 % removed at random from 51 land cells leaves some months over the gates'
        # default missing share (0.25; binomial tail); the user widens it as the message says
        cfg = _cfg(
            tmp_path / name,
            path,
            "task.params.require_val_drought=false",
            "task.params.gates.max_missing_share=0.5",
        )
        val = _ValLosses()
        summary = train_process(cfg, progress=False, extra_callbacks=(val,))
        # train_loss is the sample-weighted mean of every step's loss: finite iff all are
        assert np.isfinite(summary["train_loss"]) and np.isfinite(summary["test_loss"]), name
        assert len(val.losses) == 4 and np.isfinite(val.losses).all(), (name, val.losses)
        task = build_task(cfg)
        model = load_selected(
            task.build_model(), torch.load(cfg.run_dir / "model.pt", weights_only=True)["model"]
        )
        cube = task.cube()
        issue = issue_months(cube, "test", task.params.seq_len)
        runs[name] = (cube, issue, predict(model, cube, issue, task.params.seq_len))
    full, issue, pred_full = runs["full"]
    gappy, _, pred_gappy = runs["gappy"]
    assert gappy.meta["input_masks"] and np.array_equal(gappy.cells, full.cells)
    a, b = full.split_range("test")
    verif = np.arange(a, b + 1)
    truth = full.obs[:, verif, 0].T  # gap-free SPI-3, (time, cell)
    src = np.searchsorted(issue, verif - 1)  # lead 1: issued the month before
    r_full = np.asarray(rmse(truth, pred_full[:, src, 0].T))
    r_gappy = np.asarray(rmse(truth, pred_gappy[:, src, 0].T))
    r_clim = np.asarray(rmse(truth, np.zeros_like(truth)))
    # Where the issue month's SPI-3 window (3 months) is complete, the gappy record holds
    # the same recent information as the full one; where it is not, falling back to
    # climatology is the least a model should do. Per cell, with q the share of test
    # issue months whose window holds a gap, that fallback scores
    # sqrt((1 - q) r_full^2 + q r_clim^2): a model poisoned by the gaps scores worse.
    obs = np.isfinite(gappy.pr[:, verif - 1])
    window = obs & np.isfinite(gappy.pr[:, verif - 2]) & np.isfinite(gappy.pr[:, verif - 3])
    q = 1 - window.mean(axis=1)
    bound = np.sqrt((1 - q) * r_full**2 + q * r_clim**2)
    assert 0.15 < q.mean() < 0.40  # 1 - 0.9^3 = 0.27 expected
    assert np.median(r_gappy) <= np.median(bound), (np.median(r_gappy), np.median(bound))
    assert np.median(r_gappy) < np.median(r_clim)


def _benchmark():
    path = ROOT / "benchmarks" / "drought_gpcc_skill.py"
    spec = importlib.util.spec_from_file_location("drought_gpcc_skill", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_gpcc_benchmark_reports_seeds_baselines_bars_and_maps(
    slice_file: Path, tmp_path: Path
) -> None:
    """benchmarks/drought_gpcc_skill.py on the slice with 2 seeds and short training."""
    bench = _benchmark()
    overrides = [
        f"task.params.path={slice_file}",
        f"task.params.splits={_SPLITS_YAML}",
        "task.params.seq_len=12",
        "task.params.hidden=8",
        "task.params.members=1",
        "train.max_steps_per_epoch=10",
        "train.val_every=5",
    ]
    cube, runs, timings = bench.train_seeds(tmp_path, [0, 1], ["spi_3"], overrides, "test")
    cubes = sorted(tmp_path.glob("*/data/cube-*.npz"))  # built once, copied for seed 1
    assert len(cubes) == 2 and cubes[0].read_bytes() == cubes[1].read_bytes()
    summary = bench.report(cube, runs, timings, "test", tmp_path / "report")
    tab = pd.DataFrame(summary["table"])
    assert len(tab) == 4 * 3 and set(tab.method) == {"model", *bench.BASELINES}
    base = tab[tab.method != "model"]
    assert (base.rmse_std == 0).all() and (base.seeds == 2).all()  # seed-independent
    # the baselines are those of hydrology.evaluate on the same cube (median over cells)
    ref = evaluate_run(None, cube, 12, split="test")
    r = ref[(ref.metric == "rmse") & (ref.method == "analogue") & (ref.lead == 1)]
    got = base[(base.method == "analogue") & (base.lead == 1)].rmse.iloc[0]
    assert got == pytest.approx(float(r["median"].iloc[0]), rel=1e-12)
    assert [b["name"] for b in summary["bars"]] == [
        "spi_3 lead 1 vs persistence",
        "spi_3 lead 1 vs ESP",
        "spi_3 lead 2 vs ESP",
        "spi_3 lead 3 vs climatology",
    ]
    assert all(np.isfinite(b["value"]) for b in summary["bars"])
    names = {Path(p).name for p in summary["figures"]}
    assert names == {"gain_spi_3_l1.png", "gain_spi_3_l2.png", "gain_spi_3_l3.png"}
    assert (tmp_path / "report" / "skill.csv").is_file()
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["cells"] > 0


@pytest.mark.slow
def test_selection_from_start_keeps_esp_when_training_only_hurts(
    slice_file: Path, tmp_path: Path
) -> None:
    """With a destructive learning rate no validation state beats the untrained hybrid:
    every output keeps it, and the forecasts are the ESP baseline itself."""
    cfg = _cfg(
        tmp_path,
        slice_file,
        "task.params.select_untrained=true",
        "train.optimizer.lr=50.0",
        "train.max_steps_per_epoch=10",
        "train.val_every=5",
    )
    train_process(cfg, progress=False)
    task = build_task(cfg)
    model = load_selected(
        task.build_model(), torch.load(cfg.run_dir / "model.pt", weights_only=True)["model"]
    )
    cube = task.cube()
    issue = issue_months(cube, "test", task.params.seq_len)
    pred = predict(model, cube, issue, task.params.seq_len)
    # baseline + a zero correction head + a zero skip path: exactly the baseline
    np.testing.assert_array_equal(pred, cube.baseline[:, issue])
