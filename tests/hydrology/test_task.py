"""DroughtForecast through the core trainer on the tiny preset; per-output selection;
ModelForecaster round trip; ConvLSTM."""

from __future__ import annotations

import time
from pathlib import Path

import cftime
import numpy as np
import pytest
import torch
import xarray as xr

from hydrology.callbacks import PerOutputBest
from hydrology.dataset import DEFAULT_SPLITS
from hydrology.forecast import monthly_inputs
from hydrology.model_forecaster import ModelForecaster, esp_forecast
from hydrology.models.ensemble import PerOutputSelect, load_selected
from hydrology.models.lstm import CellLSTM
from hydrology.selection import PerOutputBestFromStart
from hydrology.synthetic import generate, write_netcdf
from hydrology.task import DroughtForecast, DroughtParams
from twins.cli import main
from twins.config import load_config
from twins.errors import DataError
from twins.task import build_task
from twins.train.run import train_process

CONFIG = Path(__file__).resolve().parents[2] / "hydrology" / "configs" / "tiny.yaml"
TARGET = "hydrology.task:DroughtForecast"


def _cfg(tmp: Path, *overrides: str):
    return load_config(CONFIG, [f"workdir={tmp}", "tracking.enabled=false", *overrides])


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("drought")
    cfg = _cfg(tmp)
    t0 = time.perf_counter()
    summary = train_process(cfg, progress=False)
    return cfg, summary, time.perf_counter() - t0


def test_trains_through_core_and_reports_baselines(trained) -> None:
    cfg, summary, _wall = trained  # wall time is logged by the benchmarks, never asserted
    assert (cfg.run_dir / "model.pt").is_file()
    assert list((cfg.run_dir / "data").glob("cube-*.npz")), "cube not cached in the run dir"
    m = summary["test_metrics"]
    for method in ("model", "persistence", "climatology", "analogue"):
        assert np.isfinite(m[f"test_spi_3_l1_{method}_rmse"])
    assert np.isfinite(m["test_ssmi_1_l1_model_rmse"])
    names = {Path(f).name for f in summary["figures"]}  # logged to MLflow by train_process
    assert {"rmse_spi_3_l1.png", "nse_spi_3_l1.png", "drought_obs_spi_3.png"} <= names
    # plumbing-level sanity only (tiny is too short for skill claims): beats climatology
    assert m["test_spi_3_l1_model_rmse"] < m["test_spi_3_l1_climatology_rmse"]


def test_model_pt_holds_per_output_selection(trained) -> None:
    cfg, _, _ = trained
    blob = torch.load(cfg.run_dir / "model.pt", weights_only=True)
    state = blob["model"]
    assert state["selection"].numel() == 6
    task = build_task(cfg)
    model = load_selected(task.build_model(), state)
    table = task.skill_table(model, "test")
    assert set(table.method) == {"model", "persistence", "climatology", "analogue"}
    assert {"rmse", "nse", "kge_nb", "csi@-1", "pod@-1.5", "far@-1.5"} <= set(table.metric)


def test_per_output_selection_picks_each_outputs_best_state() -> None:
    torch.manual_seed(0)
    net = CellLSTM(3, 1, 2, hidden=4)
    model = PerOutputSelect(net, 2)
    a = {k: v.clone() for k, v in net.state_dict().items()}
    b = {k: v + 0.5 for k, v in a.items()}
    model.set_members([a, b], [1, 0])
    dyn, sta = torch.randn(5, 4, 3), torch.randn(5, 1)
    net.eval()
    net.load_state_dict(a)
    ya = net(dyn, sta)
    net.load_state_dict(b)
    yb = net(dyn, sta)
    model.eval()
    out = model(dyn, sta)
    torch.testing.assert_close(out[:, 0], yb[:, 0])
    torch.testing.assert_close(out[:, 1], ya[:, 1])
    cb = PerOutputBest(["x", "y"])
    cb.best_step, cb.states = [30, 60], [a, b]
    states, sel = cb.selection()
    assert sel == [0, 1] and states[1] is b
    reloaded = load_selected(PerOutputSelect(CellLSTM(3, 1, 2, hidden=4), 2), model.state_dict())
    reloaded.eval()
    torch.testing.assert_close(reloaded(dyn, sta), out)


