"""Plausibility gates of the ingest: every refusal names file, variable, value and bound;
valid variants (declared percent, degC, sub-daily bursts) pass; bounds are configurable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology.gates import FILL_SENTINELS, GATE_UNITS, Bound, Gates, check_gates, parse_overrides
from hydrology.io import open_grids
from hydrology.synthetic import SyntheticParams, generate, write_netcdf
from twins.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def small() -> xr.Dataset:
    """6 x 5 cells (24 land), January-March 2001, canonical ERA5 units."""
    ds = generate(SyntheticParams(nlat=6, nlon=5, start="2001-01-01", years=1, seed=7))
    return ds.drop_vars(["drought_forcing", "drought_mask"]).sel(time=slice(None, "2001-03-31"))


def _land(ds: xr.Dataset) -> np.ndarray:
    return ds["lsm"].values > 0.5


def _set(ds: xr.Dataset, name: str, values: np.ndarray, **attrs: str) -> xr.Dataset:
    out = ds.copy()
    out[name] = ds[name].copy(data=values.astype(ds[name].dtype)).assign_attrs(**attrs)
    return out


def _cell(ds: xr.Dataset, name: str, value: float, step: int = 40) -> xr.Dataset:
    """``value`` in one land cell at one step of ``name``."""
    v = ds[name].values.copy()
    iy, ix = np.argwhere(_land(ds))[3]
    if v.ndim == 3:
        v[step, iy, ix] = value
    else:
        v[iy, ix] = value
    return _set(ds, name, v)


def _over_land(ds: xr.Dataset, name: str, fn: Callable[[np.ndarray], np.ndarray]) -> xr.Dataset:
    v = ds[name].values.copy()
    land = _land(ds)
    v[:, land] = fn(v[:, land])
    return _set(ds, name, v)


def _missing_in_february(ds: xr.Dataset, share: float) -> xr.Dataset:
    """``share`` of the land cell-days of February 2001 set to NaN in ``tp``."""
    v = ds["tp"].values.copy()
    feb = np.flatnonzero(pd.DatetimeIndex(ds.time.values).month == 2)
    cells = np.argwhere(_land(ds))
    n_missing = int(round(share * cells.shape[0]))
    for iy, ix in cells[:n_missing]:
        v[feb, iy, ix] = np.nan
    return _set(ds, "tp", v)


# (case, mutation, variable, substrings the message must hold: value or share, bound)
REFUSED: list[tuple[str, Callable[[xr.Dataset], xr.Dataset], str, tuple[str, ...]]] = [
    (
        "negative-precipitation",  # -5 mm/d over land
        lambda d: _over_land(d, "tp", lambda v: np.full_like(v, -0.005)),
        "tp",
        ("-5 mm/day", "below the plausible minimum -0.1 mm/day", "gates.tp.min"),
    ),
    (
        "precipitation-1e30",  # one land cell-day, ERA5 metres: 1e33 mm/day
        lambda d: _cell(d, "tp", 1e30),
        "tp",
        ("1e+33 mm/day", "above the plausible maximum 1825 mm/day", "gates.tp.max"),
    ),
    (
        "undeclared-fill-32767",
        lambda d: _cell(d, "tp", -32767.0),
        "tp",
        ("-32767", "undeclared fill value", "no _FillValue", "gates.fill_sentinels"),
    ),
    (
        "undeclared-fill-9999-t2m",
        lambda d: _cell(d, "t2m", -9999.0),
        "t2m",
        ("-9999", "undeclared fill value", "gates.fill_sentinels"),
    ),
    (
        "undeclared-netcdf-default-fill",
        lambda d: _cell(d, "swvl1", 9.96921e36),
        "swvl1",
        ("9.96921e+36", "undeclared fill value", "gates.fill_sentinels"),
    ),
    (
        "undeclared-cmip-fill",
        lambda d: _cell(d, "pev", 1e20),
        "pev",
        ("1e+20", "undeclared fill value", "gates.fill_sentinels"),
    ),
    (
        "temperature-infinite",
        lambda d: _cell(d, "t2m", np.inf),
        "t2m",
        ("holds the value inf at time=", "values must be finite", "gates.t2m.max"),
    ),
    (
        "soil-water-percent",  # x100, still labelled m3 m-3
        lambda d: _set(d, "swvl1", d["swvl1"].values * 100),
        "swvl1",
        ("m3 m-3", "above the plausible maximum 1 m3 m-3", "gates.swvl1.max"),
    ),
    (
        "kelvin-labelled-degC",  # 290 degC = 563 K
        lambda d: _set(d, "t2m", d["t2m"].values, units="degC"),
        "t2m",
        ("K", "above the plausible maximum 340 K", "gates.t2m.max", "file units 'degC'"),
    ),
    (
        "celsius-labelled-K",
        lambda d: _set(d, "t2m", d["t2m"].values - 273.15),
        "t2m",
        ("below the plausible minimum 170 K", "gates.t2m.min"),
    ),
    (
        "potential-evaporation-in-mm-labelled-m",  # 1000x: metres of mm values
        lambda d: _set(d, "pev", d["pev"].values * 1000),
        "pev",
        ("evaporation positive", "above the plausible maximum 50 mm/day", "gates.pev.max"),
    ),
    (
        "land-sea-mask-percent-labelled-fraction",
        lambda d: _set(d, "lsm", d["lsm"].values * 100),
        "lsm",
        ("value 100 at", "above the plausible maximum 1 (", "gates.lsm.max"),
    ),
    (
        "orography-implausible",
        lambda d: _set(d, "z", d["z"].values * 1000),  # geopotential 1000x: ~300 km high
        "z",
        ("m", "above the plausible maximum 9000 m", "gates.z.max"),
    ),
    (
        "precipitation-90pct-missing-over-land",
        lambda d: _missing_in_february(d, 0.9),
        "tp",
        ("misses 91.7% of its land values in 2001-02", "0.917", "bound 0.25", "max_missing_share"),
    ),
]


@pytest.mark.parametrize(
    ("case", "mutate", "variable", "needles"), REFUSED, ids=[c[0] for c in REFUSED]
)
def test_refused_with_file_variable_value_and_bound(
    case: str,
    mutate: Callable[[xr.Dataset], xr.Dataset],
    variable: str,
    needles: tuple[str, ...],
    small: xr.Dataset,
    tmp_path: Path,
) -> None:
    path = write_netcdf(mutate(small), tmp_path / f"{case}.nc")
    with pytest.raises(DataError) as info:
        open_grids(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: variable '{variable}'"), msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    assert "\n" not in msg


def test_valid_data_and_declared_units_pass(small: xr.Dataset, tmp_path: Path) -> None:
    check_gates(small, "mem", Gates())
    ok = small.copy()
    ok["swvl1"] = (small["swvl1"] * 100).assign_attrs(units="%")  # declared percent
    ok["lsm"] = (small["lsm"] * 100).assign_attrs(units="%")
    ok["t2m"] = (small["t2m"] - 273.15).assign_attrs(units="degC")  # declared Celsius
    ok["z"] = (small["z"] / 9.80665).assign_attrs(units="m")  # height, not geopotential
    ok["tp"] = (small["tp"] * 1000).assign_attrs(units="mm")  # E-OBS amount
    open_grids(write_netcdf(ok, tmp_path / "declared.nc"))
    # 12 % missing over land in a month is under the 25 % bound
    open_grids(write_netcdf(_missing_in_february(small, 0.12), tmp_path / "gappy.nc"))


def test_subdaily_burst_is_judged_as_a_daily_mean(small: xr.Dataset) -> None:
    """An hourly rate above the daily record is fine when the day's mean rate is not."""
    hours = pd.date_range("2001-01-01", periods=48, freq="h")
    tp = np.zeros((48, 2, 2), np.float32)
    tp[10] = 0.1  # 100 mm in one hour: 2400 mm/day as an hourly rate, 100 mm/day per day
    ds = xr.Dataset(
        {"tp": (("time", "lat", "lon"), tp, {"units": "m"})},
        coords={"time": hours, "lat": [1.0, 2.0], "lon": [1.0, 2.0]},
    )
    check_gates(ds, "hourly", Gates())
    tp[10] = 2.0  # 2000 mm in one hour: 2000 mm/day on that day
    with pytest.raises(DataError, match=r"2000 mm/day \(daily mean rate\).*1825 mm/day"):
        check_gates(ds.copy(data={"tp": tp}), "hourly", Gates())


