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

from hydrology.ingest import monthly_standard
from hydrology.io import open_grids
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


# --------------------------------------------- a run trained on PET derived from temperature


@pytest.fixture(scope="module")
def no_pev(daily: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny record without ``pev`` (temperature only): 2000-01..2007-10, 2007-11, 2007-12,
    and 2007-11 without ``t2m`` either."""
    d = tmp_path_factory.mktemp("no_pev")
    ds = daily.drop_vars("pev")
    return {
        "record": write_netcdf(ds.sel(time=slice(None, "2007-10-31")), d / "record.nc"),
        "nov": write_netcdf(ds.sel(time="2007-11"), d / "t2m_2007-11.nc"),
        "dec": write_netcdf(ds.sel(time="2007-12"), d / "t2m_2007-12.nc"),
        "nov_no_t2m": write_netcdf(ds.sel(time="2007-11").drop_vars("t2m"), d / "no_t2m.nc"),
    }


@pytest.fixture(scope="module")
def thornthwaite_run(no_pev: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SPI-3 and SPEI-3 trained (1 epoch) on the record without ``pev``: Thornthwaite PET."""
    work = tmp_path_factory.mktemp("runs_tw")
    overrides = [
        f"workdir={work}",
        "tracking.enabled=false",
        "train.epochs=1",
        "train.max_steps_per_epoch=4",  # the twin only needs a trained model file
        "task.params.members=1",
        f"task.params.path={no_pev['record']}",
        "task.params.targets=[spi_3, spei_3]",
        "task.params.pet=thornthwaite",
        "task.params.splits={train: [2000-01, 2004-12], val: [2005-01, 2005-12], "
        "test: [2006-01, 2007-10]}",
    ]
    cfg = load_config(CONFIG, overrides)
    train_process(cfg, progress=False)
    return cfg.run_dir


@pytest.mark.slow
@pytest.mark.timeout(900)  # trains a model, then an init and three updates through the CLI
def test_a_twin_of_a_derived_pet_run_updates_from_temperature(
    thornthwaite_run: Path,
    no_pev: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dir_snapshot,
) -> None:
    """The twin derives each new month's water balance as the model's training did (no
    ``pev`` anywhere), asks every new month for ``t2m``, and issues the run's forecasts."""
    twin_dir = tmp_path / "twin"
    argv = ["twin", "init", twin_dir, "--kind", "hydrology", "--run", thornthwaite_run]
    rc, _, err = _cli(capsys, *argv, "--data", no_pev["record"], "--no-maps")
    assert rc == 0, err
    twin = DroughtTwin.open(twin_dir)
    assert twin.forecaster.pet == "thornthwaite"  # type: ignore[attr-defined]
    extra = twin.store.state.extra
    assert extra["pet"] == "thornthwaite"
    assert "pev" not in extra["variables"] and "t2m" in extra["variables"]
    assert twin.indices.names == ["spi_1", "spi_3", "spi_6", "ssmi_1", "spei_3"]
    # a new month without its temperature is refused naming it; nothing changes
    before = dir_snapshot(twin_dir)
    rc, _, err = _cli(capsys, "twin", "update", twin_dir, "--data", no_pev["nov_no_t2m"])
    errors = [ln for ln in err.splitlines() if ln.startswith("twins: error:")]
    assert rc == 3 and len(errors) == 1 and "no_t2m.nc" in errors[0] and "'t2m'" in errors[0]
    assert dir_snapshot(twin_dir) == before
    for month in ("nov", "dec"):
        rc, _, err = _cli(capsys, "twin", "update", twin_dir, "--data", no_pev[month])
        assert rc == 0, err
    twin = DroughtTwin.open(twin_dir)
    fc = ModelForecaster.from_run(thornthwaite_run).forecast(twin.monthly_history())
    for target in ("spi_3", "spei_3"):
        np.testing.assert_array_equal(twin.alerts()[target].values, fc[target].values)
    # December's twelve trailing months are its calendar year: its water balance is the one
    # the whole record gives (training's path; the same float64 operations on the same
    # file values: a few ulp)
    whole = monthly_standard(
        open_grids([no_pev["record"], no_pev["nov"], no_pev["dec"]], chunks=None).load(),
        "thornthwaite",
    )
    got = twin.monthly_history()["wb"].sel(time="2007-12-01")
    want = whole["wb"].sel(time="2007-12-01")
    assert got.attrs["pet_method"] == "thornthwaite"
    np.testing.assert_allclose(got.values, want.values, rtol=1e-12, atol=1e-12)
