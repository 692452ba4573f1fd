"""The drought sample cube built out of core: blocks of the grid, never the whole record.

:func:`hydrology.dataset.build_cube` loads the whole daily record. :func:`build_cube_store`
computes the same cube (:mod:`hydrology.cubestore`, a Zarr store chunked by cell) with dask,
block by block, so that memory is bounded by ``block_bytes``, not by the grid or the record:

1. **Months.** The daily (or monthly) record is read in blocks of cells aligned with the
   input's chunks, by groups of calendar years (every step of a month in one task), through
   :func:`hydrology.forecast.monthly_inputs`, into a scratch Zarr store of monthly inputs
   (about 1/30 of the daily record). Then each block of the cube's ``tile`` reports its
   served cells (:func:`hydrology.features.input_cells`) and whether they have gaps
   (:func:`hydrology.features.has_gaps`).
2. **Cells.** Each block's served cells, their whole monthly record at once, get their
   indices fitted and transformed (:class:`hydrology.indices.DroughtIndices`), their scaler
   statistics (:meth:`hydrology.features.Scaler.fit`), targets, analogue (ESP) baseline and
   SPI parameters (:func:`hydrology.dataset.forecast_targets`), observed indices,
   precipitation, and drought counts per month; with regional-mean inputs the indices go to
   the scratch store too.
3. **Dynamic features** (:func:`hydrology.features.dynamic_features`) per block; regional
   means read the indices of the block and a halo of ``int(3 * sigma + 0.5)`` cells around
   it (the Gaussian kernel's reach), so they equal the whole-grid filter.

Everything in a block is per cell (per cell and month in phase 1; a Thornthwaite PET's heat
index is per calendar year), and the few grid-wide numbers (the served cells, whether any
has gaps, the orography's mean and spread, the drought share per month) are reduced from the
blocks, so the store equals ``build_cube`` bit for bit, cells in tile order
(:func:`hydrology.cubestore.cube_to_dataset` with the same tile). The work runs on the
active dask scheduler: wrap the call in :func:`twins.compute.cluster.dask_client` to run it
on a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import dask
import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr

from hydrology.aggregate import monthly_mean
from hydrology.blocks import (
    BLOCK_BYTES,
    choose_tile,
    fit_bytes_per_cell,
    grid_blocks,
    halo_cells,
    read_blocks,
    year_slabs,
)
from hydrology.cubestore import (
    CHUNK_BYTES,
    assemble,
    chunk_cells,
    dataset_to_cube,
    open_cube,
    write_cube,
)
from hydrology.dataset import (
    _served,
    check_record,
    check_splits,
    check_val_drought,
    cube_meta,
    forecast_targets,
    in_drought,
    observed_indices,
)
from hydrology.features import (
    MIN_VALID_SHARE,
    Scaler,
    dynamic_features,
    input_cells,
    input_vars,
    regional_mean,
    static_features,
    static_names,
    time_by_cell,
)
from hydrology.forecast import index_inputs, monthly_inputs
from hydrology.indices import CLIP, DroughtIndices, IndexSpec
from hydrology.pet import PetMethod
from hydrology.targets import check_targets
from twins.errors import DataError

__all__ = ["build_cube_store"]

log = logging.getLogger(__name__)

#: Variables that are static fields (no time axis) of a canonical dataset.
STATICS = ("lsm", "z")


@dataclass(frozen=True)
class _Plan:
    """What every block needs to know (picklable, for dask workers)."""

    targets: tuple[str, ...]
    leads: tuple[int, ...]
    train: tuple[pd.Timestamp, pd.Timestamp]
    cal: tuple[str, str]
    pet: PetMethod
    regional: tuple[float, ...]
    masks: bool = False


# ------------------------------------------------------------------------------ phase 1


def _monthly(daily: xr.Dataset, pet: PetMethod) -> xr.Dataset:
    """Monthly inputs of a block, and the monthly mean of a synthetic drought mask."""
    monthly = monthly_inputs(daily, pet)
    if "drought_mask" in daily:
        monthly["drought_mask"] = monthly_mean(daily["drought_mask"].astype("float32"))
    return monthly


def _months_block(daily: xr.Dataset, plan: _Plan) -> dict[str, np.ndarray]:
    """Phase 1 on one block of cells and calendar years: monthly inputs ``(month, rows,
    cols)``."""
    monthly = _monthly(daily, plan.pet)
    return {str(v): monthly[v].values for v in monthly.data_vars}


def _mask_block(monthly: xr.Dataset, statics: xr.Dataset, plan: _Plan) -> dict[str, np.ndarray]:
    """A block's served cells (:func:`hydrology.features.input_cells`) and, among them, those
    that miss a month of an input (:func:`hydrology.features.has_gaps` cell by cell)."""
    shape = (monthly.sizes["lat"], monthly.sizes["lon"])
    served = np.zeros(shape[0] * shape[1], bool)
    served[input_cells(monthly.merge(statics), plan.train)] = True
    gaps = np.zeros_like(served)
    for v in input_vars(monthly):
        gaps |= ~np.isfinite(time_by_cell(monthly[v])).all(axis=0)
    return {"served": served.reshape(shape), "gappy": (gaps & served).reshape(shape)}


# ------------------------------------------------------------------------------ phase 2


def _cells_block(monthly: xr.Dataset, served: np.ndarray, plan: _Plan) -> dict[str, Any]:
    """Phase 2 on one block: every per-cell array of the store but ``dynamic`` (and
    ``dynamic`` too without regional inputs), and the block's indices for the halo."""
    cells = np.flatnonzero(served.ravel())
    n, nt = cells.size, monthly.sizes["time"]
    spi = [t for t in plan.targets if t.startswith("spi_")]
    n_out = len(plan.targets) * len(plan.leads)
    variables = input_vars(monthly)
    if n == 0:  # no served cell (sea): nothing to fit
        empty = np.full((len(plan.targets), nt, *served.shape), np.nan)
        return {
            "indices": empty,
            "obs": np.zeros((0, nt, len(plan.targets)), np.float32),
            "target": np.zeros((0, nt, n_out), np.float32),
            "baseline": np.zeros((0, nt, n_out), np.float32),
            "pr": np.zeros((0, nt), np.float32),
            "scaler_mean": np.zeros((0, 12, len(variables)), np.float32),
            "scaler_std": np.zeros((0, 12, len(variables)), np.float32),
            "spi_gamma": np.zeros((0, len(spi), 12, 3)),
            "spi_p0": np.zeros((0, len(spi), 12)),
            "drought": np.zeros(nt, np.int64),
            "dynamic": None,
        }
    di = DroughtIndices(list(plan.targets), plan.cal[0], plan.cal[1])
    indices = di.fit_transform(index_inputs(monthly))
    scaler = Scaler.fit(monthly, cells, plan.train)
    obs = observed_indices(indices, plan.targets, cells)
    train_years = (plan.train[0].year, plan.train[1].year)
    target, baseline, spi_params = forecast_targets(
        obs, _served(monthly["pr"], cells), di.params, cells, plan.targets, plan.leads, train_years
    )
    dm = monthly.get("drought_mask")
    dynamic = None
    if not plan.regional:
        dynamic = dynamic_features(monthly, indices, plan.targets, cells, scaler, (), plan.masks)
    return {
        "indices": np.stack(
            [indices[t].transpose("time", "lat", "lon").values for t in plan.targets]
        ),
        "obs": np.ascontiguousarray(obs.transpose(1, 0, 2)),
        "target": np.ascontiguousarray(target.transpose(1, 0, 2)),
        "baseline": np.ascontiguousarray(baseline.transpose(1, 0, 2)),
        "pr": np.ascontiguousarray(time_by_cell(monthly["pr"])[:, cells].T.astype(np.float32)),
        "scaler_mean": np.ascontiguousarray(scaler.mean.transpose(2, 0, 1)),
        "scaler_std": np.ascontiguousarray(scaler.std.transpose(2, 0, 1)),
        "spi_gamma": np.stack([spi_params[t]["gamma"].transpose(2, 0, 1) for t in spi], 1)
        if spi
        else np.zeros((n, 0, 12, 3)),
        "spi_p0": np.stack([spi_params[t]["p0"].T for t in spi], 1)
        if spi
        else np.zeros((n, 0, 12)),
        "drought": in_drought(dm, indices, plan.targets, cells).sum(axis=1).astype(np.int64),
        "dynamic": dynamic,
    }


