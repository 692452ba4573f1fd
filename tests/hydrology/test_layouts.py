"""Layouts no real file here carries, written small: legacy CDS expver, ERA5 hourly
accumulations in GRIB and in the 2024+ CDS netCDF, longitudes 0..360, and the names and
units of GPCC, CPC, CHIRPS, E-OBS, CRU, NOAA PSL, Daymet and CF products."""

from __future__ import annotations

from pathlib import Path

import eccodes
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology.aggregate import monthly_mean
from hydrology.io import normalise, open_grids
from hydrology.layouts import combine_expver, interval_start, scalar_time
from hydrology.timeaxis import whole_months
from hydrology.totals import totals
from hydrology.units import evaporation_positive, to_units
from twins.errors import DataError

LAT = [51.0, 50.75]  # stored north to south, as ERA5
LON = [0.0, 0.25, 0.5]


def _grid(values: np.ndarray, time: pd.DatetimeIndex, name: str, **attrs: str) -> xr.DataArray:
    return xr.DataArray(
        values,
        dims=("time", "latitude", "longitude"),
        coords={"time": time, "latitude": LAT, "longitude": LON},
        name=name,
        attrs=attrs,
    )


# --------------------------------------------------------------------------- legacy expver


def test_legacy_expver_dimension_final_over_preliminary(tmp_path: Path) -> None:
    """grib_to_netcdf monthly means reaching into ERA5T: expver 1 holds the final months,
    5 the preliminary ones (NaN where the other holds the month); int16 packed."""
    months = pd.date_range("2023-09-01", periods=6, freq="MS")
    rng = np.random.default_rng(3)
    final = rng.uniform(1e-3, 9e-3, (6, 2, 3))
    prelim = final + 5e-4  # distinguishable: where both hold a month, final must win
    final[4:] = np.nan  # final ERA5 ends with 2023-12 ...
    prelim[:3] = np.nan  # ... and ERA5T starts with 2023-12 (both hold 2023-12)
    tp = xr.DataArray(
        np.stack([final, prelim], axis=1),
        dims=("time", "expver", "latitude", "longitude"),
        coords={
            "time": months,
            "expver": np.array([1, 5], np.int32),
            "latitude": LAT,
            "longitude": LON,
        },
        attrs={"units": "m", "long_name": "Total precipitation"},
    )
    ds = tp.to_dataset(name="tp")
    ds.attrs["history"] = "2024-03-01 by grib_to_netcdf-2.28.1: grib_to_netcdf -S param -o"
    enc = {"tp": {"dtype": "int16", "scale_factor": 1e-6, "add_offset": 0.0, "_FillValue": -32767}}
    path = tmp_path / "legacy_monthly.nc"
    ds.to_netcdf(path, encoding=enc)

    out = open_grids(path)
    assert "expver" not in out.variables and out["tp"].dims == ("time", "lat", "lon")
    want = np.where(np.isnan(final), prelim, final)[:, ::-1]  # latitude ascending
    # atol: int16 packing with scale 1e-6 m rounds each value by at most 5e-7 m
    np.testing.assert_allclose(out["tp"].values, want, rtol=0, atol=5e-7 + 1e-12)
    # a legacy monthly mean of ERA5 tp is a mean daily amount
    assert out["tp"].attrs["units"] == "m d-1"

    codes = ds.assign_coords(expver=["0001", "0005"])
    assert "expver" not in combine_expver(codes, "s").dims
    with pytest.raises(DataError, match=r"s: variable 'expver' holds .* not experiment numbers"):
        combine_expver(ds.assign_coords(expver=["a", "b"]), "s")


# --------------------------------------------------------------------------- hourly ERA5