def test_per_output_best_stops_when_no_output_improves(monkeypatch) -> None:
    import types

    import hydrology.callbacks as cbmod

    scores = iter([[1.0, 1.0], [0.9, 1.1], [0.95, 1.05], [0.92, 1.2], [0.91, 1.0]])
    monkeypatch.setattr(cbmod, "per_output_rmse", lambda *a, **k: next(scores))
    model = PerOutputSelect(CellLSTM(3, 1, 2, hidden=4), 2)
    trainer = types.SimpleNamespace(
        val_data=[0],
        bare_model=model,
        batch_size=4,
        step=0,
        should_stop=False,
        strategy=types.SimpleNamespace(is_main=True),
    )
    cb = PerOutputBest(["x", "y"], patience=2)
    for step in range(1, 5):
        trainer.step = step
        cb.on_validation_end(trainer, {})
        assert trainer.should_stop == (step == 4)  # steps 3 and 4 improve neither output
    assert cb.best_step == [2, 1] and cb.state_dict()["bad"] == 2


def test_selection_from_start_keeps_the_untrained_state_where_training_never_helps(
    monkeypatch,
) -> None:
    import types

    import hydrology.callbacks as cbmod

    scores = iter([[1.0, 1.0], [1.1, 0.9], [1.2, 0.95]])
    monkeypatch.setattr(cbmod, "per_output_rmse", lambda *a, **k: next(scores))
    model = PerOutputSelect(CellLSTM(3, 1, 2, hidden=4), 2)
    trainer = types.SimpleNamespace(
        val_data=[0],
        bare_model=model,
        batch_size=4,
        step=0,
        should_stop=False,
        strategy=types.SimpleNamespace(is_main=True),
    )
    cb = PerOutputBestFromStart(["x", "y"])
    cb.on_fit_start(trainer)  # scores the state before the first step
    for step in (10, 20):
        trainer.step = step
        cb.on_validation_end(trainer, {})
    assert cb.best_step == [0, 10] and cb.best == [1.0, 0.9]
    resumed = PerOutputBestFromStart(["x", "y"])
    resumed.on_fit_start(types.SimpleNamespace(step=20, val_data=[0]))  # nothing to score
    assert resumed.history == []
    params = DroughtParams.model_validate({"select_untrained": True})
    assert type(DroughtForecast(params).callbacks()[0]) is PerOutputBestFromStart


def test_model_forecaster_round_trip_and_shape(trained, tmp_path: Path) -> None:
    _check_round_trip(trained[0], tmp_path)


@pytest.mark.slow
def test_regional_inputs_train_and_forecast_the_same(tmp_path: Path) -> None:
    """With regional-mean inputs the cube, the trained model and the twin's forecaster
    compute the same features (the forecast equals the in-task prediction)."""
    cfg = _cfg(tmp_path, "task.params.regional=[2,4]", "train.epochs=1")
    train_process(cfg, progress=False)
    cube = build_task(cfg).cube()
    names = cube.meta["dynamic_features"]
    assert names[6:10] == ["spi_3_r2", "ssmi_1_r2", "spi_3_r4", "ssmi_1_r4"]
    assert cube.dynamic.shape[-1] == len(names) == 12
    fc = _check_round_trip(cfg, tmp_path)
    assert fc.regional == (2.0, 4.0)


def _check_round_trip(cfg, tmp_path: Path) -> ModelForecaster:
    fc = ModelForecaster.from_run(cfg.run_dir)
    path = fc.save(tmp_path / "forecaster.pt")
    fc2 = ModelForecaster.load(path)
    task = build_task(cfg)
    cube = task.cube()
    # rebuild a monthly history (inputs + indices) for the last test month
    from hydrology.indices import DroughtIndices

    ds = task.load_dataset()
    mon = monthly_inputs(ds)
    cal = cube.meta["calibration_period"]
    idx = DroughtIndices(cube.targets, cal[0], cal[1]).fit(ds).transform(ds)
    monthly = xr.merge([mon, idx]).isel(time=slice(0, 80))
    t0 = time.perf_counter()
    out = fc2.forecast(monthly)
    assert time.perf_counter() - t0 < 1.0
    assert set(out.data_vars) == {"spi_3", "ssmi_1"}
    assert out["spi_3"].shape == (3, *cube.shape)
    land = np.zeros(cube.shape[0] * cube.shape[1], bool)
    land[cube.cells] = True
    vals = out["spi_3"].values.reshape(3, -1)
    assert np.isfinite(vals[:, land]).all() and np.isnan(vals[:, ~land]).all()
    # equals the in-task forecast issued at the same month
    from hydrology.evaluate import predict

    model = load_selected(
        task.build_model(), torch.load(cfg.run_dir / "model.pt", weights_only=True)["model"]
    )
    ref = predict(model, cube, np.array([79]), task.params.seq_len)
    np.testing.assert_allclose(vals[0, cube.cells], ref[:, 0, 0], atol=1e-4)
    np.testing.assert_allclose(
        out["ssmi_1"].values.reshape(3, -1)[2, cube.cells], ref[:, 0, 5], atol=1e-4
    )
    return fc2