# ------------------------------------------------------------------------------ phase 3


def _dynamic_block(
    monthly: xr.Dataset,
    served: np.ndarray,
    indices: Path,
    window: tuple[slice, slice],
    window_served: np.ndarray,
    inner: tuple[slice, slice],
    scaler_mean: np.ndarray,
    scaler_std: np.ndarray,
    plan: _Plan,
) -> np.ndarray:
    """Phase 3 on one block: ``(cell, time, feature)`` with regional means from the halo.

    The indices of the ``window`` (the block and its halo, ``(lat, lon)`` slices) are read
    here from the scratch store ``indices``, not handed in by dask: as dask inputs, the
    index chunks a window overlaps (up to 5 x 5 of them for a 25 x 25 block and a 36-cell
    halo) are shared by the neighbouring blocks' tasks, and each worker kept them until
    every neighbour had run.
    """
    cells = np.flatnonzero(served.ravel())
    scaler = Scaler(
        scaler_mean.transpose(1, 2, 0),
        scaler_std.transpose(1, 2, 0),
        0.0,
        1.0,
        variables=input_vars(monthly),
    )
    # Each index's window is read once (float64, one index at a time) into the block's own
    # indices and the clipped float32 window series the regional means take.
    wy, wx = window_served.shape
    wcells = np.flatnonzero(window_served.ravel())
    store = xr.open_zarr(indices, consolidated=False, chunks=None)  # (no dask: read here)
    idx_window = store.isel(lat=window[0], lon=window[1])
    nt = idx_window.sizes["time"]
    vals = np.empty((nt, len(plan.targets), wcells.size), np.float32)
    block: dict[str, Any] = {}
    for j, t in enumerate(plan.targets):
        grid = idx_window[t].transpose("time", "lat", "lon").values
        block[t] = (("time", "lat", "lon"), grid[:, inner[0], inner[1]].copy())
        vals[:, j] = np.clip(grid.reshape(nt, -1)[:, wcells], -CLIP, CLIP)
        del grid
    local = dynamic_features(
        monthly, xr.Dataset(block), plan.targets, cells, scaler, (), plan.masks
    )
    del block
    # Regional means over the window (block + halo), kept at the block's cells.
    by, bx = np.divmod(cells, served.shape[1])
    pos = np.searchsorted(wcells, (by + inner[0].start) * wx + bx + inner[1].start)
    reg = [
        regional_mean(vals[:, j], wcells, (wy, wx), s)[:, pos]
        for s in plan.regional
        for j in range(len(plan.targets))
    ]
    reg_arr = np.nan_to_num(np.stack(reg, axis=1).transpose(2, 0, 1), nan=0.0)
    split = len(scaler.variables) + len(plan.targets)
    return np.concatenate([local[..., :split], reg_arr, local[..., split:]], axis=-1)


