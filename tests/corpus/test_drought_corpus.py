"""Corpus of bad new-month files for the drought twin (``twins twin update DIR --data FILE``).

Every case is refused with exit 3 and one line naming the file and the variable, leaves the
twin byte-for-byte unchanged, and the valid month 2007-11 goes in afterwards. The twin-level
cases at the end (exit 4) misuse the twin directory itself.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import h5py
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology.synthetic import write_netcdf


class DroughtWorld(Protocol):
    """What the builders use of the session's drought world (tests/corpus/conftest.py)."""

    template: Path

    def month(self, month: str) -> xr.Dataset:
        """A deep copy of one month of the daily data, dims ``(time, lat, lon)``."""
        ...


Build = Callable[[DroughtWorld, Path], list[Path]]
NOV = "era5land_2007-11.nc"


@dataclass(frozen=True)
class Bad:
    """One refused input.

    Attributes:
        id: Test id.
        build: Writes the input file(s) into a directory; returns the ``--data`` paths.
        names: What the error line must name besides the culprit file (a tuple: any of).
        culprit: Index of the path whose name the error line must hold.
        code: Expected exit code.
    """

    id: str
    build: Build
    names: tuple[str | tuple[str, ...], ...]
    culprit: int = 0
    code: int = 3


# ------------------------------------------------------------------------------- helpers


def _nc(ds: xr.Dataset, d: Path, name: str = NOV) -> Path:
    return write_netcdf(ds, d / name)


def _land(ds: xr.Dataset) -> xr.DataArray:
    """Land cells (lsm > 0.5), broadcast over time."""
    return (ds["lsm"] > 0.5).broadcast_like(ds["tp"])


def _over_land(ds: xr.Dataset, var: str, value: float) -> xr.Dataset:
    """``var`` set to ``value`` at every land cell-day (sea keeps its values)."""
    da = ds[var]
    ds[var] = xr.where(_land(ds), np.float32(value), da).astype(da.dtype).assign_attrs(da.attrs)
    return ds


def _at_cells(ds: xr.Dataset, var: str, value: float, n: int) -> xr.Dataset:
    """``var`` set to ``value`` at ``n`` land cell-days spread over the month."""
    land = np.argwhere(_land(ds).values)
    pick = land[np.linspace(0, len(land) - 1, n).astype(int)]
    arr = ds[var].values.copy()
    arr[tuple(pick.T)] = value
    ds[var] = ds[var].copy(data=arr)
    return ds


def _edit(fn: Callable[[xr.Dataset], xr.Dataset], month: str = "2007-11") -> Build:
    """A builder writing ``fn(month)`` as one NetCDF-4 file."""
    return lambda w, d: [_nc(fn(w.month(month)), d, f"era5land_{month}.nc")]


def _attrs(var: str, **attrs: str) -> Build:
    def fn(ds: xr.Dataset) -> xr.Dataset:
        ds[var].attrs.update(attrs)
        return ds

    return _edit(fn)


def _truncated(fmt: str, share: float) -> Build:
    """The month written as ``fmt`` and cut to ``share`` of its bytes."""

    def build(w: DroughtWorld, d: Path) -> list[Path]:
        p = d / NOV
        w.month("2007-11").to_netcdf(p, format=fmt)
        with p.open("r+b") as fh:
            fh.truncate(int(p.stat().st_size * share))
        return [p]

    return build


def _corrupt_chunk(w: DroughtWorld, d: Path) -> list[Path]:
    """NetCDF-4 whose compressed ``tp`` chunk has 32 bytes overwritten in its middle."""
    p = _nc(w.month("2007-11"), d)
    with h5py.File(p, "r") as h5:
        info = h5["tp"].id.get_chunk_info(0)
    with p.open("r+b") as fh:
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\xa5" * 32)
    return [p]


def _raw(content: bytes, name: str = NOV) -> Build:
    def build(w: DroughtWorld, d: Path) -> list[Path]:
        p = d / name
        p.write_bytes(content)
        return [p]

    return build


def _plain_hdf5(w: DroughtWorld, d: Path) -> list[Path]:
    """An HDF5 file (not NetCDF: no dimensions, no coordinates) named ``.nc``."""
    p = d / NOV
    with h5py.File(p, "w") as h5:
        h5.create_dataset("tp", data=np.zeros((30, 12, 12), np.float32))
    return [p]


