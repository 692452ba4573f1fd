"""Tests of the lazy ingest: renaming, canonical layout, units, land mask and rejections."""

from __future__ import annotations

from pathlib import Path

import dask.array as dsa
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology.io import evaporation_positive, land_mask, open_grids, to_units, validate
from hydrology.synthetic import SyntheticParams, era5_style, generate, write_netcdf
from twins.errors import DataError

REAL = Path(__file__).resolve().parents[2] / "data" / "hydrology"
CITIES = REAL / "daily_surface_cancities_1990-1993.nc"


@pytest.fixture(scope="module")
def small() -> xr.Dataset:
    """6 x 5 cells, 2 years, canonical layout."""
    return generate(SyntheticParams(nlat=6, nlon=5, start="2001-01-01", years=2, seed=7))


@pytest.fixture(scope="module")
def era5_file(small: xr.Dataset, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("era5") / "era5.nc"
    return write_netcdf(era5_style(small), path)


def _write(ds: xr.Dataset, path: Path) -> Path:
    ds.to_netcdf(path)
    return path


def _raises(path: Path, match: str, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        open_grids(path, **kwargs)
    msg = str(info.value)
    assert str(path) in msg, msg
    assert match in msg, msg
    assert "\n" not in msg
    return info.value


# --------------------------------------------------------------------------- happy paths


def test_era5_names_renamed_lat_flipped_and_lazy(era5_file: Path, small: xr.Dataset) -> None:
    ds = open_grids(era5_file)
    assert ds["tp"].dims == ("time", "lat", "lon")
    assert np.all(np.diff(ds["lat"].values) > 0)
    assert "number" not in ds.variables and "expver" not in ds.variables
    for v in ("tp", "t2m", "e", "pev", "swvl1", "lsm", "z"):
        assert isinstance(ds[v].data, dsa.Array), v
    np.testing.assert_array_equal(ds["tp"].values, small["tp"].values)
    np.testing.assert_array_equal(ds["lat"].values, small["lat"].values)
    # GRIB spellings normalised, sign convention recorded
    assert ds["e"].attrs["units"] == "m"
    assert ds["lsm"].attrs["units"] == "1"
    assert ds["e"].attrs["evaporation_sign"] == "negative"
    assert ds["tp"].attrs["source_convention"] == "era5"


def test_variable_selection_keeps_statics(era5_file: Path) -> None:
    ds = open_grids(era5_file, variables=["tp", "t2m"])
    assert set(ds.data_vars) == {"tp", "t2m", "lsm", "z"}


def test_land_mask(era5_file: Path, small: xr.Dataset) -> None:
    ds = open_grids(era5_file)
    mask = land_mask(ds)
    assert mask.dtype == bool and mask.dims == ("lat", "lon")
    np.testing.assert_array_equal(mask.values, small["lsm"].values > 0.5)
    # finiteness alone (no lsm) gives the same mask: sea is NaN
    np.testing.assert_array_equal(land_mask(ds.drop_vars("lsm")).values, mask.values)
    # a land cell with a missing day drops out
    bad = ds.copy()
    iy, ix = np.argwhere(mask.values)[0]
    tp = bad["tp"].values.copy()
    tp[5, iy, ix] = np.nan
    bad["tp"] = bad["tp"].copy(data=tp)
    assert int(land_mask(bad).sum()) == int(mask.sum()) - 1


def test_units_at_use(era5_file: Path, small: xr.Dataset) -> None:
    ds = open_grids(era5_file)
    mm = to_units(ds["tp"], "mm/day")
    assert mm.attrs["units"] == "mm/day" and isinstance(mm.data, dsa.Array)
    np.testing.assert_allclose(mm.values, small["tp"].values * 1e3, rtol=1e-6)
    np.testing.assert_allclose(
        to_units(ds["tp"], "mm").values, small["tp"].values * 1e3, rtol=1e-6
    )
    np.testing.assert_allclose(
        to_units(ds["t2m"], "degC").values, small["t2m"].values - 273.15, atol=1e-4
    )
    np.testing.assert_allclose(
        to_units(ds["z"], "m").values, small["z"].values / 9.80665, rtol=1e-6
    )
    pos = evaporation_positive(to_units(ds["pev"], "mm/day"))
    land = small["lsm"].values > 0.5
    assert float(pos.values[:, land].min()) >= 0 and float(pos.values[:, land].mean()) > 0.5
    flux = to_units(ds["tp"], "kg m-2 s-1")
    np.testing.assert_allclose(flux.values * 86400, mm.values, rtol=1e-5)


def test_eobs_names_mapped(small: xr.Dataset, tmp_path: Path) -> None:
    eobs = xr.Dataset(
        {
            "rr": (
                ("time", "latitude", "longitude"),
                small["tp"].values * 1e3,
                {"units": "mm", "standard_name": "thickness_of_rainfall_amount"},
            ),
            "tg": (
                ("time", "latitude", "longitude"),
                small["t2m"].values - 273.15,
                {"units": "Celsius", "standard_name": "air_temperature"},
            ),
            "elevation": (("latitude", "longitude"), small["z"].values / 9.80665, {"units": "m"}),
        },
        coords={
            "time": small["time"].values,
            "latitude": small["lat"].values,
            "longitude": small["lon"].values,
        },
    )
    path = _write(eobs, tmp_path / "eobs.nc")
    ds = open_grids(path, variables=["tp", "t2m"])
    assert set(ds.data_vars) == {"tp", "t2m", "z"}
    assert ds["tp"].attrs["units"] == "mm" and ds["tp"].attrs["source_name"] == "rr"
    assert ds["t2m"].attrs["source_convention"] == "eobs"
    np.testing.assert_allclose(to_units(ds["tp"], "m").values, small["tp"].values, rtol=1e-6)
    np.testing.assert_allclose(to_units(ds["t2m"], "K").values, small["t2m"].values, atol=1e-3)
    np.testing.assert_allclose(to_units(ds["z"], "m2 s-2").values, small["z"].values, rtol=1e-5)


def test_real_era5_city_file() -> None:
    ds = open_grids(CITIES, variables=["tp", "t2m", "pev", "mn2t", "mx2t"])
    assert ds["tp"].dims == ("time", "location") and ds.sizes["location"] == 5
    assert ds["lat"].dims == ("location",)
    assert ds["tp"].attrs["source_name"] == "pr" and ds["tp"].attrs["units"] == "kg m-2 s-1"
    tp = to_units(ds["tp"], "mm/day")
    annual = tp.sum("time") / 4
    assert bool(((annual > 150) & (annual < 2500)).all()), annual.values  # mm per year
    t_c = to_units(ds["t2m"], "degC")
    assert float(t_c.min()) > -45 and float(t_c.max()) < 40
    assert bool((ds["mn2t"] <= ds["mx2t"] + 1e-3).all())
    # CF potential evaporation is already positive: the helper leaves the sign alone
    pev = evaporation_positive(to_units(ds["pev"], "mm/day"))
    assert 0.3 < float(pev.mean()) < 5
    assert bool(land_mask(ds).all())


def test_many_yearly_files(small: xr.Dataset, tmp_path: Path) -> None:
    paths = []
    for year, part in era5_style(small).groupby("valid_time.year"):
        paths.append(write_netcdf(part, tmp_path / f"era5_{year}.nc"))
    ds = open_grids(paths[::-1])  # order does not matter
    assert ds.sizes["time"] == small.sizes["time"]
    assert isinstance(ds["tp"].data, dsa.Array)
    assert ds["tp"].data.chunks[0] == (365, 365)
    np.testing.assert_array_equal(ds["swvl1"].values, small["swvl1"].values)
    assert ds["lsm"].dims == ("lat", "lon")
    ds2 = open_grids(str(tmp_path / "era5_*.nc"), variables=["tp"], parallel=True)
    assert set(ds2.data_vars) == {"tp", "lsm", "z"}


def test_monthly_series_accepted(small: xr.Dataset, tmp_path: Path) -> None:
    monthly = small[["tp"]].resample(time="MS").sum()
    monthly["tp"].attrs.update(units="m")
    path = _write(monthly, tmp_path / "monthly.nc")
    ds = open_grids(path)
    assert ds.sizes["time"] == 24
    mm_d = to_units(ds["tp"], "mm/day")  # divided by the days in each month
    np.testing.assert_allclose(
        mm_d.isel(time=1).values, monthly["tp"].isel(time=1).values * 1e3 / 28, rtol=1e-6
    )


def test_validate_directly(small: xr.Dataset) -> None:
    assert validate(small, "mem") is small
    with pytest.raises(DataError, match="mem: variable 'foo' is missing"):
        validate(small, "mem", variables=["foo"])


# --------------------------------------------------------------------------- rejections


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        open_grids(tmp_path / "nope.nc")


def test_reject_missing_variable(era5_file: Path) -> None:
    _raises(era5_file, "variable 'rr' is missing", variables=["tp", "rr"])


def test_reject_absent_units(small: xr.Dataset, tmp_path: Path) -> None:
    ds = small[["tp", "t2m"]].copy()
    del ds["t2m"].attrs["units"]
    _raises(_write(ds, tmp_path / "nounits.nc"), "variable 't2m' has no units")


def test_reject_unknown_units(small: xr.Dataset, tmp_path: Path) -> None:
    ds = small[["tp"]].copy()
    ds["tp"].attrs["units"] = "furlongs of goo"
    _raises(_write(ds, tmp_path / "badunits.nc"), "variable 'tp' has unknown units")


def test_reject_units_that_do_not_fit(small: xr.Dataset, tmp_path: Path) -> None:
    ds = small[["tp"]].copy()
    ds["tp"].attrs["units"] = "K"
    _raises(_write(ds, tmp_path / "wrongunits.nc"), "variable 'tp' has units 'K'")


def test_reject_non_monotonic_time(small: xr.Dataset, tmp_path: Path) -> None:
    order = np.arange(small.sizes["time"])
    order[[10, 11]] = order[[11, 10]]
    _raises(
        _write(small[["tp"]].isel(time=order), tmp_path / "order.nc"), "time is not increasing"
    )


def test_reject_duplicated_time(small: xr.Dataset, tmp_path: Path) -> None:
    order = np.r_[0:20, 19:40]
    err = _raises(_write(small[["tp"]].isel(time=order), tmp_path / "dup.nc"), "duplicated time")
    assert "'time'" in str(err)


def test_reject_gap_in_time(small: xr.Dataset, tmp_path: Path) -> None:
    keep = np.r_[0:50, 53:100]
    _raises(
        _write(small[["tp"]].isel(time=keep), tmp_path / "gap.nc"),
        "gap in time between 2001-02-19",
    )


def test_reject_gap_in_monthly_time(small: xr.Dataset, tmp_path: Path) -> None:
    monthly = small[["tp"]].resample(time="MS").sum()
    monthly["tp"].attrs.update(units="m")
    _raises(_write(monthly.isel(time=np.r_[0:5, 6:24]), tmp_path / "mgap.nc"), "monthly steps")


def test_reject_all_nan_variable(small: xr.Dataset, tmp_path: Path) -> None:
    ds = small[["tp", "t2m"]].copy()
    ds["t2m"] = ds["t2m"] * np.nan
    ds["t2m"].attrs["units"] = "K"
    _raises(_write(ds, tmp_path / "allnan.nc"), "variable 't2m' is entirely NaN")
    # NaN at the sampled steps only is not all-NaN
    ds = small[["tp"]].copy()
    tp = ds["tp"].values.copy()
    tp[[0, tp.shape[0] // 2, -1]] = np.nan
    ds["tp"] = ds["tp"].copy(data=tp)
    open_grids(_write(ds, tmp_path / "somenan.nc"))


def test_reject_mismatched_grids(small: xr.Dataset, tmp_path: Path) -> None:
    a = small[["tp"]].sel(time="2001")
    b = small[["tp"]].sel(time="2002").assign_coords(lon=small["lon"].values + 0.05)
    pa, pb = _write(a, tmp_path / "a.nc"), _write(b, tmp_path / "b.nc")
    with pytest.raises(DataError) as info:
        open_grids([pa, pb])
    msg = str(info.value)
    assert str(pb) in msg and str(pa) in msg and "grid does not match" in msg
    assert "'lon'" in msg


def test_reject_gap_between_files(small: xr.Dataset, tmp_path: Path) -> None:
    a = small[["tp"]].isel(time=slice(0, 100))
    b = small[["tp"]].isel(time=slice(110, 200))
    pa, pb = _write(a, tmp_path / "a.nc"), _write(b, tmp_path / "b.nc")
    with pytest.raises(DataError) as info:
        open_grids([pa, pb])
    msg = str(info.value)
    assert str(pb) in msg and str(pa) in msg and "gap in time" in msg


def test_reject_overlapping_files(small: xr.Dataset, tmp_path: Path) -> None:
    a = small[["tp"]].isel(time=slice(0, 100))
    b = small[["tp"]].isel(time=slice(90, 200))
    pa, pb = _write(a, tmp_path / "a.nc"), _write(b, tmp_path / "b.nc")
    with pytest.raises(DataError) as info:
        open_grids([pa, pb])
    msg = str(info.value)
    assert str(pb) in msg and "overlaps" in msg and "'time'" in msg


def test_reject_bad_file_in_a_set(small: xr.Dataset, tmp_path: Path) -> None:
    a = small[["tp"]].sel(time="2001")
    b = small[["tp"]].sel(time="2002").copy()
    b["tp"].attrs["units"] = "bananas"
    pa, pb = _write(a, tmp_path / "a.nc"), _write(b, tmp_path / "b.nc")
    with pytest.raises(DataError, match=f"{pb}: variable 'tp' has unknown units"):
        open_grids([pa, pb])


def test_time_index_types() -> None:
    # cftime (noleap) axes are checked too
    t = xr.date_range("2001-01-01", periods=400, freq="D", calendar="noleap", use_cftime=True)
    ds = xr.Dataset(
        {"tp": (("time", "lat", "lon"), np.ones((400, 2, 2), np.float32), {"units": "mm"})},
        coords={"time": t, "lat": [1.0, 2.0], "lon": [1.0, 2.0]},
    )
    validate(ds, "noleap")
    with pytest.raises(DataError, match="noleap: gap in time"):
        validate(ds.isel(time=np.r_[0:10, 11:400]), "noleap")
    assert pd.Index(ds.indexes["time"]).size == 400


# --------------------------------------------------------------------------- Zarr

# Stores written without consolidated metadata (xarray says so, then reads them anyway);
# ERA5's string coordinate `expver` has no Zarr v3 dtype specification yet (zarr warns).
_UNCONSOLIDATED = pytest.mark.filterwarnings(
    "ignore:Failed to open Zarr store with consolidated", "ignore:The data type"
)


@_UNCONSOLIDATED
def test_zarr_store_opens_like_netcdf(small: xr.Dataset, era5_file: Path, tmp_path: Path) -> None:
    pytest.importorskip("zarr")
    store = tmp_path / "era5.zarr"
    era5_style(small).to_zarr(store, consolidated=False)
    ds = open_grids(store)
    ref = open_grids(era5_file)
    assert ds["tp"].dims == ("time", "lat", "lon") and isinstance(ds["tp"].data, dsa.Array)
    for v in ("tp", "t2m", "swvl1", "lsm"):
        np.testing.assert_array_equal(ds[v].values, ref[v].values)
    assert ds["e"].attrs["evaporation_sign"] == "negative"
    # a store without the .zarr suffix is recognised by its metadata
    plain = tmp_path / "era5_store"
    store.rename(plain)
    assert open_grids(plain, variables=["tp"])["tp"].shape == small["tp"].shape


@_UNCONSOLIDATED
def test_many_yearly_zarr_stores_and_a_rejection(small: xr.Dataset, tmp_path: Path) -> None:
    pytest.importorskip("zarr")
    stores = []
    for year, part in era5_style(small).groupby("valid_time.year"):
        stores.append(tmp_path / f"era5_{year}.zarr")
        part.to_zarr(stores[-1], consolidated=False)
    ds = open_grids(str(tmp_path / "era5_*.zarr"))
    assert ds.sizes["time"] == small.sizes["time"]
    np.testing.assert_array_equal(ds["swvl1"].values, small["swvl1"].values)
    bad = tmp_path / "no_tp.zarr"
    era5_style(small).drop_vars("tp").to_zarr(bad, consolidated=False)
    _raises(bad, "'tp'", variables=["tp"])


# --------------------------------------------------------------------------- reader errors


def _cut(path: Path, share: float, out: Path) -> Path:
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * share)])
    return out


@pytest.mark.parametrize("unlimited", [False, True], ids=["fixed", "record-dim"])
@pytest.mark.parametrize("share", [0.97, 0.6])
def test_truncated_netcdf3_is_refused_naming_the_variable(
    small: xr.Dataset, tmp_path: Path, share: float, unlimited: bool
) -> None:
    whole = tmp_path / "whole.nc"
    small.sel(time="2001-11").to_netcdf(
        whole, format="NETCDF3_64BIT", unlimited_dims=["time"] if unlimited else None
    )
    assert open_grids(whole)["tp"].shape[0] == 30  # the complete file opens
    path = _cut(whole, share, tmp_path / f"cut{int(share * 100)}.nc")
    err = _raises(path, "file truncated or unreadable: the data of variable '")
    msg = str(err)
    assert f"{share:.1%} of the {whole.stat().st_size} bytes" in msg
    assert "not monotonic" not in msg
    # a file cut inside its header
    _raises(_cut(whole, 0.01, tmp_path / "head.nc"), "the NetCDF-3 header is cut off")


def test_truncated_or_corrupt_netcdf4_is_refused(small: xr.Dataset, tmp_path: Path) -> None:
    h5py = pytest.importorskip("h5py")
    whole = write_netcdf(small.sel(time="2001-11"), tmp_path / "whole.nc")
    _raises(_cut(whole, 0.97, tmp_path / "cut.nc"), "cannot open: file truncated or unreadable")
    # intact metadata, a data chunk of tp overwritten: the open succeeds, the read fails
    with h5py.File(whole, "r") as f:
        offset = f["tp"].id.get_chunk_info(0).byte_offset
    with open(whole, "r+b") as fh:
        fh.seek(offset + 10)
        fh.write(b"\xff" * 64)
    _raises(whole, "file truncated or unreadable: cannot read variable 'tp'")
    not_netcdf = tmp_path / "notes.nc"
    not_netcdf.write_text("this is not a NetCDF file\n")
    _raises(not_netcdf, "cannot open: file truncated or unreadable")


def test_time_without_units_is_refused(small: xr.Dataset, tmp_path: Path) -> None:
    ds = small[["tp"]].isel(time=slice(0, 40))
    ds = ds.assign_coords(time=np.arange(40, dtype=np.int64))  # plain numbers, no units
    _raises(_write(ds, tmp_path / "nounits.nc"), "variable 'time' is not decoded as dates")


def test_ensemble_dimension_refused_or_squeezed(small: xr.Dataset, tmp_path: Path) -> None:
    tp = small["tp"].isel(time=slice(0, 40))
    two = xr.concat([tp, tp], dim="number").assign_coords(number=[0, 1]).to_dataset()
    _raises(
        _write(two, tmp_path / "ens2.nc"),
        "variable 'tp' has an extra dimension 'number' of size 2 (ensemble members)",
    )
    one = tp.expand_dims(number=[0]).to_dataset()
    ds = open_grids(_write(one, tmp_path / "ens1.nc"))
    assert ds["tp"].dims == ("time", "lat", "lon")


@pytest.mark.parametrize("cal", ["noleap", "360_day"])
def test_model_calendars_and_noon_stamps_are_read(
    small: xr.Dataset, tmp_path: Path, cal: str
) -> None:
    t = xr.date_range("2001-01-01T12:00", periods=90, freq="D", calendar=cal, use_cftime=True)
    ds = small[["tp", "t2m", "lsm"]].isel(time=slice(0, 90)).assign_coords(time=t)
    out = open_grids(_write(ds, tmp_path / f"{cal}.nc"))
    assert isinstance(out.indexes["time"], xr.CFTimeIndex) and out.indexes["time"].calendar == cal
    noon = small[["tp"]].assign_coords(time=small.time + np.timedelta64(12, "h"))
    assert open_grids(_write(noon, tmp_path / "noon.nc")).sizes["time"] == small.sizes["time"]


def test_gate_refusal_in_a_set_names_the_file(small: xr.Dataset, tmp_path: Path) -> None:
    a = small[["tp"]].sel(time="2001")
    b = small[["tp"]].sel(time="2002").copy()
    b["tp"] = b["tp"].where(b["tp"].isnull(), -0.01)  # -10 mm/day wherever it has a value
    pa, pb = _write(a, tmp_path / "a.nc"), _write(b, tmp_path / "b.nc")
    with pytest.raises(DataError, match=f"{pb}: variable 'tp' has the value -10 mm/day"):
        open_grids([pa, pb])


def test_unreadable_file_in_a_set_is_named(small: xr.Dataset, tmp_path: Path) -> None:
    good = _write(small[["tp"]].sel(time="2001"), tmp_path / "a.nc")
    bad = tmp_path / "b.nc"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 64)  # an HDF5 signature, then nothing
    with pytest.raises(DataError, match=f"{bad}: cannot open: file truncated or unreadable"):
        open_grids([good, bad])
