"""``twins twin init DIR --kind hydrology --run RUN_DIR``: a drought twin from a finished
training run of the tiny config (trained once for the module), its refusals, and the
forecasts it issues."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from hydrology.model_forecaster import ModelForecaster
from hydrology.synthetic import generate, write_netcdf
from hydrology.twin import DroughtInit, DroughtTwin
from hydrology.twin_run import load_run
from twins.cli import main
from twins.config import load_config, to_yaml
from twins.examples.toy import default_config
from twins.train.run import train_process

CONFIG = Path(__file__).resolve().parents[2] / "hydrology" / "configs" / "tiny.yaml"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny config trained (2 epochs, untracked): train 2000-2004, test 2006-2007."""
    work = tmp_path_factory.mktemp("runs")
    cfg = load_config(CONFIG, [f"workdir={work}", "tracking.enabled=false"])
    train_process(cfg, progress=False)
    return cfg.run_dir


@pytest.fixture(scope="module")
def daily() -> xr.Dataset:
    """The tiny preset's daily record, as the run trained on it (ground truth dropped)."""
    return generate("tiny").drop_vars(["drought_forcing", "drought_mask"])


@pytest.fixture(scope="module")
def inputs(daily: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The record 2000-01..2007-10 and the new month 2007-11, as NetCDF files."""
    d = tmp_path_factory.mktemp("inputs")
    return {
        "record": write_netcdf(daily.sel(time=slice(None, "2007-10-31")), d / "record.nc"),
        "nov": write_netcdf(daily.sel(time="2007-11"), d / "era5land_2007-11.nc"),
    }


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _issued_by_the_run(twin: DroughtTwin, run_dir: Path) -> None:
    """The twin's latest alerts hold exactly what the run's model forecasts from the twin's
    history (the same weights and inputs through the same float32 network: bit-equal)."""
    fc = ModelForecaster.from_run(run_dir).forecast(twin.monthly_history())
    alerts = twin.alerts()
    for target in ("spi_3", "ssmi_1"):
        np.testing.assert_array_equal(alerts[target].values, fc[target].values)


def test_init_from_a_run_then_update_through_the_cli(
    run_dir: Path, inputs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twin_dir = tmp_path / "twin"
    argv = ["twin", "init", twin_dir, "--kind", "hydrology", "--run", run_dir]
    rc, out, err = _cli(
        capsys, *argv, "--data", inputs["record"], "--gates", "tp.max=2500", "--no-maps"
    )
    assert rc == 0, err
    st = json.loads(out.strip().splitlines()[-1])
    assert st["maps"] == [] and not list(twin_dir.rglob("*.png"))  # --no-maps
    assert (st["kind"], st["version"], st["cursor"], st["issue"]) == (
        "hydrology",
        0,
        "2007-10",
        "2007-10",
    )
    assert st["model_ref"].startswith("forecaster.pt@sha256:")  # untracked: the file's hash
    twin = DroughtTwin.open(twin_dir)
    assert isinstance(twin.forecaster, ModelForecaster)
    assert twin.forecaster.targets == ("spi_3", "ssmi_1")
    assert twin.gates.tp.max == 2500.0  # kept for every update
    # the model's inputs as in training: indices calibrated over the run's training split
    assert (twin.indices.cal_start, twin.indices.cal_end) == ("2000-01-01", "2004-12-31")
    assert twin.indices.names == ["spi_1", "spi_3", "spi_6", "ssmi_1"]
    # seq_len 12 months (the model) + 12 (margin)
    assert twin.monthly_history().sizes["time"] == 24
    _issued_by_the_run(twin, run_dir)
    rc, out, err = _cli(capsys, "twin", "update", twin_dir, "--data", inputs["nov"])
    assert rc == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert res["cursor"] == "2007-11" and res["maps"] == []
    _issued_by_the_run(DroughtTwin.open(twin_dir), run_dir)


def test_init_without_data_starts_from_the_runs_record(run_dir: Path, tmp_path: Path) -> None:
    twin = DroughtTwin.create(tmp_path / "twin", DroughtInit(run=run_dir, indices=["spi_1"]))
    st = twin.status()
    assert (st.cursor, st.version) == ("2007-12", 0)  # the tiny preset ends in 2007-12
    # maps by default: one per target of the model
    assert [m.name for m in st.maps] == ["alerts_2007-12_spi_3.png", "alerts_2007-12_ssmi_1.png"]
    assert twin.indices.names == ["spi_1", "spi_3", "ssmi_1"]  # plus the model's targets
    _issued_by_the_run(twin, run_dir)


def test_a_registered_run_gives_its_model_version(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    cfg = yaml.safe_load((copy / "config.yaml").read_text())
    cfg["tracking"]["register_model"] = "drought-forecaster"
    (copy / "config.yaml").write_text(yaml.safe_dump(cfg))
    summary = json.loads((copy / "summary.json").read_text())
    (copy / "summary.json").write_text(json.dumps({**summary, "model_version": "3"}))
    run = load_run(copy)
    assert run.model_ref == "models:/drought-forecaster/3"
    assert run.calibration == ("2000-01-01", "2004-12-31")


def _toy_run(cwd: Path) -> Path:
    run = cwd / "toy-run"
    run.mkdir()
    (run / "config.yaml").write_text(to_yaml(load_config(None, base=default_config())))
    (run / "model.pt").write_bytes(b"")
    return run


def _other_grid(daily: xr.Dataset, cwd: Path) -> Path:
    part = daily.sel(time=slice(None, "2007-10-31")).isel(lat=slice(0, 10))
    return write_netcdf(part, cwd / "other-grid.nc")


def _short_record(daily: xr.Dataset, cwd: Path) -> Path:
    return write_netcdf(daily.sel(time=slice("2003-01-01", "2007-10-31")), cwd / "short.nc")


@pytest.mark.parametrize(
    ("case", "code", "names"),
    [
        ("no-run", 2, ("--run", "no-such-run", "config.yaml")),
        ("empty-run", 2, ("--run", "empty-run", "config.yaml")),
        ("toy-run", 2, ("toy-run", "twins.examples.toy", "hydrology.task:DroughtForecast")),
        ("other-grid", 3, ("other-grid.nc", "grid")),
        ("short-record", 3, ("short.nc", "calibration period 2000-01..2004-12")),
        ("bad-gate-key", 2, ("--gates", "tp.mn")),
        ("bad-index", 2, ("--indices", "spx_3")),
        ("taken-dir", 4, ("taken", "not an empty directory")),
    ],
)
def test_init_refusals_create_nothing(
    case: str,
    code: int,
    names: tuple[str, ...],
    run_dir: Path,
    daily: xr.Dataset,
    inputs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dir_snapshot,
) -> None:
    twin_dir, run, extra = tmp_path / "twin", run_dir, ["--data", inputs["record"]]
    if case == "no-run":
        run = tmp_path / "no-such-run"
    elif case == "empty-run":
        run = tmp_path / "empty-run"
        run.mkdir()
    elif case == "toy-run":
        run = _toy_run(tmp_path)
    elif case == "other-grid":
        extra = ["--data", _other_grid(daily, tmp_path)]
    elif case == "short-record":
        extra = ["--data", _short_record(daily, tmp_path)]
    elif case == "bad-gate-key":
        extra += ["--gates", "tp.mn=-1"]
    elif case == "bad-index":
        extra += ["--indices", "spx_3"]
    elif case == "taken-dir":
        twin_dir = tmp_path / "taken"
        twin_dir.mkdir()
        (twin_dir / "notes.txt").write_text("mine")
    before = dir_snapshot(tmp_path)
    rc, _, err = _cli(
        capsys, "twin", "init", twin_dir, "--kind", "hydrology", "--run", run, *extra
    )
    errors = [ln for ln in err.splitlines() if ln.startswith("twins: error:")]
    assert rc == code and len(errors) == 1, err
    for name in names:
        assert name in errors[0], (name, errors[0])
    assert "Traceback" not in err
    assert dir_snapshot(tmp_path) == before  # no twin, no hidden init directory
