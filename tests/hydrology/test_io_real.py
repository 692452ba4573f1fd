"""open_grids on real downloads, unedited: GPCC, ERA5 in the 2024+ and the legacy CDS layouts,
GRIB through cfgrib, and the refusal of ERA5 data that cannot give a monthly total."""

from __future__ import annotations

import zipfile
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology.gates import Gates, check_gates
from hydrology.ingest import prepare_months, read_init
from hydrology.io import open_grids
from hydrology.timeaxis import is_monthly, whole_months
from hydrology.units import to_units
from twins.errors import DataError

DATA = Path(__file__).resolve().parents[2] / "data" / "hydrology"
GPCC = DATA / "gpcc_v2018_2.5deg_africa_monthly_1946-2016.nc"
VIETNAM = DATA / "era5_new_cds" / "vietnam_monthly"
AVGAD = VIETNAM / "data_stream-moda_stepType-avgad.nc"
AVGUA = VIETNAM / "data_stream-moda_stepType-avgua.nc"
INDIA = DATA / "era5_new_cds" / "india_5x5_monthly_instants"
LEGACY_NC = DATA / "era5_legacy" / "era5_1995-07-14T12.nc"
GRIB = DATA / "era5_legacy" / "era5-2mt-2019-03-uk.grib"


@pytest.fixture(scope="module")
def gpcc() -> xr.Dataset:
    return open_grids(GPCC)


def test_gpcc_opens_in_the_canonical_form(gpcc: xr.Dataset) -> None:
    raw = xr.open_dataset(GPCC)
    assert list(gpcc.data_vars) == ["tp"]
    tp = gpcc["tp"]
    assert tp.dims == ("time", "lat", "lon") and tp.shape == (841, 32, 34)
    assert tp.attrs["source_name"] == "precip" and tp.attrs["units"] == "mm"
    lat, lon = gpcc["lat"].values, gpcc["lon"].values
    assert np.all(np.diff(lat) > 0) and np.all(np.diff(lon) > 0)
    # stored 336.25..358.75 then 1.25..58.75 (wrapping through 0): now -23.75..58.75
    assert lon[0] == -23.75 and lon[-1] == 58.75 and np.all(np.abs(lon) <= 180)
    t = gpcc.indexes["time"]
    assert t[0] == pd.Timestamp("1946-01-01") and t[-1] == pd.Timestamp("2016-01-01")
    assert np.all(t.day == 1) and np.all(t.hour == 0)
    assert is_monthly(gpcc) and gpcc.attrs["time_step"] == "month"
    # the same numbers, moved: the cell at 1.25 S, 21.25 E, July 1990
    one = raw["precip"].sel(lat=-1.25, lon=21.25, time="1990-07-01").item()
    assert float(tp.sel(lat=-1.25, lon=21.25, time="1990-07-01")) == one
    assert int(np.isfinite(tp.values).all(axis=0).sum()) == 635  # land cells, as published


def test_gpcc_monthly_amount_is_a_daily_rate_at_use_and_passes_the_gates(
    gpcc: xr.Dataset,
) -> None:
    rate = to_units(gpcc["tp"], "mm/day")  # mm per month / days in that month
    # rtol: the reference divides in float32 (relative rounding 6e-8); 1e-6 leaves margin
    feb = gpcc["tp"].sel(time="1984-02-01")  # a leap February: 29 days
    np.testing.assert_allclose(
        rate.sel(time="1984-02-01").values, feb.values / 29.0, rtol=1e-6, equal_nan=True
    )
    check_gates(gpcc.load(), str(GPCC), Gates())  # the largest month, 536 mm, is ~17 mm/day
    assert whole_months(gpcc, str(GPCC))[:2] == ["1946-01", "1946-02"]


def test_one_month_cut_from_gpcc_is_a_month(tmp_path: Path) -> None:
    """2016-01 cut from the file as a user receives a new month: one step, declared monthly
    by NOAA PSL's delta_t on time, so it is a whole month and converts to a daily rate."""
    path = tmp_path / "gpcc_2016-01.nc"
    xr.open_dataset(GPCC).sel(time=["2016-01-01"]).to_netcdf(path)
    one = open_grids(path)
    assert one.sizes["time"] == 1 and is_monthly(one)
    assert whole_months(one, str(path)) == ["2016-01"]
    rate = to_units(one["tp"], "mm/day")
    # rtol: float32 amounts divided in float64 (relative rounding 6e-8); 1e-6 leaves margin
    np.testing.assert_allclose(rate.values, one["tp"].values / 31.0, rtol=1e-6, equal_nan=True)


# --------------------------------------------------------------------------- 2024+ CDS netCDF


@pytest.fixture(scope="module")
def vietnam() -> xr.Dataset:
    return open_grids([AVGAD, AVGUA]).load()


def test_cds_stepType_files_of_one_request_are_merged(vietnam: xr.Dataset) -> None:
    assert set(vietnam.data_vars) == {"tp", "t2m"}
    assert "expver" not in vietnam.variables and "number" not in vietnam.variables
    t = vietnam.indexes["time"]  # avgad stamped 06:00, avgua 00:00: both at month starts
    assert (
        t.size == 240
        and t[0] == pd.Timestamp("2005-01-01")
        and t[-1] == pd.Timestamp("2024-12-01")
    )
    assert np.all(t.hour == 0) and np.all(t.day == 1) and is_monthly(vietnam)
    assert np.all(np.diff(vietnam["lat"].values) > 0)
    raw = xr.open_dataset(AVGAD)
    # monthly mean of daily totals: an amount per day, m d-1
    assert vietnam["tp"].attrs["units"] == "m d-1" and vietnam["tp"].attrs["source_units"] == "m"
    np.testing.assert_array_equal(
        vietnam["tp"].values[:, ::-1, :], raw["tp"].values
    )  # same numbers, latitude flipped
    # 1 m d-1 is 1000 mm/day whatever the month's length (no division by days in month)
    rate = to_units(vietnam["tp"], "mm/day")
    # rtol: float32 values times 1000 in float64 (relative rounding 6e-8)
    np.testing.assert_allclose(rate.values, vietnam["tp"].values * 1000.0, rtol=1e-6)
    assert float(vietnam["t2m"].mean()) == pytest.approx(298.0, abs=5.0)  # Vietnam, in K