# ------------------------------------------------------------------------------ driver


def _jsonable(attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes a Zarr store can hold (numpy scalars as Python numbers, others as text)."""
    out: dict[str, Any] = {}
    for k, v in attrs.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[str(k)] = v if isinstance(v, str | int | float | bool) else str(v)
    return out


def _input_chunks(ds: xr.Dataset) -> tuple[int, int] | None:
    """The first chunk's ``(lat, lon)`` size of the first dask-backed variable, or None."""
    for name in ds.data_vars:
        chunks = ds[name].chunksizes
        if "lat" in chunks and "lon" in chunks:
            return int(chunks["lat"][0]), int(chunks["lon"][0])
    return None


def _grid_of_blocks(
    parts: list[Any], blocks: list[tuple[slice, slice]], n_cols: int
) -> list[list[Any]]:
    return [parts[i : i + n_cols] for i in range(0, len(blocks), n_cols)]


def _months_of(times: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The month starts a record covers."""
    first, last = times[0].to_period("M"), times[-1].to_period("M")
    return pd.period_range(first, last, freq="M").to_timestamp()


def _phase_months(
    dyn: xr.Dataset,
    plan: _Plan,
    tile: tuple[int, int],
    years: int,
    store: Path,
    store_tile: tuple[int, int],
    store_years: int,
) -> xr.Dataset:
    """Phase 1: the monthly inputs, into ``store``, from blocks of ``tile`` cells and
    ``years`` calendar years (every step of a month in one task, so the months equal the
    whole record's; a Thornthwaite PET's heat index is per calendar year).

    The store starts in January of the first year (months before the record are NaN), so
    that its chunks of ``12 * store_years`` months (a multiple of ``years``) are regular;
    they are ``store_tile`` cells (the cube's blocks, which then read exactly their chunks).
    The Dataset returned starts at the record's first month.
    """
    shape = (dyn.sizes["lat"], dyn.sizes["lon"])
    blocks = grid_blocks(shape, tile)
    n_cols = -(-shape[1] // tile[1])
    times = pd.DatetimeIndex(dyn["time"].values)
    slabs = year_slabs(times, years) if times.size else []
    probe = _monthly(dyn.isel(time=slabs[0], lat=[0], lon=[0]).compute(), plan.pet)
    names = [str(v) for v in probe.data_vars]
    months = _months_of(times)
    pad = int(months[0].month) - 1
    pieces: dict[str, list[da.Array]] = {v: [] for v in names}
    for ts in slabs:
        n_months = _months_of(times[ts]).size
        parts = [
            dask.delayed(_months_block, pure=False)(dyn.isel(time=ts, lat=sy, lon=sx), plan)
            for sy, sx in blocks
        ]
        for v in names:
            grid = [
                da.from_delayed(
                    p[v], (n_months, sy.stop - sy.start, sx.stop - sx.start), probe[v].dtype
                )
                for p, (sy, sx) in zip(parts, blocks, strict=True)
            ]
            pieces[v].append(da.block(_grid_of_blocks(grid, blocks, n_cols)))
    step = 12 * store_years
    data = {}
    for v in names:
        lead = [da.full((pad, *shape), np.nan, probe[v].dtype, chunks=(pad, *tile))] if pad else []
        arr = da.concatenate([*lead, *pieces[v]]).rechunk((step, *store_tile))
        data[v] = (("time", "lat", "lon"), arr, _jsonable(probe[v].attrs))
    padded = pd.date_range(
        months[0] - pd.DateOffset(months=pad), periods=pad + months.size, freq="MS"
    )
    monthly = xr.Dataset(
        data, coords={"time": padded, "lat": dyn["lat"].values, "lon": dyn["lon"].values}
    )
    encoding = {v: {"chunks": (step, *store_tile)} for v in names}
    monthly.to_zarr(store, mode="w-", consolidated=False, encoding=encoding)
    return xr.open_zarr(store, consolidated=False).isel(time=slice(pad, None))


def _phase_masks(
    monthly: xr.Dataset, statics: xr.Dataset, plan: _Plan, tile: tuple[int, int]
) -> tuple[np.ndarray, bool]:
    """The served-cell mask ``(lat, lon)`` and whether a served cell misses a month."""
    shape = (monthly.sizes["lat"], monthly.sizes["lon"])
    blocks = grid_blocks(shape, tile)
    parts = [
        dask.delayed(_mask_block, pure=False)(
            monthly.isel(lat=sy, lon=sx), statics.isel(lat=sy, lon=sx, missing_dims="ignore"), plan
        )
        for sy, sx in blocks
    ]
    results = dask.compute(*parts)
    served = np.zeros(shape, bool)
    gappy = False
    for (sy, sx), r in zip(blocks, results, strict=True):
        served[sy, sx] = r["served"]
        gappy = gappy or bool(r["gappy"].any())
    return served, gappy


def _cells_by_block(served: np.ndarray, blocks: list[tuple[slice, slice]]) -> list[np.ndarray]:
    """Flat grid indices of each block's served cells, row-major within the block."""
    nx = served.shape[1]
    out = []
    for sy, sx in blocks:
        by, bx = np.divmod(np.flatnonzero(served[sy, sx].ravel()), sx.stop - sx.start)
        out.append((by + sy.start) * nx + bx + sx.start)
    return out


def build_cube_store(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    splits: dict[str, tuple[str, str]],
    targets: Sequence[str] = ("spi_3", "ssmi_1"),
    leads: Sequence[int] = (1, 2, 3),
    require_val_drought: bool = True,
    drought_cell_share: float = 0.05,
    regional: Sequence[float] = (),
    pet: PetMethod = "auto",
    input_masks: Literal["auto", "on", "off"] = "auto",
    source: str = "<dataset>",
    *,
    block_bytes: int = BLOCK_BYTES,
    tile: tuple[int, int] | None = None,
    cells_per_chunk: int | None = None,
    chunk_bytes: int = CHUNK_BYTES,
    fit_tile: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Build the sample cube of ``ds`` block by block into a new Zarr store at ``path``.

    The arguments up to ``source`` are those of :func:`hydrology.dataset.build_cube`, and so
    is the result (bit for bit, cells in tile order). Scratch stores (the monthly inputs,
    the indices) live in ``<path>-scratch`` and are removed at the end, also on failure.

    Args:
        ds: Canonical dataset ``(time, lat, lon)``, lazily opened (dask or backend arrays:
            only one block's record is read at a time) or in memory; statics ``lsm``/``z``
            without ``time`` are read whole (one map each).
        path: The store (must not exist, or be an empty directory).
        splits: ``{"train"|"val"|"test": (first month, last month)}``.
        targets: Index names.
        leads: Leads in months.
        require_val_drought: Refuse a validation period without drought months.
        drought_cell_share: Share of served cells in drought that makes a drought month.
        regional: Regional-mean kernel widths [cells].
        pet: Where SPEI's PET comes from.
        input_masks: Observation-mask features: ``auto``, ``on``, ``off``.
        source: The file(s) ``ds`` came from, for messages.
        block_bytes: Memory budget of a block: the record is read in blocks of cells aligned
            with the input's chunks by as many calendar years as fit it, and the cube is
            fitted in blocks whose whole monthly record (inputs, indices, the analogue's
            members) fits it (:func:`choose_tile`).
        tile: Block shape ``(rows, cols)`` of both; default from ``block_bytes``.
        fit_tile: The fit blocks alone (the read blocks chosen from ``block_bytes``): what
            the dry run's probe gives a window of the grid, on which the fit blocks chosen
            from its own shape would differ from the whole grid's.
        cells_per_chunk: Cells per store chunk; default: about ``chunk_bytes`` of
            ``dynamic``.
        chunk_bytes: Target size of a store chunk of ``dynamic`` (a DDP rank reads whole
            chunks: smaller chunks shard finer).

    Returns:
        Build info: ``cells``, ``tile`` (the cube's blocks), ``blocks``, ``cells_per_chunk``,
        ``months``, ``read_tile`` and ``read_years`` (the blocks the record is read in).

    Raises:
        ConfigError: A target whose variable ``ds`` lacks.
        DataError: Bad splits, splits outside the record, no served cell, or a drought-free
            validation period (nothing is left at ``path`` but what the caller made).
    """
    sp = check_splits(splits)
    check_targets(ds, targets, pet, source)
    check_record(ds, sp, source)
    specs = [IndexSpec.parse(t) for t in targets]
    statics = ds[[v for v in STATICS if v in ds.data_vars and "time" not in ds[v].dims]].compute()
    time_vars = [str(v) for v in ds.data_vars if "time" in ds[v].dims]
    shape = (ds.sizes["lat"], ds.sizes["lon"])
    times = pd.DatetimeIndex(ds["time"].values)
    n_years = int(times.year[-1] - times.year[0] + 1)
    # Phase 1 reads blocks of cells aligned with the input's chunks by groups of calendar
    # years, as many as fit the budget.
    step_bytes = sum(ds[v].dtype.itemsize for v in time_vars)
    per_year = -(-times.size // n_years) * step_bytes
    if tile is None:
        read_tile, years = read_blocks(
            shape, times, step_bytes, block_bytes, _input_chunks(ds[time_vars])
        )
    else:
        read_tile = tile
        years = int(max(1, min(n_years, block_bytes // (per_year * tile[0] * tile[1]))))
    # Phases 2 and 3 hold a block's whole monthly record in float64: the inputs, the
    # indices, the analogue forecast's series and the cube's arrays (fit_bytes_per_cell).
    per_cell = fit_bytes_per_cell(n_years, len(time_vars), len(targets))
    tile = fit_tile or tile or choose_tile(shape, per_cell, block_bytes, read_tile)
    slab_steps = tuple(s.stop - s.start for s in year_slabs(times, years))
    # The scratch months are stored by as many years as a read block's months fit the
    # budget (fewer, larger chunks: each read costs a few milliseconds), a multiple of the
    # years read at once.
    month_bytes = 12 * 8 * (len(time_vars) + 1) * read_tile[0] * read_tile[1]
    store_years = years * max(1, min(n_years, block_bytes // month_bytes) // years)
    dyn = ds[time_vars].chunk({"time": slab_steps, "lat": read_tile[0], "lon": read_tile[1]})
    train = sp["train"]
    cal = (str(train[0].date()), str((train[1] + pd.offsets.MonthEnd(0)).date()))
    spei = any(s.kind == "spei" for s in specs)
    plan = _Plan(
        tuple(targets),
        tuple(int(k) for k in leads),
        train,
        cal,
        pet if spei else "pev",
        tuple(regional),
    )
    blocks = grid_blocks(shape, tile)
    log.info(
        "cube %s: %d x %d grid, read in blocks of %d x %d cells by %d years (%.0f MB each), "
        "%d blocks of %d x %d cells to fit",
        path,
        *shape,
        *read_tile,
        years,
        read_tile[0] * read_tile[1] * per_year * years / 1e6,
        len(blocks),
        *tile,
    )
    path = Path(path)
    existed = path.is_dir()
    if existed and any(path.iterdir()):
        raise FileExistsError(f"{path} is not empty: a cube store is built into a new directory")
    scratch = Path(f"{path}-scratch")
    shutil.rmtree(scratch, ignore_errors=True)
    stack = contextlib.ExitStack()
    try:
        # No linear fusion: a block task read by two stores (the cube and a scratch store)
        # would be fused into each store's graph under two keys and run twice.
        stack.enter_context(dask.config.set({"optimization.fuse.active": False}))
        monthly = _phase_months(
            dyn, plan, read_tile, years, scratch / "monthly.zarr", tile, store_years
        )
        served, gappy = _phase_masks(monthly, statics, plan, tile)
        info = _phase_cells(
            monthly,
            statics,
            served,
            gappy,
            plan,
            sp,
            tile,
            path,
            scratch,
            input_masks,
            drought_cell_share,
            source,
            cells_per_chunk or 0,
            chunk_bytes,
        )
        info |= {"read_tile": list(read_tile), "read_years": years}
        if require_val_drought:
            check_val_drought(dataset_to_cube(open_cube(path), positions=[]))
    except BaseException:
        _discard(path, existed)
        raise
    finally:
        stack.close()
        shutil.rmtree(scratch, ignore_errors=True)
    return info


def _discard(path: Path, existed: bool) -> None:
    """Remove what a failed build wrote at ``path`` (keep the directory the caller made)."""
    if not existed:
        shutil.rmtree(path, ignore_errors=True)
        return
    for child in path.iterdir() if path.is_dir() else ():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _phase_cells(
    monthly: xr.Dataset,
    statics: xr.Dataset,
    served: np.ndarray,
    gappy: bool,
    plan: _Plan,
    sp: dict[str, tuple[pd.Timestamp, pd.Timestamp]],
    tile: tuple[int, int],
    path: Path,
    scratch: Path,
    input_masks: str,
    drought_cell_share: float,
    source: str,
    cells_per_chunk: int,
    chunk_bytes: int,
) -> dict[str, Any]:
    """Phases 2 and 3: every cell array into the store at ``path`` (``cells_per_chunk``
    cells per chunk, or 0: about ``chunk_bytes`` of ``dynamic``)."""
    blocks = grid_blocks(served.shape, tile)
    by_block = _cells_by_block(served, blocks)
    cells = np.concatenate(by_block)
    if cells.size == 0:
        raise DataError(
            f"{source}: no land cells (lsm > 0.5 where given, and inputs observed in at least "
            f"{MIN_VALID_SHARE:.0%} of the training months)"
        )
    plan = replace(plan, masks=input_masks == "on" or (input_masks == "auto" and gappy))
    variables = input_vars(monthly)
    times = pd.DatetimeIndex(monthly["time"].values)
    # The orography's mean and spread over the served cells, in row-major order as build_cube.
    stub = statics.assign_coords(time=times)
    scaler = replace(
        Scaler.fit(stub, np.flatnonzero(served.ravel()), plan.train, variables=()),
        variables=variables,
    )
    static = static_features(statics, cells, scaler)
    nt, n_t, n_out = times.size, len(plan.targets), len(plan.targets) * len(plan.leads)
    n_spi = sum(t.startswith("spi_") for t in plan.targets)
    parts = [
        dask.delayed(_cells_block, pure=False)(monthly.isel(lat=sy, lon=sx), served[sy, sx], plan)
        if b.size or plan.regional
        else None
        for (sy, sx), b in zip(blocks, by_block, strict=True)
    ]
    meta = cube_meta(
        plan.targets,
        plan.leads,
        sp,
        variables,
        plan.regional,
        plan.masks,
        static_names(statics),
        monthly["wb"].attrs.get("pet_method", "pev") if "wb" in monthly else None,
        plan.cal,
        drought_cell_share,
        source,
    )
    n_feat = len(meta["dynamic_features"])
    layout: dict[str, tuple[tuple[int, ...], Any]] = {
        "obs": ((nt, n_t), np.float32),
        "target": ((nt, n_out), np.float32),
        "baseline": ((nt, n_out), np.float32),
        "pr": ((nt,), np.float32),
        "scaler_mean": ((12, len(variables)), np.float32),
        "scaler_std": ((12, len(variables)), np.float32),
        "spi_gamma": ((n_spi, 12, 3), np.float64),
        "spi_p0": ((n_spi, 12), np.float64),
    }
    if not plan.regional:
        layout["dynamic"] = ((nt, n_feat), np.float32)
    land = [(p, b.size) for p, b in zip(parts, by_block, strict=True) if b.size]
    data: dict[str, Any] = {
        name: da.concatenate([da.from_delayed(p[name], (n, *tail), dt) for p, n in land])
        for name, (tail, dt) in layout.items()
    }
    data["static"] = static
    data["valid"] = da.isfinite(data["target"]).any(axis=-1)
    counts = da.stack([da.from_delayed(p["drought"], (nt,), np.int64) for p, _ in land]).sum(0)
    share = (counts / cells.size).astype(np.float32)
    chunk = cells_per_chunk or chunk_cells(nt, n_feat, chunk_bytes)
    lat, lon = monthly["lat"].values, monthly["lon"].values
    out = assemble(
        data,
        share,
        cells=cells,
        times=times,
        lat=lat,
        lon=lon,
        meta=meta,
        scaler=scaler,
        tile=tile,
    )
    writes = [write_cube(out, path, chunk, compute=False)]
    if plan.regional:
        n_cols = -(-served.shape[1] // tile[1])
        idx = {
            t: da.block(
                _grid_of_blocks(
                    [
                        da.from_delayed(
                            p["indices"],
                            (n_t, nt, sy.stop - sy.start, sx.stop - sx.start),
                            np.float64,
                        )[j]
                        for p, (sy, sx) in zip(parts, blocks, strict=True)
                    ],
                    blocks,
                    n_cols,
                )
            )
            for j, t in enumerate(plan.targets)
        }
        index_ds = xr.Dataset(
            {t: (("time", "lat", "lon"), a) for t, a in idx.items()},
            coords={"time": times.values, "lat": lat, "lon": lon},
        )
        writes.append(
            index_ds.to_zarr(
                scratch / "indices.zarr",
                mode="w-",
                compute=False,
                consolidated=False,
                encoding={t: {"chunks": (nt, *tile)} for t in plan.targets},
            )
        )
    dask.compute(*writes, optimize_graph=False)
    if plan.regional:
        _phase_dynamic(monthly, served, plan, tile, path, scratch, by_block, n_feat, chunk)
    return {
        "cells": int(cells.size),
        "tile": list(tile),
        "blocks": len(blocks),
        "cells_per_chunk": int(min(chunk, cells.size)),
        "months": int(nt),
    }


def _phase_dynamic(
    monthly: xr.Dataset,
    served: np.ndarray,
    plan: _Plan,
    tile: tuple[int, int],
    path: Path,
    scratch: Path,
    by_block: list[np.ndarray],
    n_feat: int,
    chunk: int,
) -> None:
    """Phase 3 (regional inputs): ``dynamic`` from each block and its halo's indices."""
    ny, nx = served.shape
    store = xr.open_zarr(path, consolidated=False)
    h = halo_cells(plan.regional)
    offsets = np.cumsum([0, *(b.size for b in by_block)])
    nt = monthly.sizes["time"]
    pieces = []
    for i, ((sy, sx), b) in enumerate(zip(grid_blocks(served.shape, tile), by_block, strict=True)):
        if b.size == 0:
            continue
        wy = slice(max(sy.start - h, 0), min(sy.stop + h, ny))
        wx = slice(max(sx.start - h, 0), min(sx.stop + h, nx))
        inner = (
            slice(sy.start - wy.start, sy.stop - wy.start),
            slice(sx.start - wx.start, sx.stop - wx.start),
        )
        cs = slice(int(offsets[i]), int(offsets[i + 1]))
        d = dask.delayed(_dynamic_block, pure=False)(
            monthly.isel(lat=sy, lon=sx),
            served[sy, sx],
            scratch / "indices.zarr",
            (wy, wx),
            served[wy, wx],
            inner,
            store["scaler_mean"].isel(cell=cs).data,
            store["scaler_std"].isel(cell=cs).data,
            plan,
        )
        pieces.append(da.from_delayed(d, (b.size, nt, n_feat), np.float32))
    dyn = xr.Dataset(
        {"dynamic": (("cell", "time", "feature"), da.concatenate(pieces))},
        attrs=store.attrs,  # (an append replaces the store's attributes with these)
    )
    write_cube(dyn, path, chunk, mode="a")
