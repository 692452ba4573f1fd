"""Tests of the synthetic ERA5-Land-like generator and the NetCDF writer."""

from __future__ import annotations

import json

import dask.array as dsa
import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pydantic import ValidationError

from hydrology.synthetic import (
    PRESETS,
    NamedEvent,
    SyntheticParams,
    era5_style,
    generate,
    write_netcdf,
)

DYNAMIC = ("tp", "t2m", "pev", "e", "swvl1")


@pytest.fixture(scope="module")
def tiny() -> xr.Dataset:
    return generate("tiny")


def test_deterministic_by_seed() -> None:
    p = PRESETS["tiny"].model_copy(update={"years": 2})
    a, b = generate(p), generate(p)
    c = generate(p.model_copy(update={"seed": 1}))
    for v in (*DYNAMIC, "lsm", "z", "drought_mask"):
        np.testing.assert_array_equal(a[v].values, b[v].values)
    assert not np.array_equal(a["tp"].values, c["tp"].values, equal_nan=True)


def test_shapes_coords_and_attrs(tiny: xr.Dataset) -> None:
    p = PRESETS["tiny"]
    assert tiny.sizes["lat"] == p.nlat and tiny.sizes["lon"] == p.nlon
    days = pd.date_range(p.start, pd.Timestamp(p.start) + pd.DateOffset(years=p.years), freq="D")
    assert tiny.indexes["time"].equals(pd.DatetimeIndex(days[:-1]))
    assert np.all(np.diff(tiny["lat"].values) > 0)
    for v in (*DYNAMIC, "drought_forcing", "drought_mask"):
        assert tiny[v].dims == ("time", "lat", "lon")
    assert tiny["lsm"].dims == ("lat", "lon")
    for v in (*DYNAMIC, "lsm", "z"):
        assert tiny[v].attrs["units"] and tiny[v].attrs["long_name"]
    assert tiny["tp"].attrs["standard_name"] == "lwe_thickness_of_precipitation_amount"
    assert tiny["drought_mask"].dtype == np.int8


def test_sea_is_nan_land_is_finite(tiny: xr.Dataset) -> None:
    land = tiny["lsm"].values > 0.5
    assert 0 < land.sum() < land.size
    assert abs(land.mean() - PRESETS["tiny"].land_fraction) < 0.1
    for v in DYNAMIC:
        x = tiny[v].values
        assert np.isnan(x[:, ~land]).all(), v
        assert np.isfinite(x[:, land]).all(), v
    assert not tiny["drought_mask"].values[:, ~land].any()


def test_physical_ranges(tiny: xr.Dataset) -> None:
    p = PRESETS["tiny"]
    land = tiny["lsm"].values > 0.5
    tp_mm = tiny["tp"].values[:, land] * 1e3
    assert tp_mm.min() >= 0
    assert 0.25 < (tp_mm > 0.1).mean() < 0.55  # wet-day fraction
    annual = tp_mm.sum(0).mean() / p.years
    assert 500 < annual < 1500
    t_c = tiny["t2m"].values[:, land] - 273.15
    assert t_c.min() > -40 and t_c.max() < 45 and 0 < t_c.mean() < 20
    pev, e = tiny["pev"].values[:, land], tiny["e"].values[:, land]
    assert pev.max() <= 0 and e.max() <= 0  # ECMWF sign: evaporation negative
    assert np.all(e >= pev - 1e-9)  # actual evaporation never exceeds potential
    sm = tiny["swvl1"].values[:, land]
    assert sm.min() >= p.wilting_point - 1e-6 and sm.max() <= p.field_capacity + 1e-6
    assert sm.std() > 0.01
    z_m = tiny["z"].values / 9.80665
    assert z_m.min() >= 0 and z_m.max() <= p.max_elevation


def _spa3(tp: xr.DataArray) -> xr.DataArray:
    """3-month precipitation anomaly, standardised per cell and calendar month."""
    monthly = tp.resample(time="MS").sum(skipna=False)
    p3 = monthly.rolling(time=3).sum()
    return _standardise(p3)


def _standardise(x: xr.DataArray) -> xr.DataArray:
    """Per-cell, per-calendar-month z-score of a monthly series."""
    g = x.groupby("time.month")
    return (g - g.mean("time")).groupby("time.month") / g.std("time")