def test_monthly_amounts_are_judged_as_daily_mean_rates(tmp_path: Path) -> None:
    """GPCC-style monthly totals in mm: 2000 mm in a month (65 mm/day) is a wet month, not
    above the 1825 mm/day record; 60000 mm in a month is, as its daily mean rate."""
    months = pd.date_range("2001-01-01", periods=12, freq="MS")
    v = np.full((12, 2, 2), 80.0, np.float32)
    v[6, 1, 1] = 2000.0
    ds = xr.Dataset(
        {"precip": (("time", "lat", "lon"), v, {"units": "mm"})},
        coords={"time": months, "lat": [1.0, 2.0], "lon": [1.0, 2.0]},
    )
    open_grids(write_netcdf(ds, tmp_path / "wet_month.nc"))
    v[6, 1, 1] = 60000.0  # 1935 mm/day over 31 days
    path = write_netcdf(ds.copy(data={"precip": v}), tmp_path / "impossible_month.nc")
    with pytest.raises(
        DataError,
        match=r"variable 'tp' \(file variable 'precip'\) has the value "
        r"1935.48 mm/day \(daily mean rate\) at time=2001-07-01.*1825 mm/day",
    ):
        open_grids(path)


def test_refusal_names_time_and_place(small: xr.Dataset) -> None:
    bad = _cell(small, "tp", 1e30, step=40)
    iy, ix = np.argwhere(_land(small))[3]
    with pytest.raises(DataError) as info:
        check_gates(bad, "mem", Gates())
    lat, lon = float(small.lat[iy]), float(small.lon[ix])
    assert f"time=2001-02-10T00:00:00, lat={lat:g}, lon={lon:g}" in str(info.value)


