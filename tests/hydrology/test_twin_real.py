"""The drought twin on real months: GPCC (data/hydrology) cut as a user receives it.

A user downloaded the GPCC Africa record up to 2015-12 and trained the precipitation-only
forecaster on it; the provider then publishes 2016-01. :func:`hydrology.realdata.cut` writes
both pieces from the real file as NOAA PSL's subsetter writes them (``precip`` in mm,
longitudes 0..360, latitudes north to south, ``delta_t`` on time, NETCDF3). The twin is made
from the run at 2015-12 and fed 2016-01 through the command line; the same month twice
changes nothing.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from hydrology.io import open_grids
from hydrology.model_forecaster import ModelForecaster
from hydrology.plots import alert_map
from hydrology.realdata import Box, cut
from hydrology.twin import DroughtInit, DroughtTwin
from twins.cli import main
from twins.config import load_config
from twins.errors import DataError
from twins.train.run import train_process
from twins.twin import EXIT_NOTHING_NEW

ROOT = Path(__file__).resolve().parents[2]
GPCC = ROOT / "data" / "hydrology" / "gpcc_v2018_2.5deg_africa_monthly_1946-2016.nc"
CONFIG = ROOT / "hydrology" / "configs" / "gpcc.yaml"
#: East Africa, 8 x 8 cells of 2.5 deg (51 land cells), the region of the 2010-11 drought.
EAST_AFRICA = Box(lat_min=-10.0, lat_max=10.0, lon_min=30.0, lon_max=50.0)
#: The issue's split (calibration and training 1951-1995).
SPLITS = "{train: [1951-01, 1995-12], val: [1996-01, 2005-12], test: [2006-01, 2015-12]}"


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _raw(path: Path, name: str = "precip") -> np.ma.MaskedArray:
    with netCDF4.Dataset(path) as nc:
        return nc[name][...]


# ------------------------------------------------------------------------- cutting months


def test_a_cut_month_is_written_as_the_provider_writes_it(tmp_path: Path) -> None:
    path = cut(GPCC, tmp_path / "gpcc_2016-01.nc", months=("2016-01", "2016-01"))
    with netCDF4.Dataset(GPCC) as src, netCDF4.Dataset(path) as nc:
        assert nc.data_model == src.data_model == "NETCDF3_CLASSIC"
        assert set(nc.variables) == {"precip", "time", "lat", "lon"}
        for name in ("precip", "time", "lat", "lon"):
            assert (
                nc[name].dtype == src[name].dtype and nc[name].dimensions == src[name].dimensions
            )
            assert nc[name].ncattrs() == src[name].ncattrs()
            for attr in src[name].ncattrs():  # units "mm", delta_t, missing_value: unchanged
                np.testing.assert_array_equal(nc[name].getncattr(attr), src[name].getncattr(attr))
        np.testing.assert_array_equal(nc["lon"][:], src["lon"][:])  # 336.25 ... 58.75
        np.testing.assert_array_equal(nc["lat"][:], src["lat"][:])  # north to south
        assert nc["time"][:].tolist() == [src["time"][-1]]
        got, want = nc["precip"][...], src["precip"][-1:, ...]
        assert np.array_equal(got.mask, want.mask)
        np.testing.assert_array_equal(got.compressed(), want.compressed())  # bit for bit
        lines = nc.history.splitlines()
        assert "hydrology.realdata.cut" in lines[0] and lines[1:] == src.history.splitlines()
    one = open_grids(path, chunks=None)
    full = open_grids(GPCC, chunks=None).sel(time=["2016-01-01"])
    assert one.attrs["time_step"] == "month"
    xr.testing.assert_identical(one["tp"], full["tp"])


@pytest.mark.parametrize(
    "box",
    [Box(-5.0, 5.0, -20.0, 10.0), Box(-5.0, 5.0, 340.0, 10.0)],
    ids=["lon-180..180", "lon-0..360"],
)
def test_a_region_across_the_meridian_keeps_the_files_order(box: Box, tmp_path: Path) -> None:
    path = cut(GPCC, tmp_path / "west.nc", months=("2015-11", "2016-01"), region=box)
    lon, lat = _raw(path, "lon"), _raw(path, "lat")
    assert lon.tolist() == [341.25 + 2.5 * i for i in range(8)] + [1.25, 3.75, 6.25, 8.75]
    assert lat.tolist() == [3.75, 1.25, -1.25, -3.75]
    src_lon, src_lat = _raw(GPCC, "lon"), _raw(GPCC, "lat")
    ix = [int(np.flatnonzero(src_lon == x)[0]) for x in lon]
    iy = [int(np.flatnonzero(src_lat == y)[0]) for y in lat]
    want = _raw(GPCC)[-3:][:, iy][:, :, ix]
    got = _raw(path)
    assert np.array_equal(got.mask, want.mask) and np.array_equal(
        got.compressed(), want.compressed()
    )
    np.testing.assert_array_equal(_raw(path, "time"), _raw(GPCC, "time")[-3:])


@pytest.mark.parametrize(
    ("months", "region", "names"),
    [
        (("2017-01", "2017-12"), None, ("months 2017-01..2017-12", "'time'", "1946-01..2016-01")),
        ((None, None), Box(50.0, 60.0, 0.0, 10.0), ("'lat'", "50..60")),
        ((None, None), Box(0.0, 10.0, 100.0, 120.0), ("'lon'", "100..120")),
        ((None, None), Box(10.0, 0.0, 0.0, 10.0), ("inverted", "'lat'")),
    ],
    ids=["no-month", "no-lat", "no-lon", "inverted"],
)
def test_cut_refusals_name_the_file_and_variable(
    months: tuple[str | None, str | None],
    region: Box | None,
    names: tuple[str, ...],
    tmp_path: Path,
) -> None:
    with pytest.raises(DataError) as info:
        cut(GPCC, tmp_path / "piece.nc", months=months, region=region)
    msg = str(info.value)
    assert str(GPCC) in msg and "\n" not in msg
    for name in names:
        assert name in msg, (name, msg)
    assert not list(tmp_path.iterdir())  # refused before writing


# ------------------------------------------------------------------- the twin on 2016-01


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The user's downloads over East Africa: the record to 2015-12 and the month 2016-01;
    the whole-Africa 2016-01 (another grid), 2015-12 (already in the record) and the whole
    record to 2016-01 (as PSL publishes the file each month)."""
    d = tmp_path_factory.mktemp("downloads")
    return {
        "record": cut(
            GPCC, d / "gpcc_ea_1946-2015.nc", months=(None, "2015-12"), region=EAST_AFRICA
        ),
        "2016-01": cut(
            GPCC, d / "gpcc_ea_2016-01.nc", months=("2016-01",) * 2, region=EAST_AFRICA
        ),
        "2015-12": cut(
            GPCC, d / "gpcc_ea_2015-12.nc", months=("2015-12",) * 2, region=EAST_AFRICA
        ),
        "africa": cut(GPCC, d / "gpcc_africa_2016-01.nc", months=("2016-01", "2016-01")),
        "whole": cut(GPCC, d / "gpcc_ea_1946-2016.nc", region=EAST_AFRICA),
    }