def _directory(w: DroughtWorld, d: Path) -> list[Path]:
    p = d / "incoming-2007-11"
    p.mkdir()
    return [p]


def _share_nan(var: str, share: float) -> Callable[[xr.Dataset], xr.Dataset]:
    """``share`` of the land cell-days of ``var`` set to NaN (a fixed random choice)."""

    def fn(ds: xr.Dataset) -> xr.Dataset:
        land = np.argwhere(_land(ds).values)
        rng = np.random.default_rng(14)
        pick = land[rng.choice(len(land), int(round(share * len(land))), replace=False)]
        arr = ds[var].values.copy()
        arr[tuple(pick.T)] = np.nan
        ds[var] = ds[var].copy(data=arr)
        return ds

    return fn


def _relabel(start: str, month: str = "2007-11") -> Build:
    """The month's data stamped as the days from ``start`` (same length)."""

    def fn(ds: xr.Dataset) -> xr.Dataset:
        return ds.assign_coords(time=pd.date_range(start, periods=ds.sizes["time"]))

    return _edit(fn, month)


def _swap_lat_lon(ds: xr.Dataset) -> xr.Dataset:
    return ds.rename({"lat": "tmp"}).rename({"lon": "lat"}).rename({"tmp": "lon"})


def _shuffled_lat(ds: xr.Dataset) -> xr.Dataset:
    order = np.arange(ds.sizes["lat"])
    order[[3, 4]] = order[[4, 3]]
    return ds.isel(lat=order)


def _no_time_units(ds: xr.Dataset) -> xr.Dataset:
    return ds.assign_coords(time=np.arange(ds.sizes["time"], dtype=np.int64))


def _ensemble_tp(ds: xr.Dataset) -> xr.Dataset:
    """``tp`` with an ensemble dimension ``number`` of two different members."""
    tp = xr.concat([ds["tp"], ds["tp"] * np.float32(1.5)], dim="number")
    return ds.assign(tp=tp.assign_coords(number=[0, 1]).assign_attrs(ds["tp"].attrs))


def _duplicated_day(ds: xr.Dataset) -> xr.Dataset:
    return xr.concat([ds.isel(time=slice(0, 15)), ds.isel(time=slice(14, None))], dim="time")


def _monthly(ds: xr.Dataset) -> xr.Dataset:
    statics = ds[["lsm", "z"]]
    return ds.drop_vars(["lsm", "z"]).resample(time="MS").mean().merge(statics)


def _static_tp(ds: xr.Dataset) -> xr.Dataset:
    return ds.assign(tp=ds["tp"].isel(time=0, drop=True))


def _two(first: Build, second: Build) -> Build:
    """Two files in one update (each builder writes into its own subdirectory)."""

    def build(w: DroughtWorld, d: Path) -> list[Path]:
        (d / "a").mkdir()
        (d / "b").mkdir()
        return [*first(w, d / "a"), *second(w, d / "b")]

    return build


def _half(which: int, fn: Callable[[xr.Dataset], xr.Dataset] = lambda ds: ds) -> Build:
    sl = slice(0, 15) if which == 0 else slice(15, None)

    def build(w: DroughtWorld, d: Path) -> list[Path]:
        return [_nc(fn(w.month("2007-11").isel(time=sl)), d, f"era5land_2007-11_part{which}.nc")]

    return build


def _rename(**names: str) -> Callable[[xr.Dataset], xr.Dataset]:
    return lambda ds: ds.rename(names)


def _scaled(var: str, factor: float) -> Callable[[xr.Dataset], xr.Dataset]:
    def fn(ds: xr.Dataset) -> xr.Dataset:
        ds[var] = (ds[var] * np.float32(factor)).assign_attrs(ds[var].attrs)
        return ds

    return fn


def _nan_all(var: str) -> Callable[[xr.Dataset], xr.Dataset]:
    def fn(ds: xr.Dataset) -> xr.Dataset:
        ds[var] = ds[var] * np.float32(np.nan)
        return ds

    return fn


def _sea_filled_swvl1(ds: xr.Dataset) -> xr.Dataset:
    """Sea cells filled with 0.3, every land cell missing (a filled product)."""
    sea = ~_land(ds)
    ds["swvl1"] = xr.where(sea, 0.3, np.nan).astype("float32").assign_attrs(ds["swvl1"].attrs)
    return ds