def test_a_widened_bound_accepts_the_value(small: xr.Dataset, tmp_path: Path) -> None:
    wet = _cell(small, "tp", 2.5)  # 2500 mm in a day: above the world record
    path = write_netcdf(wet, tmp_path / "wet.nc")
    with pytest.raises(DataError, match="1825"):
        open_grids(path)
    open_grids(path, gates=Gates().with_overrides({"tp.max": 3000}))
    open_grids(path, gates=None)  # gates off
    open_grids(path, check_values=False)  # no value checks at all


def test_gates_model_forbids_typos_and_merges_overrides() -> None:
    g = Gates()
    assert set(GATE_UNITS) <= set(Gates.model_fields)
    assert g.tp == Bound(min=-0.1, max=1825.0) and -32767.0 in FILL_SENTINELS
    assert g.with_overrides({"tp.max": 2500}).tp == Bound(min=-0.1, max=2500.0)
    assert g.with_overrides({"tp": {"max": 2500}}).tp == Bound(min=-0.1, max=2500.0)
    assert g.with_overrides(["tp.max=2500", "tp.min=none"]).tp == Bound(min=None, max=2500.0)
    assert g.with_overrides(["max_missing_share=0.5"]).max_missing_share == 0.5
    assert g.with_overrides(["fill_sentinels=[-9999]"]).fill_sentinels == (-9999.0,)
    assert Gates.model_validate({"t2m": {"max": 350}}).t2m == Bound(min=170.0, max=350.0)
    assert g.with_overrides(None) is g
    assert parse_overrides(["a.b=1", "c=x"]) == {"a.b": 1, "c": "x"}
    for bad, match in (
        ({"tp.mx": 1}, r"gates: tp\.mx: Extra inputs are not permitted"),
        ({"rain.max": 1}, r"gates: rain: Extra inputs"),
        ({"tp.min": 5, "tp.max": 1}, r"gates: tp: .*min 5.0 > max 1.0"),
        ({"max_missing_share": 2}, r"gates: max_missing_share: .*less than or equal to 1"),
        (["tp.max"], r"gates: 'tp.max' is not key=value"),
    ):
        with pytest.raises(ConfigError, match=match) as info:
            g.with_overrides(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError):
        Gates.model_validate({"tp": {"min": 0, "max": float("nan")}})