@pytest.fixture(scope="module")
def run_dir(files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny precipitation-only forecaster of the GPCC config trained on the record (two
    short epochs: the plumbing, not the skill; the skill is benchmarks/drought_gpcc_skill.py)."""
    cfg = load_config(
        CONFIG,
        [
            f"workdir={tmp_path_factory.mktemp('runs')}",
            "tracking.enabled=false",
            f"task.params.path={files['record']}",
            f"task.params.splits={SPLITS}",
            "task.params.seq_len=12",
            "task.params.hidden=8",
            "task.params.members=1",
            "task.params.val_subsample=1",
            "task.params.output_patience=0",
            "train.epochs=2",
            "train.max_steps_per_epoch=6",
            "train.val_every=6",
            "train.batch_size=128",
        ],
    )
    train_process(cfg, progress=False)
    return cfg.run_dir


@pytest.fixture(scope="module")
def template(
    run_dir: Path, files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The twin made from the run at 2015-12 (Python API, defaults)."""
    path = tmp_path_factory.mktemp("template") / "twin"
    DroughtTwin.create(path, DroughtInit(run=run_dir, data=[files["record"]]))
    return path


def _issued_by_the_run(twin: DroughtTwin, run_dir: Path) -> None:
    """The twin's alerts are what the run's model forecasts from the twin's history (the same
    weights and inputs through the same float32 network: bit-equal)."""
    fc = ModelForecaster.from_run(run_dir).forecast(twin.monthly_history())
    np.testing.assert_array_equal(twin.alerts()["spi_3"].values, fc["spi_3"].values)


@pytest.mark.slow
def test_twin_follows_gpcc_into_2016_through_the_cli(
    run_dir: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dir_snapshot,
) -> None:
    twin_dir = tmp_path / "twin"
    rc, out, err = _cli(
        capsys, "twin", "init", twin_dir, "--kind", "hydrology", "--run", run_dir,
        "--data", files["record"],
    )  # fmt: skip
    assert rc == 0, err
    st = json.loads(out.strip().splitlines()[-1])
    assert (st["cursor"], st["issue"], st["version"]) == ("2015-12", "2015-12", 0)
    twin = DroughtTwin.open(twin_dir)
    # a precipitation-only record: the default indices it can give, then the model's target
    assert twin.indices.names == ["spi_1", "spi_3", "spi_6"]
    assert (twin.indices.cal_start, twin.indices.cal_end) == ("1951-01-01", "1995-12-31")
    assert set(twin.monthly_history().data_vars) == {"pr", "spi_1", "spi_3", "spi_6"}
    assert [Path(p).name for p in st["maps"]] == ["alerts_2015-12_spi_3.png"]
    _issued_by_the_run(twin, run_dir)

    rc, out, err = _cli(capsys, "twin", "update", twin_dir, "--data", files["2016-01"])
    assert rc == 0, err
    res = json.loads(out.strip().splitlines()[-1])
    assert (res["noop"], res["version"], res["cursor"], res["months"]) == (
        False,
        1,
        "2016-01",
        ["2016-01"],
    )
    twin = DroughtTwin.open(twin_dir)
    _issued_by_the_run(twin, run_dir)
    hist = twin.monthly_history()
    full = open_grids(GPCC, chunks=None).sel(lat=slice(-10, 10), lon=slice(30, 50)).load()
    jan = full["tp"].sel(time="2016-01-01")
    # pr is January's amount over its 31 days; float32 mm divided in float64 (rtol 6e-8)
    np.testing.assert_allclose(hist["pr"].sel(time="2016-01-01"), jan / 31.0, rtol=1e-6)
    # SPI-3 of 2016-01 from the stored parameters and the history equals the same
    # parameters applied to the whole record at once: the same gamma fit and the same
    # three-month sums, up to float64 rounding of sums of O(100) mm/month (~1e-13)
    # carried through the gamma CDF and the normal quantile (|dz/dx| < 1e2): atol 1e-9.
    spi = twin.indices.transform(full)["spi_3"].sel(time="2016-01-01")
    np.testing.assert_allclose(hist["spi_3"].sel(time="2016-01-01"), spi, rtol=0, atol=1e-9)

    # the alert map of the month, drawn from the stored categories
    png = Path(res["maps"][0])
    assert png.name == "alerts_2016-01_spi_3.png" and png.parent.parent.name == "v000001"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    alerts = twin.alerts()
    fig = alert_map(alerts, "spi_3")
    for i, ax in enumerate(fig.axes[:3]):
        drawn = np.ma.masked_invalid(ax.collections[0].get_array()).reshape(8, 8)
        stored = alerts["category_spi_3"].isel(lead=i).values  # NaN: no data
        np.testing.assert_array_equal(drawn.filled(-1), np.nan_to_num(stored, nan=-1))
    assert twin.status().maps == [png]

    # the same month twice: exit 10, nothing written; a second download of it likewise
    before = dir_snapshot(twin_dir, skip_lock=True)
    rc, out, err = _cli(capsys, "twin", "update", twin_dir, "--data", files["2016-01"])
    assert rc == EXIT_NOTHING_NEW, err
    assert json.loads(out.strip().splitlines()[-1])["noop"] is True
    again = cut(
        GPCC, tmp_path / "gpcc_2016-01_again.nc", months=("2016-01",) * 2, region=EAST_AFRICA
    )
    result = DroughtTwin.open(twin_dir).update(again)
    assert result.noop and result.version == 1 and result.maps == [png]
    assert dir_snapshot(twin_dir, skip_lock=True) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "code", "names"),
    [
        ("africa", 3, ("gpcc_africa_2016-01.nc", "'lat'", "32 values", "twin has 8")),
        ("2015-12", 3, ("gpcc_ea_2015-12.nc", "2015-12", "already ingested", "'time'")),
        ("whole", 3, ("gpcc_ea_1946-2016.nc", "1946-01", "the new months are 2016-01..2016-01")),
    ],
)
def test_wrong_real_months_are_refused_and_change_nothing(
    case: str,
    code: int,
    names: tuple[str, ...],
    template: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dir_snapshot,
) -> None:
    twin_dir = tmp_path / "twin"
    shutil.copytree(template, twin_dir)
    before = dir_snapshot(twin_dir, skip_lock=True)
    rc, _, err = _cli(capsys, "twin", "update", twin_dir, "--data", files[case])
    errors = [ln for ln in err.splitlines() if ln.startswith("twins: error:")]
    assert rc == code and len(errors) == 1, err
    for name in names:
        assert name in errors[0], (name, errors[0])
    if case == "whole":  # the record as the provider publishes it: the hint says what to give
        assert "twins: hint: give 2016-01..2016-01 only, e.g. hydrology.realdata.cut(" in err
    assert dir_snapshot(twin_dir, skip_lock=True) == before


@pytest.mark.slow
def test_an_index_the_record_cannot_give_is_refused(
    run_dir: Path,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dir_snapshot,
) -> None:
    before = dir_snapshot(tmp_path)
    rc, _, err = _cli(
        capsys, "twin", "init", tmp_path / "twin", "--kind", "hydrology", "--run", run_dir,
        "--data", files["record"], "--indices", "spi_12", "ssmi_1",
    )  # fmt: skip
    errors = [ln for ln in err.splitlines() if ln.startswith("twins: error:")]
    assert rc == 2 and len(errors) == 1, err
    msg = errors[0]
    assert "--indices: 'ssmi_1' needs soil moisture 'swvl1'" in msg, msg
    assert str(files["record"]) in msg and "(it holds tp)" in msg and "spi_12" not in msg
    assert dir_snapshot(tmp_path) == before