def _message(out: object, param: int, ref: pd.Timestamp, end: int, kind: str, v: float) -> None:
    """One GRIB1 message of the 2 x 3 grid: ``param`` from reference time ``ref`` at step
    ``end`` hours (an accumulation over the hour before it when ``kind`` is ``accum``)."""
    h = eccodes.codes_grib_new_from_samples("regular_ll_sfc_grib1")
    keys = [
        ("centre", "ecmf"),
        ("Ni", 3),
        ("Nj", 2),
        ("latitudeOfFirstGridPointInDegrees", LAT[0]),
        ("latitudeOfLastGridPointInDegrees", LAT[-1]),
        ("longitudeOfFirstGridPointInDegrees", LON[0]),
        ("longitudeOfLastGridPointInDegrees", LON[-1]),
        ("iDirectionIncrementInDegrees", 0.25),
        ("jDirectionIncrementInDegrees", 0.25),
        ("paramId", param),
        ("dataDate", int(ref.strftime("%Y%m%d"))),
        ("dataTime", ref.hour * 100),
        ("stepType", kind),
    ]
    keys += [("startStep", end - 1), ("endStep", end)] if kind == "accum" else [("step", end)]
    for key, value in keys:
        eccodes.codes_set(h, key, value)
    eccodes.codes_set_values(h, np.full(6, v))
    eccodes.codes_write(h, out)
    eccodes.codes_release(h)


def _write_era5_grib(path: Path, amounts: pd.Series, t2m: float | None = None) -> None:
    """ERA5 hourly tp as the CDS gives it in GRIB: forecasts from 06 and 18 UTC, each message
    the amount of the hour ending at reference time + step (stepRange s-1..s); with ``t2m``,
    an analysis of 2 m temperature at every stamp as well (a second hypercube)."""
    with open(path, "wb") as out:
        for valid, value in amounts.items():
            ref = (valid - pd.Timedelta(hours=1)).floor("12h") + pd.Timedelta(hours=6)
            if ref >= valid:
                ref -= pd.Timedelta(hours=12)
            _message(out, 228, ref, int((valid - ref) / pd.Timedelta(hours=1)), "accum", value)
            if t2m is not None:
                _message(out, 167, valid, 0, "instant", t2m)


def _day_totals_by_end_stamp(tp: xr.DataArray) -> pd.Series:
    """ECMWF's daily total of one cell ``(time, lon)``, counted on the stamps as stored: day D
    sums the accumulations stamped D 01:00 .. D+1 00:00 (independent of interval_start)."""
    s = tp.isel(lon=0).to_series() * 1000.0  # m -> mm
    day = (s.index - pd.Timedelta(hours=1)).floor("D")
    return s.groupby(day).sum()