def test_injected_droughts_are_recoverable(tiny: xr.Dataset) -> None:
    land = tiny["lsm"] > 0.5
    spa = _spa3(tiny["tp"])
    forcing3 = tiny["drought_forcing"].resample(time="MS").mean().rolling(time=3).mean()
    inside = (forcing3 > 0.5) & land
    outside = (forcing3 < 0.05) & land & spa.notnull()
    assert int(inside.sum()) > 50
    assert spa.dims == ("time", "lat", "lon")
    mean_in = float(spa.where(inside).mean())
    mean_out = float(spa.where(outside).mean())
    frac_dry_in = float((spa.where(inside) < -1).sum() / inside.sum())
    frac_dry_out = float((spa.where(outside) < -1).sum() / outside.sum())
    assert mean_in < -0.8 and mean_out > -0.2, (mean_in, mean_out)
    assert frac_dry_in > 3 * frac_dry_out
    # the soil dries out too
    sma = _standardise(tiny["swvl1"].resample(time="MS").mean())
    assert float(sma.where(inside).mean()) < float(sma.where(outside).mean()) - 0.5


def test_events_in_every_third(tiny: xr.Dataset) -> None:
    mask = tiny["drought_mask"].values.any(axis=(1, 2))
    for part in np.array_split(mask, 3):
        assert part.any()
    events = json.loads(tiny.attrs["drought_events"])
    assert len(events) == 3 + PRESETS["tiny"].n_events


def test_events_in_configured_periods() -> None:
    periods = [("2000-01-01", "2000-06-30"), ("2001-03-01", "2001-05-31")]
    p = SyntheticParams(
        nlat=6,
        nlon=6,
        start="2000-01-01",
        years=2,
        n_events=0,
        event_periods=periods,
        event_days=(60, 120),
    )
    ds = generate(p)
    for a, b in periods:
        assert ds["drought_mask"].sel(time=slice(a, b)).any()
    assert int(ds["drought_mask"].sel(time=slice("2000-08-01", "2001-01-31")).sum()) == 0


def test_demo_preset_has_drought_in_every_split() -> None:
    demo = PRESETS["demo"]
    assert (demo.nlat, demo.nlon, demo.years, demo.start) == (50, 50, 30, "1991-01-01")
    # same event placement on a cheap grid: splits of the drought model
    ds = generate(demo.model_copy(update={"nlat": 8, "nlon": 8}))
    for a, b in [
        ("1991", "2010"),
        ("2011", "2014"),
        ("2015", "2020"),
        ("1991", "2000"),
        ("2001", "2010"),
    ]:
        assert ds["drought_mask"].sel(time=slice(a, b)).any(), (a, b)


@pytest.mark.parametrize("shape", [(3, 3), (1, 1), (2, 7), (5, 1)])
def test_small_grids_work(shape: tuple[int, int], tmp_path) -> None:
    p = SyntheticParams(nlat=shape[0], nlon=shape[1], start="2000-01-01", years=2, seed=3)
    ds = generate(p)
    land = ds["lsm"].values > 0.5
    assert land.sum() >= 1
    assert np.isfinite(ds["t2m"].values[:, land]).all()
    assert np.abs(ds["t2m"].values[:, land] - 283).max() < 60
    out = write_netcdf(ds, tmp_path / "small.nc")
    with xr.open_dataset(out) as back:
        assert set(back.data_vars) == set(ds.data_vars)
        np.testing.assert_array_equal(back["tp"].values, ds["tp"].values)


def test_params_strict() -> None:
    with pytest.raises(ValidationError):
        SyntheticParams(nlat=4, bogus=1)
    with pytest.raises(ValidationError):
        SyntheticParams(wilting_point=0.5, field_capacity=0.4)
    with pytest.raises(ValidationError):
        SyntheticParams(nlat=0)


def test_write_roundtrip_chunks_and_compression(tiny: xr.Dataset, tmp_path) -> None:
    path = write_netcdf(tiny, tmp_path / "tiny.nc", chunk_time=366, chunk_space=50)
    with netCDF4.Dataset(path) as nc:
        v = nc["tp"]
        assert v.chunking() == [366, 12, 12]  # space clamped to the 12 x 12 grid
        f = v.filters()
        assert f["zlib"] and f["shuffle"] and f["complevel"] == 1
        assert nc["lsm"].chunking() == [12, 12]
        assert nc.Conventions.startswith("CF-")
    with xr.open_dataset(path) as back:
        for v in (*DYNAMIC, "lsm", "z", "drought_mask", "drought_forcing"):
            np.testing.assert_array_equal(back[v].values, tiny[v].values)
        assert back["tp"].attrs["units"] == "m"
        assert back.indexes["time"].equals(tiny.indexes["time"])
    raw = sum(tiny[v].nbytes for v in tiny.data_vars)
    assert path.stat().st_size < raw
    # a short record clamps the time chunk too
    short = tiny.isel(time=slice(0, 40))
    with netCDF4.Dataset(write_netcdf(short, tmp_path / "short.nc")) as nc:
        assert nc["tp"].chunking() == [40, 12, 12]


