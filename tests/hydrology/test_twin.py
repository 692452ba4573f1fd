"""The drought twin: init, update (transactional, idempotent, locked), rejects, simulate,
status, history and rollback, in Python and through the core command line."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import xarray as xr

from hydrology.forecast import PersistenceForecaster
from hydrology.gates import Gates
from hydrology.indices import DroughtIndices
from hydrology.synthetic import generate, write_netcdf
from hydrology.twin import (
    ALERT_THRESHOLDS,
    DroughtStatus,
    DroughtTwin,
    DroughtUpdateOptions,
    Region,
    Scenario,
    alert_categories,
)
from twins.cli import main
from twins.errors import ConfigError, DataError
from twins.twin import (
    EXIT_NOTHING_NEW,
    RollbackResult,
    TwinLockedError,
    TwinStore,
    TwinVersionError,
)

WORKER = Path(__file__).with_name("_drought_twin_worker.py")
INDICES = ("spi_1", "spi_3", "spi_6", "ssmi_1")
ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    return env


def _daily(ds: xr.Dataset) -> xr.Dataset:
    return ds.drop_vars(["drought_forcing", "drought_mask"])


@pytest.fixture(scope="module")
def data() -> xr.Dataset:
    """The tiny preset (2000-2007, 12 x 12), without the ground-truth variables."""
    return _daily(generate("tiny"))


@pytest.fixture(scope="module")
def template(data: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A twin initialised on 2000-01..2007-10 (persistence of SPI-3 and SSMI-1)."""
    base = data.sel(time=slice(None, "2007-10-31"))
    indices = DroughtIndices(INDICES, "2000-01-01", "2005-12-31").fit(base)
    path = tmp_path_factory.mktemp("template") / "twin"
    DroughtTwin.init(path, base, PersistenceForecaster(("spi_3", "ssmi_1")), indices)
    return path