def test_cds_request_zip_as_delivered(vietnam: xr.Dataset, tmp_path: Path) -> None:
    archive = tmp_path / "request.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in (AVGAD, AVGUA):
            zf.write(p, p.name)
    ds = open_grids(archive)
    xr.testing.assert_identical(ds[["tp", "t2m"]], vietnam[["tp", "t2m"]])
    assert not list(tmp_path.glob("*.nc"))  # nothing unpacked next to the user's zip
    # a member cut short is named inside the zip
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as zf:
        zf.write(AVGAD, AVGAD.name)
        zf.writestr(AVGUA.name, AVGUA.read_bytes()[:5000])
    with pytest.raises(DataError, match=rf"{broken}!{AVGUA.name}: cannot open") as info:
        open_grids(broken)
    assert "\n" not in str(info.value) and "twins-zip-" not in str(info.value)
    empty = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("README.txt", "no data")
    with pytest.raises(DataError, match=rf"{empty}: the zip holds no netCDF or GRIB member"):
        open_grids(empty)


@pytest.mark.parametrize(
    ("variables", "match"),
    [
        (
            None,
            r"stepType-accum\.nc: variable 'tp' has one step per month but an accumulation over "
            r"1 hour \(ERA5 stepType 'accum', first stamp 2014-01-01 12:00:00\): it cannot give "
            r"a daily or monthly total",
        ),
        (
            ["t2m"],
            r"stepType-instant\.nc: variable 't2m' has one step per month but each is an "
            r"instantaneous value \(ERA5 stepType 'instant', first stamp 2014-01-01 12:00:00\): "
            r"it is not a monthly mean",
        ),
        (
            ["mn2t"],
            r"stepType-max\.nc: variable 'mn2t' has one step per month but each is the minimum "
            r"of one hour",
        ),
    ],
    ids=["accumulation", "instant", "extreme"],
)
def test_one_hour_per_month_is_refused(variables: list[str] | None, match: str) -> None:
    with pytest.raises(DataError, match=match) as info:
        open_grids(sorted(INDIA.glob("*.nc")), variables=variables)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- legacy CDS, GRIB


def test_legacy_cds_int16_packing_and_scalar_time() -> None:
    ds = open_grids(LEGACY_NC)
    assert ds["t2m"].dims == ("time", "lat", "lon") and ds["t2m"].shape == (1, 105, 237)
    assert ds.indexes["time"][0] == pd.Timestamp("1995-07-14T12:00")
    with netCDF4.Dataset(LEGACY_NC) as nc:
        v = nc["t2m"]
        v.set_auto_maskandscale(False)
        packed, scale, offset = v[:], float(v.scale_factor), float(v.add_offset)
    assert packed.dtype == np.int16
    # unpacked in float64 as CF says: packed * scale_factor + add_offset, latitude flipped
    np.testing.assert_array_equal(ds["t2m"].values[0, ::-1], packed * scale + offset)
    assert float(ds["t2m"].min()) > 270.0 and float(ds["t2m"].max()) < 325.0


def test_grib_through_cfgrib_without_index_files(tmp_path: Path) -> None:
    copy = tmp_path / GRIB.name
    copy.write_bytes(GRIB.read_bytes())
    ds = open_grids(copy)
    assert sorted(p.name for p in tmp_path.iterdir()) == [GRIB.name]  # no .idx beside it
    assert ds["t2m"].dims == ("time", "lat", "lon") and ds["t2m"].shape == (744, 33, 49)
    assert ds["t2m"].attrs["units"] == "K"
    assert whole_months(ds, str(copy)) == ["2019-03"]
    assert np.all(np.diff(ds["lat"].values) > 0)
    assert "step" not in ds.variables and "valid_time" not in ds.variables


def test_twin_ingest_of_gpcc_months(tmp_path: Path) -> None:
    """The drought twin's ingest reads a GPCC record and one new month cut from the file:
    monthly inputs ``pr`` are each month's amount over its own days (mm/d)."""
    raw = xr.open_dataset(GPCC)
    hist, new = tmp_path / "gpcc_2014-2015.nc", tmp_path / "gpcc_2016-01.nc"
    raw.sel(time=slice("2014-01-01", "2015-12-01")).to_netcdf(hist)
    raw.sel(time=["2016-01-01"]).to_netcdf(new)
    _, months, monthly, _ = read_init(hist, Gates())
    assert months[0] == "2014-01" and months[-1] == "2015-12"
    added, new_months, _, _ = prepare_months(new, monthly, ["tp"], Gates())
    assert new_months == ["2016-01"]
    for got, part in (
        (monthly, raw.sel(time=slice("2014", "2015"))),
        (added, raw.sel(time="2016")),
    ):
        want = (part["precip"] / part["time"].dt.days_in_month).sel(lat=-1.25, lon=21.25)
        # rtol: float32 amounts divided in float64 (relative rounding 6e-8)
        np.testing.assert_allclose(got["pr"].sel(lat=-1.25, lon=21.25).values, want, rtol=1e-6)