def test_esp_forecast_matches_overlap_analogue(trained) -> None:
    cfg, _, _ = trained
    cube = build_task(cfg).cube()
    fc = ModelForecaster.from_run(cfg.run_dir)
    b = fc.blob
    t = 79  # an issue month in the test period
    for j, k in enumerate(cube.leads):
        e = esp_forecast(
            cube.pr[:, t - 2 : t + 1].T.astype(float),
            cube.times[t],
            k,
            3,
            b["train_pr"].numpy(),
            b["train_years"],
            b["spi"]["spi_3"]["gamma"].numpy(),
            b["spi"]["spi_3"]["p0"].numpy(),
        )
        np.testing.assert_allclose(e, cube.baseline[:, t, j], atol=1e-4)


@pytest.mark.slow
def test_convlstm_trains_on_tiny(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        "task.params.model=convlstm",
        "task.params.tile=6",
        "task.params.hidden=8",
        "train.epochs=1",
        "train.batch_size=16",
        "train.val_every=5",
    )
    summary = train_process(cfg, progress=False)
    assert np.isfinite(summary["test_loss"])
    assert np.isfinite(summary["test_metrics"]["test_spi_3_l1_model_rmse"])
    fc = ModelForecaster.from_run(cfg.run_dir)
    assert fc.kind == "convlstm"


def test_params_reject_typos_and_bad_splits() -> None:
    with pytest.raises(ValueError):
        DroughtParams.model_validate({"seq_lenn": 3})
    with pytest.raises(Exception, match="time-ordered"):
        DroughtParams.model_validate(
            {
                "splits": {
                    "train": ["2000-01", "2006-12"],
                    "val": ["2005-01", "2005-12"],
                    "test": ["2006-01", "2007-12"],
                }
            }
        )
    assert DroughtParams().resolved_splits() == DEFAULT_SPLITS["tiny"]
    assert DroughtForecast.Params is DroughtParams


_SPLITS = "val: [2005-01, 2005-12], test: [2006-01, 2007-12]"


@pytest.mark.parametrize(
    ("params", "key", "problem"),
    [
        (
            f"splits: {{trian: [2000-01, 2004-12], {_SPLITS}}}",
            "task.params.splits.trian",
            "unknown",
        ),
        (f"splits: {{{_SPLITS}}}", "task.params.splits.train", "missing required key"),
        (f"splits: {{train: [2000-01, 2004-13], {_SPLITS}}}", "splits.train.1", "'2004-13'"),
        (f"splits: {{train: [2000-01, 2005-06], {_SPLITS}}}", "task.params.splits", "ordered"),
        ("targets: [nope]", "task.params.targets", "unknown index 'nope'"),
        ("targets: [spi_3, spi_3]", "task.params.targets", "distinct"),
        ("regional: [.inf]", "task.params.regional", "finite and > 0"),
        ("regional: [.nan]", "task.params.regional", "finite and > 0"),
    ],
)
@pytest.mark.parametrize("command", ["config", "train"])
def test_bad_params_are_one_config_error_naming_file_and_key(
    command: str,
    params: str,
    key: str,
    problem: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dir_snapshot,
) -> None:
    """Refused when the config is read (exit 2), before any data or run directory."""
    config = tmp_path / "bad.yaml"
    body = f"workdir: {tmp_path / 'runs'}\ntask:\n  target: {TARGET}\n  params:\n    {params}\n"
    config.write_text(body)
    before = dir_snapshot(tmp_path)
    rc = main([command, str(config)])
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("twins: error:")]
    assert rc == 2 and len(errors) == 1, err
    assert errors[0].startswith(f"twins: error: {config}: "), errors[0]
    assert key in errors[0] and problem in errors[0], errors[0]
    assert dir_snapshot(tmp_path) == before


# ------------------------------------------------------------------- training input files