def test_era5_hourly_grib_accumulations_sum_into_days(tmp_path: Path) -> None:
    # 1-3 March 2019 as the CDS delivers it: stamps 00:00 .. 23:00 of every day; the 00:00
    # stamp of March 1 holds the last hour of February 28, the last hour of March 3 is
    # stamped 2019-03-04 00:00 and is not in the download
    ends = pd.date_range("2019-03-01T00:00", "2019-03-03T23:00", freq="h")
    rng = np.random.default_rng(11)
    amounts = pd.Series(np.round(rng.gamma(0.3, 1.0, ends.size), 1) * 1e-4, index=ends)
    path = tmp_path / "era5_tp_2019-03.grib"
    _write_era5_grib(path, amounts)
    raw = xr.open_dataset(path, engine="cfgrib", backend_kwargs={"indexpath": ""})
    assert raw["tp"].dims[:2] == ("time", "step")  # reference time x step, as ERA5 GRIB
    ds = open_grids(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no .idx file
    t = ds.indexes["time"]
    assert t[0] == pd.Timestamp("2019-03-01") and t[-1] == pd.Timestamp("2019-03-03T23:00")
    assert t.size == ends.size and ds["tp"].attrs["time_stamp"] == "start"
    got = totals(ds["tp"], "D").isel(lat=0, lon=0).to_series()
    truth = (amounts * 1000.0).groupby((ends - pd.Timedelta(hours=1)).floor("D")).sum()
    # rtol: GRIB1 stores a constant field as an IBM float (relative error <= 2**-21 = 4.8e-7),
    # then 24 float32 additions (24 x 6e-8): 2e-6 bounds both
    np.testing.assert_allclose(got[:2], truth["2019-03-01":"2019-03-02"], rtol=2e-6)
    assert np.isnan(got["2019-03-03"])  # its last hour is not in the download: no guess


def test_grib_with_an_accumulation_and_an_analysis_keeps_both(tmp_path: Path) -> None:
    """tp on reference time x step and t2m on analysis times are two hypercubes: cfgrib's
    open_dataset would drop t2m with a log line; open_grids reads both."""
    ends = pd.date_range("2019-03-01T00:00", "2019-03-01T23:00", freq="h")
    path = tmp_path / "tp_t2m.grib"
    _write_era5_grib(path, pd.Series(np.full(ends.size, 2e-4), index=ends), t2m=281.5)
    ds = open_grids(path)
    assert set(ds.data_vars) == {"tp", "t2m"}
    assert list(ds.indexes["time"]) == list(ends)
    assert np.all(ds["t2m"].values == 281.5)
    # GRIB1 stores 2e-4 as an IBM float: relative error <= 2**-21
    np.testing.assert_allclose(ds["tp"].values[:-1], 2e-4, rtol=5e-7)
    assert np.isnan(ds["tp"].values[-1]).all()  # the hour after 23:00 is not in the file


def test_hourly_netcdf_files_are_shifted_after_combining(tmp_path: Path) -> None:
    """2024+ CDS hourly tp (stepType accum, valid_time) in two monthly files: the amount of
    the last hour of March is stamped 2019-04-01 00:00, in the April file."""
    hours = pd.date_range("2019-03-01", "2019-04-30T23:00", freq="h")
    rng = np.random.default_rng(5)
    amount = np.round(rng.gamma(0.3, 1.0, (hours.size, 2, 3)), 1) * 1e-4
    tp = _grid(amount.astype(np.float32), hours, "tp", units="m", GRIB_stepType="accum")
    ds = tp.rename(time="valid_time").to_dataset()
    ds = ds.assign_coords(number=0, expver=("valid_time", np.full(hours.size, "0001")))
    march, april = tmp_path / "march.nc", tmp_path / "april.nc"
    ds.sel(valid_time=slice("2019-03", "2019-03")).to_netcdf(march)
    ds.sel(valid_time=slice("2019-04", "2019-04")).to_netcdf(april)
    both = open_grids([march, april])
    assert both.sizes["time"] == hours.size
    assert whole_months(both, "both") == ["2019-03", "2019-04"]
    stored = ds["tp"].rename(valid_time="time", latitude="lat", longitude="lon")
    truth = _day_totals_by_end_stamp(stored.isel(lat=0))
    got = totals(both["tp"], "D").isel(lat=-1, lon=0).to_series()  # lat flipped: -1 is 51.0
    # rtol: sums of 24 float32 values (relative rounding 24 x 6e-8)
    np.testing.assert_allclose(
        got["2019-03-01":"2019-04-29"], truth["2019-03-01":"2019-04-29"], rtol=2e-6
    )
    assert np.isnan(got["2019-04-30"])  # its last hour is stamped 2019-05-01 00:00: absent
    month = totals(both["tp"], "MS").isel(lat=-1, lon=0).to_series()
    np.testing.assert_allclose(month["2019-03-01"], truth["2019-03"].sum(), rtol=2e-6)
    # the monthly mean of the pipeline (aggregate.monthly_mean of the daily rate) is the same
    # March total once the hours are labelled at their start
    mean = monthly_mean(to_units(both["tp"], "mm/day")).isel(lat=-1, lon=0)
    np.testing.assert_allclose(float(mean[0]) * 31, truth["2019-03"].sum(), rtol=2e-6)
    # one hour per day is not a daily total
    daily = tmp_path / "noon.nc"
    ds.sel(valid_time=ds.valid_time.dt.hour == 12).to_netcdf(daily)
    with pytest.raises(
        DataError,
        match=r"noon\.nc: variable 'tp' has one step per day but an "
        r"accumulation over 1 hour",
    ):
        open_grids(daily)


def test_interval_start_is_applied_once() -> None:
    hours = pd.date_range("2019-03-01", periods=48, freq="h")
    tp = _grid(
        np.arange(48 * 6, dtype=float).reshape(48, 2, 3),
        hours,
        "tp",
        units="m",
        GRIB_stepType="accum",
    )
    once = normalise(tp.to_dataset())
    twice = normalise(once)
    xr.testing.assert_identical(once, twice)
    np.testing.assert_array_equal(once["tp"].values[:-1], tp.values[1:, ::-1])
    assert np.isnan(once["tp"].values[-1]).all()
    assert interval_start(once, "x")["tp"].attrs["time_stamp"] == "start"


# --------------------------------------------------------------------------- longitudes, time


def test_longitudes_0_360_wrap_and_sort(tmp_path: Path) -> None:
    lon = np.array([340.0, 350.0, 0.0, 10.0, 20.0])  # Africa-style, wrapping through 0
    time = pd.date_range("2001-01-01", periods=3, freq="D")
    v = np.arange(3 * 2 * 5, dtype=float).reshape(3, 2, 5)
    ds = xr.Dataset(
        {"rr": (("time", "lat", "lon"), v, {"units": "mm"})},
        coords={"time": time, "lat": [1.0, 2.0], "lon": lon},
    )
    out = normalise(ds, "a.nc")
    np.testing.assert_array_equal(out["lon"].values, [-20.0, -10.0, 0.0, 10.0, 20.0])
    np.testing.assert_array_equal(out["tp"].sel(lon=-20.0).values, v[:, :, 0])
    dup = ds.assign_coords(lon=[0.0, 90.0, 180.0, 270.0, 360.0])
    with pytest.raises(DataError, match=r"b\.nc: longitude 0 appears twice once 0\.\.360 is"):
        normalise(dup, "b.nc")
    points = xr.Dataset(
        {"pr": (("time", "site"), np.ones((3, 2)), {"units": "kg m-2 s-1"})},
        coords={"time": time, "lat": ("site", [1.0, 2.0]), "lon": ("site", [350.0, 10.0])},
    )
    np.testing.assert_array_equal(normalise(points, "p.nc")["lon"].values, [-10.0, 10.0])


def test_scalar_time_becomes_an_axis() -> None:
    ds = xr.Dataset(
        {"t2m": (("latitude", "longitude"), np.full((2, 3), 280.0), {"units": "K"})},
        coords={"latitude": LAT, "longitude": LON, "time": pd.Timestamp("2001-05-01")},
    )
    assert scalar_time(ds)["t2m"].dims == ("time", "latitude", "longitude")
    assert normalise(ds)["t2m"].shape == (1, 2, 3)


# --------------------------------------------------------------------------- products


DAYS = pd.date_range("2001-01-01", periods=62, freq="D")
MONTHS = pd.date_range("2001-01-01", periods=12, freq="MS")


@pytest.mark.parametrize(
    ("name", "units", "time", "per_day"),
    [
        ("precip", "mm", MONTHS, "month"),  # GPCC (NOAA PSL): mm per month
        ("precip", "mm", DAYS, 1.0),  # CPC unified gauge: mm per day
        ("precip", "mm/day", DAYS, 1.0),  # CHIRPS daily
        ("precip", "mm/month", MONTHS, "month"),  # CHIRPS monthly
        ("precip", "mm/day", MONTHS, 1.0),  # CMAP / GPCP monthly mean rates (NOAA PSL)
        ("rr", "mm", DAYS, 1.0),  # E-OBS
        ("pre", "mm/month", MONTHS, "month"),  # CRU TS
        ("prcp", "mm/day", DAYS, 1.0),  # Daymet
        ("pr", "kg m-2 s-1", DAYS, 86400.0),  # CF / CMIP
        ("tp", "m", DAYS, 1000.0),  # ERA5 daily amounts
    ],
    ids=[
        "gpcc",
        "cpc",
        "chirps-daily",
        "chirps-monthly",
        "psl-cmap",
        "eobs",
        "cru",
        "daymet",
        "cf",
        "era5",
    ],
)
def test_precipitation_names_and_units(
    tmp_path: Path, name: str, units: str, time: pd.DatetimeIndex, per_day: float | str
) -> None:
    rng = np.random.default_rng(1)
    v = rng.uniform(0.0, 3.0, (time.size, 2, 2)).astype(np.float32)
    if per_day == 86400.0:
        v = v / 86400.0  # a flux in kg m-2 s-1
    if per_day == 1000.0:
        v = v / 1000.0  # m
    ds = xr.Dataset(
        {name: (("time", "lat", "lon"), v, {"units": units})},
        coords={"time": time, "lat": [10.0, 12.5], "lon": [350.0, 352.5]},
    )
    path = tmp_path / f"{name}.nc"
    ds.to_netcdf(path)
    out = open_grids(path)
    assert list(out.data_vars) == ["tp"] and out["tp"].attrs["source_name"] == name
    rate = to_units(out["tp"], "mm/day").values
    if per_day == "month":  # an amount per month: divided by the days of each month
        days = np.asarray(time.days_in_month, dtype=float)[:, None, None]
        want = v / days
    else:
        want = v * float(per_day)
    # rtol: float32 inputs, conversion factors applied in float64 (relative rounding 6e-8)
    np.testing.assert_allclose(rate, want, rtol=1e-6)


def test_other_variables_of_the_products(tmp_path: Path) -> None:
    ds = xr.Dataset(
        {
            "tmp": (
                ("time", "lat", "lon"),
                np.full((12, 1, 1), 25.0),
                {"units": "degrees Celsius"},
            ),
            "pet": (("time", "lat", "lon"), np.full((12, 1, 1), 4.0), {"units": "mm/day"}),
            "pre": (("time", "lat", "lon"), np.full((12, 1, 1), 62.0), {"units": "mm/month"}),
        },
        coords={"time": MONTHS, "lat": [0.25], "lon": [30.25]},
    )
    out = open_grids(_write(ds, tmp_path / "cru.nc"))
    assert set(out.data_vars) == {"tp", "t2m", "pev"}
    assert float(to_units(out["t2m"], "K")[0, 0, 0]) == pytest.approx(298.15)
    assert out["pev"].attrs["evaporation_sign"] == "positive"  # CRU PET is positive
    assert float(evaporation_positive(out["pev"])[0, 0, 0]) == 4.0
    assert out["tp"].attrs["units"] == "mm" and out["tp"].attrs["source_units"] == "mm/month"
    flux = xr.Dataset(
        {
            "rain": (
                ("time", "lat", "lon"),
                np.ones((62, 1, 1)),
                {"units": "kg m-2 s-1", "standard_name": "precipitation_flux"},
            )
        },
        coords={"time": DAYS, "lat": [0.25], "lon": [30.25]},
    )
    assert "tp" in normalise(flux).data_vars  # known by its CF standard name


def test_per_month_units_on_daily_steps_are_refused(tmp_path: Path) -> None:
    ds = xr.Dataset(
        {"pre": (("time", "lat", "lon"), np.ones((62, 1, 1)), {"units": "mm/month"})},
        coords={"time": DAYS, "lat": [0.25], "lon": [30.25]},
    )
    path = _write(ds, tmp_path / "daily_per_month.nc")
    with pytest.raises(
        DataError,
        match=rf"{path}: variable 'tp' has units 'mm/month' \(an "
        r"amount per month\) but its time steps are not calendar months",
    ):
        open_grids(path)


def _write(ds: xr.Dataset, path: Path) -> Path:
    ds.to_netcdf(path)
    return path
