"""The out-of-core cube build (hydrology.outofcore) against the in-memory one (build_cube).

Every block of the grid is built from its own record with the same per-cell code, and the
grid-wide numbers are reduced from the blocks, so the stores must be equal bit for bit (no
tolerance): every variable, coordinate and attribute, cells in the same tile order.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from hydrology import cubecache
from hydrology.blocks import choose_tile, halo_cells
from hydrology.cubecache import gate_record
from hydrology.cubestore import cube_to_dataset, open_cube, write_cube
from hydrology.dataset import DEFAULT_SPLITS, build_cube
from hydrology.gates import Gates, check_gates
from hydrology.io import open_grids
from hydrology.outofcore import build_cube_store
from hydrology.synthetic import generate
from twins.errors import DataError

ROOT = Path(__file__).resolve().parents[2]
GPCC = ROOT / "data" / "hydrology" / "gpcc_v2018_2.5deg_africa_monthly_1946-2016.nc"
GPCC_SPLITS = {
    "train": ("1961-01", "1992-12"),
    "val": ("1993-01", "2000-12"),
    "test": ("2001-01", "2010-12"),
}


@pytest.fixture(scope="module")
def tiny() -> xr.Dataset:
    return generate("tiny")


def assert_same_store(a: Path, b: Path) -> None:
    """Two cube stores hold the same variables, coordinates and attributes, bit for bit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        x, y = open_cube(a).load(), open_cube(b).load()
    assert sorted(x.variables) == sorted(y.variables)
    for name in x.variables:
        u, v = x[name].values, y[name].values
        assert u.dtype == v.dtype and u.shape == v.shape, name
        same = np.array_equal(u, v, equal_nan=u.dtype.kind in "fc")
        assert same, (
            f"{name} differs (max {np.nanmax(np.abs(u - v)) if u.dtype.kind == 'f' else ''})"
        )
    assert x.attrs == y.attrs


def _in_memory(ds: xr.Dataset, path: Path, tile: tuple[int, int], chunk: int, **kw) -> Path:
    write_cube(cube_to_dataset(build_cube(ds, **kw), tile), path, chunk)
    return path


@pytest.mark.parametrize("regional", [(), (1.0,)], ids=["plain", "regional"])
def test_blocks_give_the_in_memory_cube_bit_for_bit(
    tiny: xr.Dataset, tmp_path: Path, regional: tuple[float, ...]
) -> None:
    """Six blocks of 5 x 7 cells of the 12 x 12 grid (one all sea), chunks of 17 cells that
    straddle blocks; with regional means the halo (3 cells for sigma 1) crosses blocks."""
    kw = {"splits": DEFAULT_SPLITS["tiny"], "regional": regional}
    ref = _in_memory(tiny, tmp_path / "mem.zarr", (5, 7), 17, **kw)
    with dask.config.set(scheduler="threads", num_workers=2):
        info = build_cube_store(tiny, tmp_path / "ooc.zarr", tile=(5, 7), cells_per_chunk=17, **kw)
    assert info["blocks"] == 6 and info["tile"] == [5, 7] and info["cells_per_chunk"] == 17
    assert_same_store(ref, tmp_path / "ooc.zarr")
    assert not Path(f"{tmp_path / 'ooc.zarr'}-scratch").exists()


@pytest.mark.slow
def test_gpcc_slice_with_gaps_gives_the_in_memory_cube(tmp_path: Path) -> None:
    """A real precipitation-only record (GPCC, monthly totals in mm, 8 x 8 cells of East
    Africa with sea and a tenth of the land months removed): observation masks, the
    analogue's gap filling, SPI-1 and SPI-3, regional means, 4 x 4 blocks."""
    ds = open_grids(GPCC, chunks=None).sel(lat=slice(-10, 10), lon=slice(30, 50))
    ds = ds.sel(time=slice("1961", "2010")).load()
    tp = ds["tp"].values.copy()
    land = np.isfinite(tp).all(axis=0)
    tp[(np.random.default_rng(3).random(tp.shape) < 0.1) & land] = np.nan
    ds = ds.assign(tp=ds["tp"].copy(data=tp))
    kw = {
        "splits": GPCC_SPLITS,
        "targets": ("spi_3", "spi_1"),
        "regional": (1.0,),
        "require_val_drought": False,
    }
    ref = _in_memory(ds, tmp_path / "mem.zarr", (4, 4), 10, **kw)
    build_cube_store(ds, tmp_path / "ooc.zarr", tile=(4, 4), cells_per_chunk=10, **kw)
    opened = open_cube(tmp_path / "ooc.zarr")
    assert opened.attrs["meta"]["input_masks"] is True  # the gaps were seen across blocks
    assert_same_store(ref, tmp_path / "ooc.zarr")


def test_a_lazily_opened_file_is_read_block_by_block(tiny: xr.Dataset, tmp_path: Path) -> None:
    """The record on disk, opened with dask chunks of 6 x 6 cells by a year: read blocks
    align with them, and the store equals the in-memory one."""
    path = tmp_path / "tiny.nc"
    tiny.to_netcdf(path)
    lazy = xr.open_dataset(path, chunks={"time": 366, "lat": 6, "lon": 6})
    kw = {"splits": DEFAULT_SPLITS["tiny"]}
    with dask.config.set(scheduler="threads", num_workers=2):
        info = build_cube_store(lazy, tmp_path / "ooc.zarr", block_bytes=2**20, **kw)
    # a year of a cell: 366 days x 25 bytes (six float32 variables, an int8 mask): 2**20
    # bytes are 114 cells, 10 x 11 aligned down to 6 x 6, by 2**20 // (36 x 9150) = 3 years
    assert info["read_tile"] == [6, 6] and info["read_years"] == 3
    ref = _in_memory(
        tiny, tmp_path / "mem.zarr", tuple(info["tile"]), info["cells_per_chunk"], **kw
    )
    assert_same_store(ref, tmp_path / "ooc.zarr")