def _failing(block: np.ndarray, block_info=None) -> np.ndarray:
    if block_info is not None and block_info[0]["chunk-location"][0] >= 2:
        raise RuntimeError("disk on fire")
    return block


def test_atomic_write_leaves_nothing_on_failure(tiny: xr.Dataset, tmp_path) -> None:
    ds = tiny.isel(time=slice(0, 400)).chunk({"time": 100})
    ds["tp"] = ds["tp"].copy(data=dsa.map_blocks(_failing, ds["tp"].data, dtype=np.float32))
    target = tmp_path / "out.nc"
    with pytest.raises(RuntimeError, match="disk on fire"):
        write_netcdf(ds, target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    # an existing file survives a failed overwrite unchanged
    write_netcdf(tiny.isel(time=slice(0, 10)), target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError):
        write_netcdf(ds, target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.nc"]


def test_era5_style_layout(tiny: xr.Dataset) -> None:
    e = era5_style(tiny)
    assert {"valid_time", "latitude", "longitude"} <= set(e.dims)
    assert np.all(np.diff(e["latitude"].values) < 0)
    assert e["e"].attrs["units"] == "m of water equivalent"
    assert "expver" in e.coords and "number" in e.coords
    np.testing.assert_array_equal(e["tp"].values[:, ::-1], tiny["tp"].values)


def test_named_events_at_fixed_date_and_place() -> None:
    named = [
        NamedEvent(start="2000-03-01", days=90, strength=1.2),
        NamedEvent(start="2001-06-01", days=60, strength=0.8, lat_frac=0.0, lon_frac=1.0),
        NamedEvent(start="1999-01-01", days=30, strength=1.0),  # before the record: skipped
    ]
    p = SyntheticParams(
        nlat=9,
        nlon=7,
        start="2000-01-01",
        years=2,
        n_events=0,
        event_periods=[],
        named_events=named,
    )
    ds = generate(p)
    events = json.loads(ds.attrs["drought_events"])
    assert [(e["start"], e["days"], e["lat_index"], e["lon_index"]) for e in events] == [
        ("2000-03-01", 90, 4, 3),
        ("2001-06-01", 60, 0, 6),
    ]
    mask = ds["drought_mask"]
    assert bool(mask.sel(time="2000-04-15").any()) and bool(mask.sel(time="2001-07-01").any())
    assert int(mask.sel(time=slice("2000-06-01", "2001-05-31")).sum()) == 0
    # mid-event at the centre: strength 1.2 x envelope ~1
    assert float(ds["drought_forcing"].sel(time="2000-04-15").isel(lat=4, lon=3)) > 1.15
    # a named event draws nothing from the generator's RNG: the random weather is unchanged
    base = generate(p.model_copy(update={"named_events": []}))
    day = {"time": "2000-01-15"}  # before the first event; NaN over sea in both
    np.testing.assert_array_equal(base["t2m"].sel(day).values, ds["t2m"].sel(day).values)
    with pytest.raises(ValidationError, match="days"):
        SyntheticParams(named_events=[{"start": "2000-01-01", "days": 0, "strength": 1}])


def test_demo_preset_has_a_drought_in_every_split_at_comparable_rates() -> None:
    """Train / validation / test drought shares of the demo layout (seed 0) stay comparable,
    so validation rewards drought skill without rewarding a dry bias."""
    ds = generate(PRESETS["demo"].model_copy(update={"nlat": 25, "nlon": 25}))
    land = ds["lsm"].values > 0.5
    monthly = ds["drought_mask"].astype("float32").resample(time="MS").mean()
    share = (monthly.values[:, land] > 0.5).mean(axis=1)
    months = pd.DatetimeIndex(monthly.time.values)
    rates = {
        name: share[(months >= a) & (months <= b)].mean()
        for name, (a, b) in {
            "train": ("1991", "2010-12"),
            "val": ("2011", "2014-12"),
            "test": ("2015", "2020-12"),
        }.items()
    }
    assert all(r > 0.02 for r in rates.values()), rates
    assert rates["val"] < 2.5 * rates["train"], rates