@pytest.fixture(scope="module")
def files(data: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Daily NetCDF files of the new months 2007-11 and 2007-12."""
    d = tmp_path_factory.mktemp("incoming")
    return {
        m: write_netcdf(data.sel(time=m), d / f"era5land_{m}.nc") for m in ("2007-11", "2007-12")
    }


@pytest.fixture()
def twin_dir(template: Path, tmp_path: Path) -> Path:
    """A fresh copy of the template twin."""
    target = tmp_path / "twin"
    shutil.copytree(template, target)
    return target


def _products(twin_dir: Path, version: int) -> dict[str, bytes]:
    pdir = twin_dir / "versions" / f"v{version:06d}" / "products"
    return {p.relative_to(pdir).as_posix(): p.read_bytes() for p in sorted(pdir.rglob("*.nc"))}


# ------------------------------------------------------------------------------------- init


def test_init_stores_params_history_and_alerts(template: Path) -> None:
    twin = DroughtTwin.open(template)
    st = twin.status()
    assert isinstance(st, DroughtStatus)
    assert st.cursor == "2007-10" and st.version == 0 and st.issue == "2007-10"
    assert st.model_ref == "persistence" and st.kind == "hydrology"
    assert set(st.alerts) == {"spi_3", "ssmi_1"}
    names = sorted(p.name for p in (template / "versions/v000000/products").iterdir())
    assert names == ["alerts_2007-10.nc", "history.nc", "indices.nc"]
    hist = twin.monthly_history()
    # spi_6 needs 5 months before the first new month, persistence 1; plus the margin
    assert hist.sizes["time"] == 5 + 12
    assert str(hist.time.values[-1])[:7] == "2007-10"
    assert {"pr", "wb", "sm", "t2m", "lsm", "z", *INDICES} <= set(hist.data_vars)
    assert twin.indices.names == list(INDICES)
    assert "spi_3 lead 1" in st.text
    assert [r.version for r in twin.history()] == [0]  # the core's version history


# ----------------------------------------------------------------------------------- update


def test_update_advances_cursor_and_matches_full_recompute(
    twin_dir: Path, data: xr.Dataset, files: dict[str, Path]
) -> None:
    twin = DroughtTwin.open(twin_dir)
    r1 = twin.update(files["2007-11"])
    assert (r1.noop, r1.version, r1.cursor, r1.months) == (False, 1, "2007-11", ["2007-11"])
    r2 = twin.update(files["2007-12"])
    assert (r2.version, r2.cursor, r2.issue) == (2, "2007-12", "2007-12")
    assert TwinStore.open(twin_dir).state.cursor == "2007-12"
    assert TwinStore.open(twin_dir).verify() == []
    # indices from stored parameters == a full recompute on the concatenated daily record
    full = twin.indices.transform(data)
    hist = twin.monthly_history()
    for name in INDICES:
        want = full[name].sel(time=hist.time).values
        np.testing.assert_allclose(hist[name].values, want, rtol=0, atol=1e-9, err_msg=name)
    assert r2.alerts_file.is_file() and r2.alerts_file.name == "alerts_2007-12.nc"


def test_same_month_twice_is_a_noop(twin_dir: Path, files: dict[str, Path], dir_snapshot) -> None:
    twin = DroughtTwin.open(twin_dir)
    first = twin.update(files["2007-11"])
    before = dir_snapshot(twin_dir, skip_lock=True)
    again = twin.update(files["2007-11"])
    assert again.noop and again.version == first.version and again.cursor == "2007-11"
    assert again.alerts == first.alerts
    assert dir_snapshot(twin_dir, skip_lock=True) == before


def test_several_months_at_once(
    twin_dir: Path, template: Path, tmp_path: Path, files: dict[str, Path]
) -> None:
    both = DroughtTwin.open(twin_dir).update([files["2007-11"], files["2007-12"]])
    assert both.months == ["2007-11", "2007-12"] and both.version == 1
    assert both.cursor == "2007-12" and both.issue == "2007-12"
    seq_dir = tmp_path / "seq"
    shutil.copytree(template, seq_dir)
    seq = DroughtTwin.open(seq_dir)
    seq.update(files["2007-11"])
    seq.update(files["2007-12"])
    xr.testing.assert_allclose(DroughtTwin.open(twin_dir).monthly_history(), seq.monthly_history())
    xr.testing.assert_identical(DroughtTwin.open(twin_dir).alerts(), seq.alerts())


def test_alert_maps_are_cf_with_categories_matching_thresholds(
    twin_dir: Path, files: dict[str, Path]
) -> None:
    result = DroughtTwin.open(twin_dir).update(files["2007-11"])
    with netCDF4.Dataset(result.alerts_file) as nc:
        cat = nc["category_spi_3"]
        assert cat.dtype == np.int8
        assert list(cat.flag_values) == [0, 1, 2, 3]
        assert cat.flag_meanings == "none moderate severe extreme"
        assert list(cat.thresholds) == list(ALERT_THRESHOLDS)
        assert cat.dimensions == ("lead", "lat", "lon")
        assert nc["lat"].units == "degrees_north" and nc["lon"].units == "degrees_east"
        assert nc.Conventions.startswith("CF-")
    alerts = xr.open_dataset(result.alerts_file, mask_and_scale=False)
    fc = alerts["spi_3"].values
    cat = alerts["category_spi_3"].values
    land = np.isfinite(fc)
    expected = (fc < -1).astype(int) + (fc < -1.5) + (fc < -2)
    np.testing.assert_array_equal(cat[land], expected[land])
    assert np.all(cat[~land] == -1)
    counts = result.alerts["spi_3"]["1"]
    assert sum(counts.values()) == int(land[0].sum())
    assert counts["moderate"] == int(np.sum(cat[0] == 1))


def test_alert_categories_boundaries() -> None:
    v = np.array([0.0, -1.0, -1.01, -1.5, -1.51, -2.0, -2.5, np.nan])
    np.testing.assert_array_equal(alert_categories(v), [0, 0, 1, 1, 2, 2, 3, -1])


def test_concurrent_update_is_refused(twin_dir: Path, files: dict[str, Path]) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from twins.twin import TwinStore\n"
            f"s = TwinStore.open({str(twin_dir)!r})\n"
            "with s.transaction('holder', wait=True) as t:\n"
            "    print('locked', flush=True); sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(TwinLockedError, match=r"is locked by pid \d+") as info:
            DroughtTwin.open(twin_dir).update(files["2007-11"])
        assert "--wait" in info.value.hint
        assert TwinStore.open(twin_dir).state.cursor == "2007-10"
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)
    # once the holder is gone the update goes through (the holder committed v1)
    assert DroughtTwin.open(twin_dir).update(files["2007-11"]).cursor == "2007-11"


# ---------------------------------------------------------------------------- bad new data


def _bad(kind: str, data: xr.Dataset) -> xr.Dataset:
    nov = data.sel(time="2007-11").copy(deep=True)
    if kind == "wrong-grid":
        return nov.assign_coords(lat=nov.lat + 1.0)
    if kind == "missing-variable":
        return nov.drop_vars("swvl1")
    if kind == "gap":
        return data.sel(time="2007-12")
    if kind == "already-ingested":
        return data.sel(time="2007-10")
    if kind == "nan-only":
        nov["tp"] = nov["tp"] * np.nan
        return nov
    if kind == "nan-over-land":
        # sea cells get values (a filled product), every land cell is missing
        sea = (nov["lsm"] < 0.5).broadcast_like(nov["swvl1"])
        nov["swvl1"] = (
            xr.where(sea, 0.3, np.nan).astype("float32").assign_attrs(nov["swvl1"].attrs)
        )
        return nov
    if kind == "partial-month":
        return data.sel(time=slice("2007-11-01", "2007-11-20"))
    if kind == "monthly-steps":
        return (
            data.sel(time="2007-11").resample(time="MS").sum().assign(lsm=nov["lsm"], z=nov["z"])
        )
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "match"),
    [
        ("wrong-grid", r"grid does not match the twin \(variable 'lat'"),
        ("missing-variable", r"variable 'swvl1' is missing"),
        ("gap", r"first month 2007-12 does not follow the twin's cursor 2007-10 \(gap"),
        ("already-ingested", r"2007-10 does not follow .* \(already ingested"),
        ("nan-only", r"variable 'tp' is entirely NaN"),
        ("nan-over-land", r"variable 'swvl1' is entirely NaN over land in 2007-11"),
        ("partial-month", r"do not cover whole months \(variable 'time'"),
        ("monthly-steps", r"variable 'time'.*daily"),
    ],
)
def test_rejected_new_data(
    kind: str, match: str, twin_dir: Path, data: xr.Dataset, tmp_path: Path, dir_snapshot
) -> None:
    path = write_netcdf(_bad(kind, data), tmp_path / f"bad-{kind}.nc")
    before = dir_snapshot(twin_dir, skip_lock=True)
    with pytest.raises(DataError, match=match) as info:
        DroughtTwin.open(twin_dir).update(path)
    assert str(path) in str(info.value)
    assert dir_snapshot(twin_dir, skip_lock=True) == before
    assert TwinStore.open(twin_dir).verify() == []


def test_missing_file_is_rejected(twin_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        DroughtTwin.open(twin_dir).update(tmp_path / "nope.nc")


# ------------------------------------------------------------- implausible or unreadable data


def _nov_land(data: xr.Dataset) -> tuple[xr.Dataset, np.ndarray]:
    nov = data.sel(time="2007-11").copy(deep=True)
    return nov, nov["lsm"].values > 0.5


def _with(nov: xr.Dataset, name: str, values: np.ndarray, **attrs: str) -> xr.Dataset:
    nov[name] = nov[name].copy(data=values.astype(nov[name].dtype)).assign_attrs(**attrs)
    return nov


def _implausible(kind: str, data: xr.Dataset, path: Path) -> Path:
    """The new month 2007-11 spoiled as ``kind``, written to ``path``."""
    nov, land = _nov_land(data)
    if kind.startswith("netcdf3-cut-"):
        nov.to_netcdf(path, format="NETCDF3_64BIT")
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * int(kind[-2:]) / 100)])
        return path
    if kind == "time-without-units":
        nov = nov.assign_coords(time=np.arange(nov.sizes["time"], dtype=np.int64))
    elif kind == "tp-one-map-without-time":
        nov["tp"] = nov["tp"].isel(time=0, drop=True)
    elif kind == "ensemble-of-2":
        tp = nov["tp"]
        nov["tp"] = xr.concat([tp, tp], dim="number").assign_coords(number=[0, 1])
    else:
        tp = nov["tp"].values.copy()
        cell = tuple(np.argwhere(land)[5])
        if kind == "tp-negative":  # -5 mm/d over land
            tp[:, land] = -0.005
        elif kind == "tp-1e30-one-cell-day":
            tp[(12, *cell)] = 1e30
        elif kind == "tp-undeclared-fill":
            tp[(12, *cell)] = -32767.0
        elif kind == "tp-90pct-nan-over-land":
            cells = np.argwhere(land)
            for iy, ix in cells[: int(np.ceil(0.9 * len(cells)))]:
                tp[:, iy, ix] = np.nan
        elif kind == "swvl1-percent":
            nov = _with(nov, "swvl1", nov["swvl1"].values * 100)
        elif kind == "kelvin-labelled-degC":
            nov = _with(nov, "t2m", nov["t2m"].values, units="degC")
        else:
            raise AssertionError(kind)
        nov = _with(nov, "tp", tp)
    return write_netcdf(nov, path)


@pytest.mark.parametrize(
    ("kind", "needles"),
    [
        ("tp-negative", ("variable 'tp'", "-5 mm/day", "minimum -0.1 mm/day", "gates.tp.min")),
        ("tp-1e30-one-cell-day", ("variable 'tp'", "1e+33 mm/day", "1825", "gates.tp.max")),
        ("tp-undeclared-fill", ("variable 'tp'", "-32767", "undeclared fill value")),
        (
            "tp-90pct-nan-over-land",
            ("variable 'tp'", "of its land values in 2007-11", "bound 0.25", "missing share"),
        ),
        ("swvl1-percent", ("variable 'swvl1'", "maximum 1 m3 m-3", "gates.swvl1.max")),
        ("kelvin-labelled-degC", ("variable 't2m'", "maximum 340 K", "file units 'degC'")),
        ("netcdf3-cut-97", ("file truncated or unreadable", "variable '", "97.0% of the")),
        ("netcdf3-cut-60", ("file truncated or unreadable", "variable '", "60.0% of the")),
        ("time-without-units", ("variable 'time' is not decoded as dates", "int64")),
        ("ensemble-of-2", ("variable 'tp' has an extra dimension 'number' of size 2",)),
        ("tp-one-map-without-time", ("variable 'tp' has no 'time' dimension (dims: lat, lon)",)),
    ],
)
def test_implausible_or_unreadable_month_never_gets_in(
    kind: str,
    needles: tuple[str, ...],
    twin_dir: Path,
    data: xr.Dataset,
    tmp_path: Path,
    dir_snapshot,
) -> None:
    path = _implausible(kind, data, tmp_path / f"{kind}.nc")
    before = dir_snapshot(twin_dir, skip_lock=True)
    with pytest.raises(DataError) as info:
        DroughtTwin.open(twin_dir).update(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: "), msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert "\n" not in msg
    assert dir_snapshot(twin_dir, skip_lock=True) == before  # no alert, no history
    assert TwinStore.open(twin_dir).verify() == []


def test_valid_month_goes_in_after_a_refusal(
    twin_dir: Path, data: xr.Dataset, files: dict[str, Path], tmp_path: Path
) -> None:
    twin = DroughtTwin.open(twin_dir)
    with pytest.raises(DataError, match="undeclared fill"):
        twin.update(_implausible("tp-undeclared-fill", data, tmp_path / "fill.nc"))
    assert twin.update(files["2007-11"]).version == 1


def _equal_products(a: DroughtTwin, b: DroughtTwin, t2m_atol: float) -> None:
    ha, hb = a.monthly_history(), b.monthly_history()
    assert list(ha.data_vars) == list(hb.data_vars)
    for name in ha.data_vars:
        atol = t2m_atol if name == "t2m" else 0.0
        np.testing.assert_allclose(hb[name], ha[name], rtol=0, atol=atol, err_msg=str(name))
    np.testing.assert_array_equal(ha.time.values, hb.time.values)
    xr.testing.assert_identical(a.alerts(), b.alerts())
    assert a.status().alerts == b.status().alerts


# Largest error of a kelvin value that went through degC in float32: the degC file rounds
# T - 273.15 (|T - 273.15| < 32) to float32, <= ulp(32)/2 = 9.5e-7 K, and the conversion back
# in float32 rounds again, <= ulp(290)/2 = 1.5e-5 K; the sum is under one float32 ulp at
# 256-512 K (3.05e-5 K). Indices, forecasts and alerts do not read t2m: exact.
T2M_ATOL = float(np.spacing(np.float32(290.0)))


def test_declared_celsius_gives_the_products_of_kelvin(
    template: Path, data: xr.Dataset, files: dict[str, Path], tmp_path: Path
) -> None:
    nov = data.sel(time="2007-11").copy()
    nov["t2m"] = (nov["t2m"] - np.float32(273.15)).astype(np.float32).assign_attrs(units="degC")
    celsius = write_netcdf(nov, tmp_path / "nov_degC.nc")
    twins = {}
    for name, path in (("K", files["2007-11"]), ("degC", celsius)):
        shutil.copytree(template, tmp_path / name)
        twins[name] = DroughtTwin.open(tmp_path / name)
        twins[name].update(path)
    _equal_products(twins["K"], twins["degC"], T2M_ATOL)
    assert float(twins["degC"].monthly_history()["t2m"].isel(time=-1).mean()) > 250  # kelvin


@pytest.mark.parametrize("layout", ["noleap", "360_day", "noon-stamps"])
def test_model_calendars_and_noon_stamps_are_ingested(
    layout: str, template: Path, data: xr.Dataset, files: dict[str, Path], tmp_path: Path
) -> None:
    """November has 30 days in every calendar: the same 30 daily fields stamped on a model
    calendar, or at 12:00, must give exactly the products of the standard file (the monthly
    means add the same 30 float32 values; only the sum order may differ, which the float64
    accumulation of 30 values absorbs)."""
    nov = data.sel(time="2007-11")
    if layout == "noon-stamps":
        nov = nov.assign_coords(time=nov.time + np.timedelta64(12, "h"))
    else:
        t = xr.date_range("2007-11-01", periods=30, freq="D", calendar=layout, use_cftime=True)
        nov = nov.assign_coords(time=t)
    path = write_netcdf(nov, tmp_path / f"nov_{layout}.nc")
    got, ref = tmp_path / "got", tmp_path / "ref"
    shutil.copytree(template, got)
    shutil.copytree(template, ref)
    assert DroughtTwin.open(got).update(path).cursor == "2007-11"
    DroughtTwin.open(ref).update(files["2007-11"])
    _equal_products(DroughtTwin.open(ref), DroughtTwin.open(got), 0.0)


def test_gates_stored_at_init_and_widened_for_one_update(
    template: Path, twin_dir: Path, data: xr.Dataset, tmp_path: Path, dir_snapshot
) -> None:
    assert DroughtTwin.open(template).gates == Gates()
    path = _implausible("tp-negative", data, tmp_path / "neg.nc")
    twin = DroughtTwin.open(twin_dir)
    before = dir_snapshot(twin_dir, skip_lock=True)
    with pytest.raises(ValueError, match=r"gates: tp\.mn: Extra inputs"):
        twin.update(path, {"gates": ["tp.mn=-10"]})
    assert dir_snapshot(twin_dir, skip_lock=True) == before
    result = twin.update(path, DroughtUpdateOptions(gates=["tp.min=-10"]))
    assert result.version == 1 and result.record is not None
    assert result.record.summary["gates"]["tp"] == {"min": -10.0, "max": 1825.0}
    assert twin.gates == Gates()  # the stored gates are unchanged
    # a twin built with wider gates keeps them for every update
    base = data.sel(time=slice(None, "2007-10-31"))
    indices = DroughtIndices(INDICES, "2000-01-01", "2005-12-31").fit(base)
    with pytest.raises(ConfigError, match=r"gates: tp\.mn: Extra inputs"):
        DroughtTwin.init(
            tmp_path / "bad", base, PersistenceForecaster(), indices, gates={"tp.mn": 1}
        )
    assert not (tmp_path / "bad").exists()
    wide = DroughtTwin.init(
        tmp_path / "wide", base, PersistenceForecaster(), indices, gates={"tp.min": -10}
    )
    assert wide.gates.tp.min == -10.0
    assert wide.update(path).cursor == "2007-11"


def test_rollback_takes_a_bad_month_out(
    template: Path, twin_dir: Path, data: xr.Dataset, files: dict[str, Path], tmp_path: Path
) -> None:
    twin = DroughtTwin.open(twin_dir)
    v0_history, v0_alerts = twin.monthly_history(), twin.alerts()
    bad = _implausible("tp-negative", data, tmp_path / "neg.nc")
    got_in = twin.update(bad, {"gates": ["tp.min=-10"]})  # widened: the bad month gets in
    # the harm the gate prevents: no rain at all over land, SPI-3 alerts everywhere
    assert got_in.alerts["spi_3"]["1"]["none"] == 0
    back = twin.rollback(0)
    assert isinstance(back, RollbackResult)
    assert (back.version, back.action, back.cursor) == (2, "restore", "2007-10")
    assert (back.restored, back.undone, back.model_ref) == (0, (1, 1), "persistence")
    xr.testing.assert_identical(twin.monthly_history(), v0_history)
    xr.testing.assert_identical(twin.alerts(), v0_alerts)
    assert twin.status().cursor == "2007-10" and TwinStore.open(twin_dir).verify() == []
    assert [r.action for r in twin.history()] == ["init", "update", "restore"]
    with pytest.raises(TwinVersionError):
        twin.rollback(2)
    after = twin.update(files["2007-11"])
    assert (after.noop, after.version, after.cursor) == (False, 3, "2007-11")
    ref = tmp_path / "ref"
    shutil.copytree(template, ref)
    DroughtTwin.open(ref).update(files["2007-11"])
    _equal_products(DroughtTwin.open(ref), twin, 0.0)


def test_alert_maps_follow_the_versions(
    data: xr.Dataset, files: dict[str, Path], tmp_path: Path
) -> None:
    """A twin made with maps draws one PNG per target in every version; status names the
    current ones, a no-op draws none and a rollback brings the earlier maps back."""
    base = data.sel(time=slice(None, "2007-10-31"))
    indices = DroughtIndices(INDICES, "2000-01-01", "2005-12-31").fit(base)
    forecaster = PersistenceForecaster(("spi_3", "ssmi_1"))
    twin = DroughtTwin.init(tmp_path / "twin", base, forecaster, indices, maps=True)
    v0 = twin.status().maps
    assert [m.name for m in v0] == ["alerts_2007-10_spi_3.png", "alerts_2007-10_ssmi_1.png"]
    v0_bytes = [m.read_bytes() for m in v0]
    assert all(b[:8] == b"\x89PNG\r\n\x1a\n" for b in v0_bytes)
    result = twin.update(files["2007-11"])
    assert [m.name for m in result.maps] == [
        "alerts_2007-11_spi_3.png",
        "alerts_2007-11_ssmi_1.png",
    ]
    assert all(m.parent.parent.name == "v000001" for m in result.maps)
    assert twin.status().maps == result.maps
    again = twin.update(files["2007-11"])
    assert again.noop and again.maps == result.maps
    twin.rollback(0)
    back = twin.status().maps
    assert [m.name for m in back] == [m.name for m in v0]
    assert [m.read_bytes() for m in back] == v0_bytes
    # a twin made without maps (the default of init) names none
    assert DroughtTwin.init(tmp_path / "plain", base, forecaster, indices).status().maps == []


# --------------------------------------------------------------------------------- simulate


def test_simulate_leaves_twin_unchanged_and_drier_means_lower_spi(
    twin_dir: Path, dir_snapshot
) -> None:
    twin = DroughtTwin.open(twin_dir)
    before = dir_snapshot(twin_dir)
    hist = twin.monthly_history()
    lat, lon = hist.lat.values, hist.lon.values
    region = Region(lat_min=lat[2], lat_max=lat[8], lon_min=lon[3], lon_max=lon[9])
    sim = twin.simulate(Scenario(precip_scale=0.5, temp_shift=2.0, region=region, months=3))
    assert dir_snapshot(twin_dir) == before
    diff = sim.dataset
    assert sim.issue_month == "2007-10" and sim.modified_months == ("2007-08", "2007-10")
    assert sim.scenario["region"]["lat_min"] == lat[2]
    inside = (
        (diff.lat >= lat[2]) & (diff.lat <= lat[8]) & (diff.lon >= lon[3]) & (diff.lon <= lon[9])
    )
    d = diff["spi_3"].isel(lead=0)
    land = np.isfinite(d)
    assert float(d.where(inside & land).max()) < 0  # drier everywhere in the box
    assert float(abs(d.where(~inside & land)).max()) == 0  # unchanged outside
    assert float(diff["delta_spi_1"].where(inside & land).max()) < 0
    np.testing.assert_allclose(
        diff["spi_3"], diff["scenario_spi_3"] - diff["baseline_spi_3"], atol=1e-6
    )
    # the printed summary is the dataset's: the float64 mean over finite cells, per lead (the
    # same numpy reduction on the same values: exact)
    lead1 = float(np.nanmean(diff["spi_3"].isel(lead=0).values.astype(np.float64)))
    assert sim.variables["spi_3"].mean_per_lead is not None
    assert sim.variables["spi_3"].mean_per_lead["1"] == lead1
    assert "dataset" not in json.loads(sim.to_json())
    wetter = twin.simulate({"precip_scale": 1.5, "months": 2}).dataset
    assert float(wetter["spi_3"].isel(lead=0).mean()) > 0
    neutral = twin.simulate(Scenario()).dataset
    assert float(abs(neutral["spi_3"]).max()) == 0


def test_temperature_shift_lowers_water_balance_only(twin_dir: Path) -> None:
    twin = DroughtTwin.open(twin_dir)
    sim = twin.simulate(Scenario(temp_shift=3.0, start="2007-09", end="2007-10"))
    diff = sim.dataset
    assert float(abs(diff["delta_spi_1"]).max()) == 0  # SPI sees precipitation only
    assert diff.attrs["modified_months"] == "2007-09..2007-10"
    assert sim.modified_months == ("2007-09", "2007-10")


def test_scenario_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="precip_scal"):
        Scenario.model_validate({"precip_scal": 0.5})
    with pytest.raises(ValueError, match="either"):
        Scenario(months=2, start="2007-01")
    # the command line's four numbers, either end first, are a box
    box = Scenario.model_validate({"region": [49.6, 49.0, 5.8, 5.2]}).region
    assert box == Region(lat_min=49.0, lat_max=49.6, lon_min=5.2, lon_max=5.8)
    with pytest.raises(ValueError, match="4 numbers"):
        Scenario.model_validate({"region": [49.0, 49.6, 5.2]})


# -------------------------------------------------------------------------------------- CLI


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    """``twins ARGV`` in this process: exit code, stdout, stderr."""
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_twin_commands_update_simulate_status_history_rollback(
    twin_dir: Path, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = _cli(capsys, "twin", "update", twin_dir, "--data", files["2007-11"])
    up = _last_json(out)
    assert rc == 0 and (up["cursor"], up["noop"], up["version"]) == ("2007-11", False, 1)
    assert up["months"] == ["2007-11"] and up["action"] == "update" and "record" not in up
    assert Path(up["alerts_file"]).name == "alerts_2007-11.nc"
    assert sum(up["alerts"]["spi_3"]["1"].values()) > 0
    again = _cli(capsys, "twin", "update", twin_dir, "--data", files["2007-11"], "--wait")
    assert again[0] == EXIT_NOTHING_NEW  # the same month again: nothing new, for schedulers
    assert _last_json(again[1])["noop"]
    box = ["--region", "49.6", "49", "5.2", "5.8"]  # either end first
    rc, out, _ = _cli(capsys, "twin", "simulate", twin_dir, "--precip-scale", "0.5", *box)
    sim = _last_json(out)
    assert rc == 0 and sim["variables"]["spi_3"]["mean"] < 0 and "dataset" not in sim
    assert sim["scenario"]["region"] == {
        "lat_min": 49.0,
        "lat_max": 49.6,
        "lon_min": 5.2,
        "lon_max": 5.8,
    }
    assert sim["scenario"]["months"] == 3 and sim["modified_months"] == ["2007-09", "2007-11"]
    period = ["--temp-shift", "3", "--start", "2007-09", "--end", "2007-10"]
    rc, out, _ = _cli(capsys, "twin", "simulate", twin_dir, *period)
    assert rc == 0 and _last_json(out)["modified_months"] == ["2007-09", "2007-10"]
    rc, out, _ = _cli(capsys, "twin", "status", twin_dir)
    assert rc == 0 and "cursor       2007-11" in out and "spi_3 lead 1" in out
    rc, out, _ = _cli(capsys, "twin", "status", twin_dir, "--json")
    st = _last_json(out)
    assert (st["issue"], st["version"], st["kind"]) == ("2007-11", 1, "hydrology")
    assert st["alerts"] == up["alerts"]
    rc, out, _ = _cli(capsys, "twin", "history", twin_dir)
    lines = out.strip().splitlines()
    assert rc == 0 and [ln.split()[:2] for ln in lines] == [["v0", "init"], ["v1", "update"]]
    rc, out, _ = _cli(capsys, "twin", "rollback", twin_dir, "--to", "0")
    back = _last_json(out)
    assert rc == 0 and (back["version"], back["restored"], back["cursor"]) == (2, 0, "2007-10")
    assert DroughtTwin.open(twin_dir).status().issue == "2007-10"
    assert TwinStore.open(twin_dir).verify() == []


def test_gates_flag_widens_one_update_and_a_bad_key_exits_2(
    twin_dir: Path,
    data: xr.Dataset,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    dir_snapshot,
) -> None:
    path = _implausible("tp-negative", data, tmp_path / "neg.nc")
    before = dir_snapshot(twin_dir, skip_lock=True)
    rc, _, err = _cli(capsys, "twin", "update", twin_dir, "--data", path)
    assert rc == 3 and "gates.tp.min" in err  # the message names the key that widens it
    for bad in (["tp.mn=-10"], ["tp.min"], ["tp.min=wet"]):
        rc, _, err = _cli(capsys, "twin", "update", twin_dir, "--data", path, "--gates", *bad)
        errors = [ln for ln in err.splitlines() if ln.startswith("twins: error:")]
        assert rc == 2 and len(errors) == 1, err
        assert "--gates" in errors[0] and bad[0].split("=")[0] in errors[0], errors[0]
    assert dir_snapshot(twin_dir, skip_lock=True) == before
    wide = ["--gates", "tp.min=-10", "max_missing_share=0.5"]
    rc, out, _ = _cli(capsys, "twin", "update", twin_dir, "--data", path, *wide)
    assert rc == 0 and _last_json(out)["cursor"] == "2007-11"
    gates = TwinStore.open(twin_dir).record(1).summary["gates"]
    assert gates["tp"]["min"] == -10.0 and gates["max_missing_share"] == 0.5
    assert DroughtTwin.open(twin_dir).gates == Gates()  # the stored gates are unchanged


def test_simulate_flags_refused_before_anything_runs(
    twin_dir: Path, capsys: pytest.CaptureFixture[str], dir_snapshot
) -> None:
    before = dir_snapshot(twin_dir, skip_lock=True)
    with pytest.raises(SystemExit) as info:  # argparse: 3 numbers for a 4-number flag
        _cli(capsys, "twin", "simulate", twin_dir, "--region", "49", "49.6", "5.2")
    assert info.value.code == 2
    for args, names in (
        (["--precip-scale", "-1"], ("--precip-scale", "greater than or equal to 0")),
        (["--region", "91", "0", "5", "6"], ("--region", "lat_max")),
        (["--months", "2", "--start", "2007-01"], ("either",)),
        (["--start", "2007-13"], ("2007-13",)),
    ):
        rc, _, err = _cli(capsys, "twin", "simulate", twin_dir, *args)
        assert rc == 2, (args, err)
        assert all(n in err for n in names), (args, err)
    assert dir_snapshot(twin_dir, skip_lock=True) == before


def _has_hydrology_domain() -> bool:
    from twins.domains import domains

    return "hydrology" in domains()


@pytest.mark.skipif(not _has_hydrology_domain(), reason="hydrology entry point not installed")
def test_cli_twin_commands(twin_dir: Path, files: dict[str, Path]) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "twins", "twin", *args],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=120,
        )

    # the console entry point in a fresh process; every subcommand's behaviour is tested
    # in-process by test_twin_commands_update_simulate_status_history_rollback
    up = run("update", str(twin_dir), "--data", str(files["2007-11"]))
    assert up.returncode == 0, up.stderr
    assert _last_json(up.stdout)["cursor"] == "2007-11"
    bad = run("update", str(twin_dir), "--data", str(files["2007-11"]).replace("11", "13"))
    assert bad.returncode != 0 and "twins: error:" in bad.stderr and "Traceback" not in bad.stderr


# ------------------------------------------------------------------------------------ crash


def _worker(twin_dir: Path, data: Path, *point: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(twin_dir), str(data), *point],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )


@pytest.mark.slow
def test_sigkill_during_update_leaves_twin_intact_and_retry_matches(
    template: Path, tmp_path: Path, files: dict[str, Path]
) -> None:
    """Kill an update at each commit step and at random instants; the twin stays intact and the
    retry produces exactly the products of an uninterrupted update."""
    ref_dir = tmp_path / "reference"
    shutil.copytree(template, ref_dir)
    proc = _worker(ref_dir, files["2007-11"])
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    ready = time.perf_counter()
    assert proc.wait(timeout=120) == 0
    duration = time.perf_counter() - ready
    reference = _products(ref_dir, 1)
    assert set(reference) == {"alerts_2007-11.nc", "history.nc"}

    rng = random.Random(20241105)
    trials: list[tuple[str, float]] = [("point", 0.0)] * 4 + [("random", 0.0)] * 3
    points = iter(["staged", "renamed", "history", "committed"])
    outcomes = []
    for i, (mode, _) in enumerate(trials):
        directory = tmp_path / f"trial{i}"
        shutil.copytree(template, directory)
        if mode == "point":
            point = next(points)
            proc = _worker(directory, files["2007-11"], point)
            assert proc.wait(timeout=120) == -signal.SIGKILL
        else:
            proc = _worker(directory, files["2007-11"])
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, duration * 1.1))
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        store = TwinStore.open(directory)
        state = store.state
        assert state.version in (0, 1)
        assert store.verify() == []
        outcomes.append(state.version)
        if state.version == 0:
            assert state.cursor == "2007-10"
        else:
            assert state.cursor == "2007-11"
            assert _products(directory, 1) == reference
        retry = DroughtTwin.open(directory).update(files["2007-11"])
        assert retry.noop == (state.version == 1)
        assert retry.version == 1 and retry.cursor == "2007-11"
        assert TwinStore.open(directory).verify() == []
        assert _products(directory, 1) == reference
        assert not list((directory / "staging").iterdir())
    assert 0 in outcomes and 1 in outcomes, outcomes