def _noise_segment(w: DroughtWorld, d: Path) -> list[Path]:
    """A noise-twin segment (multi-channel HDF5) given to the drought twin as ``.nc``."""
    p = d / "V-SEG-1.nc"
    with h5py.File(p, "w") as h5:
        ds = h5.create_dataset("V1:Hrec_hoft_16384Hz", data=np.zeros(4096))
        ds.attrs["sample_rate"] = 4096.0
        ds.attrs["t0"] = 1262304018.0
    return [p]


# --------------------------------------------------------------------------------- cases

CASES: list[Bad] = [
    # -- the file cannot be read in full
    Bad("nc3-cut-at-97pct", _truncated("NETCDF3_CLASSIC", 0.97), ()),
    Bad("nc3-cut-at-60pct", _truncated("NETCDF3_CLASSIC", 0.60), ()),
    Bad("nc4-cut-at-half", _truncated("NETCDF4", 0.5), ()),
    Bad("nc4-corrupt-tp-chunk", _corrupt_chunk, ("tp",)),
    Bad("zero-length-file", _raw(b""), ()),
    Bad("text-file-named-nc", _raw(b"year,month,tp\n2007,11,3.2\n"), ()),
    Bad("plain-hdf5-named-nc", _plain_hdf5, ()),
    Bad("noise-segment-as-nc", _noise_segment, ()),
    Bad("directory-as-data", _directory, ()),
    Bad("missing-file", lambda w, d: [d / "era5land_2007-13.nc"], ()),
    Bad("glob-matches-nothing", lambda w, d: [d / "era5land_2099-*.nc"], ()),
    # -- variables missing or misnamed
    Bad("wrong-variable-names", _edit(_rename(tp="precip", swvl1="soilw")), ("tp",)),
    Bad("missing-swvl1", _edit(lambda ds: ds.drop_vars("swvl1")), ("swvl1",)),
    Bad("tp-without-time-dim", _edit(_static_tp), (("tp", "time"),)),
    Bad("tp-ensemble-of-2-members", _edit(_ensemble_tp), (("tp", "number"),)),
    # -- units
    Bad("tp-no-units", _edit(lambda ds: ds.assign(tp=ds["tp"].drop_attrs())), ("tp",)),
    Bad("tp-unknown-units", _attrs("tp", units="bananas"), ("tp",)),
    Bad("tp-temperature-units", _attrs("tp", units="K"), ("tp",)),
    Bad("t2m-kelvin-labelled-degC", _attrs("t2m", units="degC"), ("t2m",)),
    Bad("swvl1-in-percent", _edit(_scaled("swvl1", 100.0)), ("swvl1",)),
    Bad("lsm-in-percent-labelled-1", _edit(_scaled("lsm", 100.0)), ("lsm",)),
    # -- implausible values
    Bad("tp-90pct-nan-over-land", _edit(_share_nan("tp", 0.9)), ("tp",)),
    Bad("tp-one-cell-day-1e30", _edit(lambda ds: _at_cells(ds, "tp", 1e30, 1)), ("tp",)),
    Bad("tp-minus-5mm-per-day", _edit(lambda ds: _over_land(ds, "tp", -0.005)), ("tp",)),
    Bad("tp-undeclared-fill-32767", _edit(lambda ds: _at_cells(ds, "tp", -32767, 3)), ("tp",)),
    Bad("tp-entirely-nan", _edit(_nan_all("tp")), ("tp",)),
    Bad("pev-entirely-nan", _edit(_nan_all("pev")), ("pev",)),
    Bad("swvl1-nan-over-land-sea-filled", _edit(_sea_filled_swvl1), ("swvl1",)),
    Bad("swvl1-negative", _edit(lambda ds: _over_land(ds, "swvl1", -0.1)), ("swvl1",)),
    Bad("swvl1-above-one", _edit(lambda ds: _over_land(ds, "swvl1", 1.2)), ("swvl1",)),
    Bad("t2m-zero-kelvin", _edit(lambda ds: _over_land(ds, "t2m", 0.0)), ("t2m",)),
    Bad("t2m-one-inf", _edit(lambda ds: _at_cells(ds, "t2m", np.inf, 1)), ("t2m",)),
    Bad(
        "t2m-undeclared-fill-9.97e36",
        _edit(lambda ds: _at_cells(ds, "t2m", 9.96921e36, 2)),
        ("t2m",),
    ),
    # -- time axis
    Bad("time-without-units", _edit(_no_time_units), ("time",)),
    Bad("partial-month", _edit(lambda ds: ds.isel(time=slice(0, 20))), ("time",)),
    Bad("monthly-steps", _edit(_monthly), ("time",)),
    Bad("duplicated-day", _edit(_duplicated_day), ("time",)),
    Bad("month-already-ingested-new-content", _edit(_scaled("tp", 1.1), "2007-10"), ("time",)),
    Bad("past-month-2006-05", _edit(lambda ds: ds, "2006-05"), ("time",)),
    Bad("gap-2007-12", _edit(lambda ds: ds, "2007-12"), ("time",)),
    Bad("future-month-2008-11", _relabel("2008-11-01"), ("time",)),
    # -- grid
    Bad("grid-lat-shifted", _edit(lambda ds: ds.assign_coords(lat=ds.lat + 1.0)), ("lat",)),
    Bad("grid-lon-shifted", _edit(lambda ds: ds.assign_coords(lon=ds.lon + 0.05)), ("lon",)),
    Bad("grid-one-row-less", _edit(lambda ds: ds.isel(lat=slice(0, 11))), ("lat",)),
    Bad("lat-lon-swapped", _edit(_swap_lat_lon), (("lat", "lon"),)),
    Bad("lat-not-monotonic", _edit(_shuffled_lat), ("lat",)),
    # -- several files in one update
    Bad("two-files-same-month", _two(_edit(lambda ds: ds), _edit(lambda ds: ds)), ("time",), 1),
    Bad(
        "halves-on-different-grids",
        _two(_half(0), _half(1, lambda ds: ds.assign_coords(lat=ds.lat + 1.0))),
        ("lat",),
        1,
    ),
    Bad(
        "second-month-negative-tp",
        _two(_edit(lambda ds: ds), _edit(lambda ds: _over_land(ds, "tp", -0.005), "2007-12")),
        ("tp",),
        1,
    ),
    Bad(
        "gap-between-files",
        _two(_edit(lambda ds: ds), _relabel("2008-01-01", "2007-12")),
        ("time",),
        1,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_month_is_refused(
    case: Bad,
    drought: DroughtWorld,
    drought_twin: Path,
    tmp_path: Path,
    refuse: Callable[..., str],
    drought_ok: Callable[[Path], None],
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    paths = case.build(drought, inputs)
    argv = ["twin", "update", drought_twin, "--data", *paths]
    line = refuse(argv, case.code, [paths[case.culprit].name, *case.names], [drought_twin])
    assert "monotonic" not in line or case.id == "lat-not-monotonic", line  # not misleading
    drought_ok(drought_twin)


# ---------------------------------------------------------------- the twin directory itself


def _corrupt_state(twin: Path) -> None:
    state = twin / "twin.json"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])


@pytest.mark.parametrize(
    ("cmd", "make", "extra", "names"),
    [
        ("update", "missing", ["--data", "x.nc"], ["no-such-twin"]),
        ("status", "missing", [], ["no-such-twin"]),
        ("simulate", "missing", [], ["no-such-twin"]),
        ("history", "missing", [], ["no-such-twin"]),
        ("update", "empty-dir", ["--data", "x.nc"], ["no-such-twin"]),
        ("update", "file", ["--data", "x.nc"], ["no-such-twin"]),
        ("update", "corrupt-state", ["--data", "x.nc"], ["twin.json"]),
        ("rollback", "corrupt-state", ["--to", "0"], ["twin.json"]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_not_a_twin_is_refused(
    cmd: str,
    make: str,
    extra: list[str],
    names: list[str],
    drought: DroughtWorld,
    tmp_path: Path,
    refuse: Callable[..., str],
) -> None:
    target = tmp_path / "no-such-twin"
    if make == "empty-dir":
        target.mkdir()
    elif make == "file":
        target.write_text("not a twin\n")
    elif make == "corrupt-state":
        shutil.copytree(drought.template, target)
        _corrupt_state(target)
    refuse(["twin", cmd, target, *extra], 4, names, [target])


@pytest.mark.parametrize("version", ["99", "-1"])
def test_rollback_to_a_version_that_does_not_exist(
    version: str,
    drought_twin: Path,
    refuse: Callable[..., str],
    drought_ok: Callable[[Path], None],
) -> None:
    refuse(["twin", "rollback", drought_twin, "--to", version], 4, [version], [drought_twin])
    drought_ok(drought_twin)