def test_a_record_from_march_read_by_two_years_gives_the_in_memory_cube(
    tiny: xr.Dataset, tmp_path: Path
) -> None:
    """Calendar-year slabs of the record (the first one from March: the scratch store starts
    in January, its first two months NaN) give the same months as the whole record."""
    ds = tiny.sel(time=slice("2000-03-01", None))
    kw = {
        "splits": {
            "train": ("2000-03", "2004-12"),
            "val": ("2005-01", "2005-12"),
            "test": ("2006-01", "2007-12"),
        },
    }
    per_year = 366 * sum(ds[v].dtype.itemsize for v in ds.data_vars if "time" in ds[v].dims)
    info = build_cube_store(
        ds,
        tmp_path / "ooc.zarr",
        tile=(5, 7),
        cells_per_chunk=17,
        block_bytes=per_year * 35 * 2,
        **kw,
    )
    assert info["read_years"] == 2
    assert_same_store(
        _in_memory(ds, tmp_path / "mem.zarr", (5, 7), 17, **kw), tmp_path / "ooc.zarr"
    )


def test_tiles_follow_the_budget_and_the_input_chunks() -> None:
    # 100 cells wanted on a 50 x 80 grid: 10 x 10; aligned to 16 x 16 chunks: a divisor (8).
    assert choose_tile((50, 80), 1000, 100_000) == (10, 10)
    assert choose_tile((50, 80), 1000, 100_000, align=(16, 16)) == (8, 8)
    # 4000 cells: the whole 50 x 80 grid; of a 500 x 80 grid 63 x 63, aligned to 16 x 16
    # chunks a multiple of them.
    assert choose_tile((50, 80), 1000, 4_000_000) == (50, 80)
    assert choose_tile((500, 80), 1000, 4_000_000, align=(16, 16)) == (48, 48)
    assert choose_tile((5, 5), 10**9, 1) == (1, 1)  # at least one cell
    assert halo_cells([]) == 0 and halo_cells([1.0, 6.0]) == 18  # int(3 sigma + 0.5)


def test_refusals_leave_no_store(tiny: xr.Dataset, tmp_path: Path) -> None:
    sea = tiny.assign(lsm=tiny["lsm"] * 0)
    with pytest.raises(DataError, match="no land cells"):
        build_cube_store(sea, tmp_path / "a.zarr", DEFAULT_SPLITS["tiny"])
    late = {**DEFAULT_SPLITS["tiny"], "test": ("2006-01", "2009-12")}
    with pytest.raises(DataError, match="split 'test' .* is outside the record"):
        build_cube_store(tiny, tmp_path / "b.zarr", late)
    made = tmp_path / "c.zarr"
    made.mkdir()  # as build_once hands it over: an empty directory, kept, emptied again
    with pytest.raises(DataError, match="contains no drought month"):
        build_cube_store(tiny, made, DEFAULT_SPLITS["tiny"], drought_cell_share=1.01)
    assert [p.name for p in tmp_path.iterdir()] == ["c.zarr"] and not list(made.iterdir())


def test_gates_go_by_groups_of_calendar_years_and_refuse_as_over_the_whole_record(
    tiny: xr.Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a land-sea mask the record's gates run by groups of whole calendar years sized
    by the budget (statics first, alone); a month missing over land and a value outside
    the bounds late in the record are refused with the whole record's message."""
    ds = tiny.drop_vars(["drought_forcing", "drought_mask"])
    timed = [str(v) for v in ds.data_vars if "time" in ds[v].dims]
    calls: list[tuple[list[str], str, str]] = []

    def recorder(part: xr.Dataset, *args: object, variables: list[str] | None = None) -> None:
        t = part.indexes["time"]
        calls.append((list(variables or []), f"{t[0]:%Y-%m-%d}", f"{t[-1]:%Y-%m-%d}"))
        check_gates(part, *args, variables=variables)  # type: ignore[arg-type]

    monkeypatch.setattr(cubecache, "check_gates", recorder)
    # a year's shares of 12 x 12 cells: 12 months x 144 cells x 8 bytes x (4 variables + 1)
    per_year = 12 * 144 * 8 * (len(timed) + 1)
    gate_record(ds, "f.nc", Gates(), 2 * per_year)
    assert calls == [
        (["lsm", "z"], "2000-01-01", "2007-12-31"),
        *((timed, f"{y}-01-01", f"{y + 1}-12-31") for y in (2000, 2002, 2004, 2006)),
    ]
    land = ds["lsm"].values > 0.5
    tp = ds["tp"].values.copy()
    tp[ds.indexes["time"].to_period("M") == pd.Period("2006-07"), :, :] = np.nan
    gap = ds.assign(tp=ds["tp"].copy(data=tp))
    t2m = ds["t2m"].values.copy()
    t2m[2700, np.flatnonzero(land.any(1))[0], np.flatnonzero(land.any(0))[-1]] = 400.0
    hot = ds.assign(t2m=ds["t2m"].copy(data=t2m))
    for bad in (gap, hot):
        with pytest.raises(DataError) as whole:
            check_gates(bad, "f.nc", Gates())
        with pytest.raises(DataError) as grouped:
            gate_record(bad, "f.nc", Gates(), per_year)
        assert str(grouped.value) == str(whole.value)