@pytest.fixture(scope="module")
def tiny_daily() -> xr.Dataset:
    return generate("tiny").drop_vars(["drought_forcing", "drought_mask"])


def _task(tmp: Path, path: Path, *overrides: str) -> DroughtForecast:
    task = build_task(_cfg(tmp, f"task.params.path={path}", *overrides))
    assert isinstance(task, DroughtForecast)
    return task


def test_training_files_are_gated_with_a_configurable_bound(
    tiny_daily: xr.Dataset, tmp_path: Path
) -> None:
    ds = tiny_daily.sel(time=slice(None, "2000-03-31")).copy()
    land = ds["lsm"].values > 0.5
    tp = ds["tp"].values.copy()
    tp[:, land] = -0.005  # -5 mm/d over land
    ds["tp"] = ds["tp"].copy(data=tp)
    path = write_netcdf(ds, tmp_path / "negative.nc")
    with pytest.raises(DataError) as info:
        _task(tmp_path, path).load_dataset()
    msg = str(info.value)
    assert msg.startswith(f"{path}: variable 'tp' has the value -5 mm/day"), msg
    assert "minimum -0.1 mm/day (bound gates.tp.min" in msg
    wide = _task(tmp_path, path, "task.params.gates.tp.min=-10")
    assert wide.params.gates.tp.min == -10 and wide.params.gates.tp.max == 1825
    assert float(wide.load_dataset()["tp"].min()) < 0
    # the gates decide acceptance only: they are not part of the run's fingerprint
    assert wide.fingerprint() == _task(tmp_path, path).fingerprint()
    with pytest.raises(Exception, match=r"gates\.tp\.mn"):
        _task(tmp_path, path, "task.params.gates.tp.mn=-10")


# Largest error of a kelvin value that went through degC in float32 (see test_twin.py):
# <= ulp(32)/2 + ulp(290)/2 < ulp(290) = 3.05e-5 K.
T2M_ATOL = float(np.spacing(np.float32(290.0)))


def test_training_converts_declared_celsius_to_kelvin(
    tiny_daily: xr.Dataset, tmp_path: Path
) -> None:
    ds = tiny_daily.sel(time=slice(None, "2000-03-31"))
    kelvin = write_netcdf(ds, tmp_path / "kelvin.nc")
    c = ds.copy()
    c["t2m"] = (ds["t2m"] - np.float32(273.15)).astype(np.float32).assign_attrs(units="degC")
    celsius = write_netcdf(c, tmp_path / "celsius.nc")
    a = _task(tmp_path, kelvin).load_dataset()
    b = _task(tmp_path, celsius).load_dataset()
    assert b["t2m"].attrs["units"] == "K"
    np.testing.assert_allclose(b["t2m"].values, a["t2m"].values, rtol=0, atol=T2M_ATOL)


# Monthly precipitation of the noleap path vs the standard path: to_units rounds each float32
# daily value three times (x 1000 mm/m, / 86400 s, x 86400 s/day), <= 3 * 2**-24 relative;
# the float64 sums of <= 31 terms add <= 32 * 2**-53.
PR_RTOL = 3 * 2.0**-24 + 32 * 2.0**-53


def test_training_on_a_noleap_calendar_uses_monthly_means(
    tiny_daily: xr.Dataset, tmp_path: Path
) -> None:
    t = tiny_daily.indexes["time"]
    noleap = tiny_daily.isel(time=~((t.month == 2) & (t.day == 29)))
    days = noleap.indexes["time"]
    noleap = noleap.assign_coords(
        time=[cftime.DatetimeNoLeap(d.year, d.month, d.day) for d in days]
    )
    path = write_netcdf(noleap, tmp_path / "noleap.nc")
    task = _task(tmp_path, path, "task.params.require_val_drought=false")
    monthly = task.load_dataset()
    assert monthly.indexes["time"][0] == np.datetime64("2000-01-01")
    assert monthly.sizes["time"] == 96 and monthly["tp"].attrs["units"] == "mm/day"
    ref = monthly_inputs(tiny_daily)
    leap_feb = (ref.time.dt.month == 2) & ref.time.dt.year.isin([2000, 2004])
    np.testing.assert_allclose(
        monthly["tp"].values[~leap_feb.values], ref["pr"].values[~leap_feb.values], rtol=PR_RTOL
    )
    assert task.cube().meta["targets"] == ["spi_3", "ssmi_1"]
