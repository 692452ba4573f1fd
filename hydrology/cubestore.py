"""The drought sample cube as an xarray Dataset in Zarr, chunked by cell.

One store holds everything :class:`hydrology.dataset.DroughtCube` holds, laid out so that a
process reads only the cells it needs (a DDP rank its shard, an evaluation its batch):

===================  =====================================  =========  ======================
variable             dims                                   dtype      units
===================  =====================================  =========  ======================
``dynamic``          ``(cell, time, feature)``              float32    z-scores, indices, 1/0
``static``           ``(cell, static_feature)``             float32    standardised
``target``           ``(cell, time, output)``               float32    index at ``t + lead``
``baseline``         ``(cell, time, output)``               float32    ESP issued at ``t``
``obs``              ``(cell, time, index)``                float32    clipped index at ``t``
``pr``               ``(cell, time)``                       float32    mm/d
``scaler_mean/std``  ``(cell, month, variable)``            float32    input units
``spi_gamma``        ``(cell, spi, month, dparams)``        float64    gamma a, loc, scale
``spi_p0``           ``(cell, spi, month)``                 float64    probability of zero
``valid``            ``(cell, time)``                       bool       a target is known
``drought_share``    ``(time,)``                            float32    share of cells
===================  =====================================  =========  ======================

Coordinates: ``lat(cell)`` and ``lon(cell)`` (degrees) and ``cell_index(cell)`` (flat index
into the ``grid_lat x grid_lon`` grid, row-major); ``grid_lat``/``grid_lon`` are the full
axes. :func:`open_cube` turns ``lat``/``lon`` into a ``cell`` MultiIndex, so that
``ds.unstack("cell")`` gives the ``(lat, lon)`` grid of the served cells and :func:`to_grid`
the whole grid with NaN elsewhere (it replaces :meth:`DroughtCube.grid`). Attributes: the
cube's ``meta`` (JSON), the scaler's scalars, the tiling and :data:`FORMAT`.

Cells are in **tile order**: the grid is cut into ``tile = (rows, cols)`` blocks, in
row-major order, and the served cells of a block follow each other, row-major within it
(:func:`tile_order`). A chunk of cells is then a compact patch of the map, and an
out-of-core build (:mod:`hydrology.outofcore`) appends block after block. A tile covering
the whole grid gives the plain row-major order of :func:`hydrology.dataset.build_cube`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import xarray as xr

from hydrology.dataset import DroughtCube
from hydrology.features import Scaler
from twins.errors import DataError

__all__ = [
    "CELL_VARS",
    "CHUNK_BYTES",
    "FORMAT",
    "chunk_cells",
    "cube_to_dataset",
    "dataset_to_cube",
    "load_cells",
    "open_cube",
    "tile_order",
    "to_grid",
    "write_cube",
]

log = logging.getLogger(__name__)

#: Format tag written to the store's attributes (and checked when opening).
FORMAT = "twins.drought-cube/1"

#: Variables with a ``cell`` dimension (chunked by cell), in store order.
CELL_VARS: tuple[str, ...] = (
    "dynamic",
    "static",
    "target",
    "baseline",
    "obs",
    "pr",
    "scaler_mean",
    "scaler_std",
    "spi_gamma",
    "spi_p0",
    "valid",
)

#: Target size of one chunk of ``dynamic`` (bytes, uncompressed).
CHUNK_BYTES = 16 * 2**20


def tile_order(cells: np.ndarray, shape: tuple[int, int], tile: tuple[int, int]) -> np.ndarray:
    """The permutation that puts flat cell indices into tile order.

    Args:
        cells: ``(cell,)`` flat indices into a ``shape`` grid (row-major), any order.
        shape: Grid shape ``(lat, lon)``.
        tile: Block shape ``(rows, cols)``.

    Returns:
        ``(cell,)`` int64 positions into ``cells``: blocks in row-major order, cells
        row-major within each block.
    """
    iy, ix = np.divmod(np.asarray(cells, np.int64), shape[1])
    n_tx = -(-shape[1] // tile[1])
    block = (iy // tile[0]) * n_tx + ix // tile[1]
    return np.lexsort((np.asarray(cells, np.int64), block))


def chunk_cells(n_time: int, n_feature: int, chunk_bytes: int = CHUNK_BYTES) -> int:
    """Cells per chunk so that a chunk of ``dynamic`` is about ``chunk_bytes``.

    Args:
        n_time: Months in the cube.
        n_feature: Dynamic features.
        chunk_bytes: Target chunk size (bytes, uncompressed float32).

    Returns:
        Cells per chunk, at least 1.
    """
    return max(1, int(chunk_bytes // max(4 * n_time * n_feature, 1)))


def _text(names: Sequence[str]) -> np.ndarray:
    """Names as an object array (Zarr's variable-length strings; fixed-width ones are not
    in the Zarr v3 specification)."""
    return np.array([str(n) for n in names], dtype=object)


def _spi_targets(meta: dict[str, Any]) -> list[str]:
    return [t for t in meta["targets"] if t.startswith("spi_")]


def cube_to_dataset(cube: DroughtCube, tile: tuple[int, int] | None = None) -> xr.Dataset:
    """The in-memory cube as the store's Dataset (numpy-backed), cells in tile order.

    Args:
        cube: The cube (:func:`hydrology.dataset.build_cube`).
        tile: Block shape ``(rows, cols)`` of the cell order; None: the whole grid (the
            cube's own row-major order).

    Returns:
        The Dataset :func:`write_cube` writes.
    """
    tile = tile or cube.shape
    order = tile_order(cube.cells, cube.shape, tile)
    spi = _spi_targets(cube.meta)
    n = cube.cells.size
    gamma = np.stack([cube.spi_params[t]["gamma"] for t in spi], 0) if spi else None
    p0 = np.stack([cube.spi_params[t]["p0"] for t in spi], 0) if spi else None
    data: dict[str, Any] = {
        "dynamic": cube.dynamic[order],
        "static": cube.static[order],
        "target": cube.target[order],
        "baseline": cube.baseline[order],
        "obs": cube.obs[order],
        "pr": cube.pr[order],
        "scaler_mean": cube.scaler.mean.transpose(2, 0, 1)[order],
        "scaler_std": cube.scaler.std.transpose(2, 0, 1)[order],
        "spi_gamma": (
            gamma.transpose(3, 0, 1, 2)[order] if gamma is not None else np.zeros((n, 0, 12, 3))
        ),
        "spi_p0": p0.transpose(2, 0, 1)[order] if p0 is not None else np.zeros((n, 0, 12)),
        "valid": np.isfinite(cube.target[order]).any(axis=-1),
    }
    return assemble(
        data,
        cube.drought_share,
        cells=cube.cells[order],
        times=cube.times,
        lat=cube.lat,
        lon=cube.lon,
        meta=cube.meta,
        scaler=cube.scaler,
        tile=tile,
    )


def assemble(
    data: dict[str, Any],
    drought_share: Any,
    *,
    cells: np.ndarray,
    times: pd.DatetimeIndex,
    lat: np.ndarray,
    lon: np.ndarray,
    meta: dict[str, Any],
    scaler: Scaler,
    tile: tuple[int, int],
) -> xr.Dataset:
    """The store's Dataset from its arrays (numpy or dask), cells already in tile order.

    Args:
        data: The :data:`CELL_VARS` arrays, cell first, shaped as the module table says
            (those absent are left out: an out-of-core build adds ``dynamic`` afterwards).
        drought_share: ``(time,)`` float32.
        cells: ``(cell,)`` flat indices into the ``(lat, lon)`` grid, in tile order.
        times: Month starts, ``(time,)``.
        lat: Grid latitudes, ``(grid_lat,)``.
        lon: Grid longitudes, ``(grid_lon,)``.
        meta: The cube's meta (targets, leads, splits, feature names, ...).
        scaler: The scaler; its per-cell statistics are in ``data``, its scalars go to attrs.
        tile: Block shape of the cell order.

    Returns:
        The Dataset.
    """
    iy, ix = np.divmod(np.asarray(cells, np.int64), lon.size)
    dims = {
        "dynamic": ("cell", "time", "feature"),
        "static": ("cell", "static_feature"),
        "target": ("cell", "time", "output"),
        "baseline": ("cell", "time", "output"),
        "obs": ("cell", "time", "index"),
        "pr": ("cell", "time"),
        "scaler_mean": ("cell", "month", "variable"),
        "scaler_std": ("cell", "month", "variable"),
        "spi_gamma": ("cell", "spi", "month", "dparams"),
        "spi_p0": ("cell", "spi", "month"),
        "valid": ("cell", "time"),
    }
    outputs = [f"{t}@{k}" for t in meta["targets"] for k in meta["leads"]]
    coords = {
        "lat": ("cell", np.asarray(lat)[iy], {"units": "degrees_north"}),
        "lon": ("cell", np.asarray(lon)[ix], {"units": "degrees_east"}),
        "cell_index": ("cell", np.asarray(cells, np.int64)),
        "grid_lat": ("grid_lat", np.asarray(lat), {"units": "degrees_north"}),
        "grid_lon": ("grid_lon", np.asarray(lon), {"units": "degrees_east"}),
        "time": ("time", pd.DatetimeIndex(times).values.astype("datetime64[ns]")),
        "feature": ("feature", _text(list(meta["dynamic_features"]))),
        "static_feature": ("static_feature", _text(list(meta["static_features"]))),
        "output": ("output", _text(outputs)),
        "index": ("index", _text(list(meta["targets"]))),
        "month": ("month", np.arange(1, 13)),
        "variable": ("variable", _text(list(scaler.variables))),
        "spi": ("spi", _text(_spi_targets(meta))),
        "dparams": ("dparams", _text(["a", "loc", "scale"])),
    }
    variables = {name: (dims[name], data[name]) for name in CELL_VARS if name in data}
    variables["drought_share"] = (("time",), drought_share)
    attrs = {
        "format": FORMAT,
        "meta": json.dumps(meta),
        "scaler_z_mean": float(scaler.z_mean),
        "scaler_z_std": float(scaler.z_std),
        "scaler_clip": float(scaler.clip),
        "tile": [int(tile[0]), int(tile[1])],
    }
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def write_cube(
    ds: xr.Dataset,
    path: str | os.PathLike[str],
    cells_per_chunk: int,
    mode: Literal["w-", "a"] = "w-",
    compute: bool = True,
) -> Any:
    """Write the store's Dataset to Zarr, every cell variable chunked by cell.

    Dask-backed variables are computed chunk by chunk by the active dask scheduler (so a
    :func:`twins.compute.cluster.dask_client` block writes on its cluster).

    Args:
        ds: :func:`cube_to_dataset` or :func:`assemble` output (or, with ``mode="a"``, more
            cell variables of the same cells).
        path: The store: a new one (``w-``; the directory may exist empty) or one to add
            variables to (``a``).
        cells_per_chunk: Cells per chunk.
        mode: ``w-`` creates, ``a`` adds variables.
        compute: False returns the dask delayed write instead of running it.

    Returns:
        None, or the delayed write.
    """
    n = ds.sizes["cell"]
    c = max(1, min(int(cells_per_chunk), n))
    encoding: dict[str, dict[str, Any]] = {}
    out = ds.copy()
    for name in CELL_VARS:
        if name not in ds:
            continue
        chunks = (c, *ds[name].shape[1:])
        out[name] = ds[name].chunk(dict(zip(ds[name].dims, chunks, strict=True)))
        encoding[name] = {"chunks": chunks}
    if "drought_share" in ds:
        out["drought_share"] = ds["drought_share"].chunk(-1)
    delayed = out.to_zarr(
        Path(path), mode=mode, encoding=encoding, consolidated=False, compute=compute
    )
    log.info("cube %s: %s %d cells in chunks of %d", path, "wrote" if compute else "writing", n, c)
    return None if compute else delayed


def open_cube(path: str | os.PathLike[str] | Any) -> xr.Dataset:
    """Open a cube store lazily (dask arrays, one chunk per store chunk).

    Args:
        path: The store written by :func:`write_cube` (its directory, or a zarr ``Store``
            over it, e.g. one that counts reads).

    Returns:
        The Dataset, ``cell`` indexed by a ``(lat, lon)`` MultiIndex (``.unstack("cell")``
        gives the grid); ``attrs["meta"]`` decoded to a dict.

    Raises:
        DataError: ``path`` is not a cube store of :data:`FORMAT`.
    """
    if isinstance(path, str | os.PathLike):
        path = Path(path)
    try:
        ds = xr.open_zarr(path, consolidated=False, chunks={})
    except (OSError, ValueError, KeyError) as exc:
        why = " ".join(str(exc).split())[:200]
        raise DataError(f"{path}: not a readable cube store ({why})") from None
    if ds.attrs.get("format") != FORMAT:
        raise DataError(
            f"{path}: attribute 'format' is {ds.attrs.get('format')!r}, expected {FORMAT!r}",
            hint="rebuild the cube (remove the store)",
        )
    ds.attrs["meta"] = json.loads(ds.attrs["meta"])
    return ds.set_index(cell=["lat", "lon"])


def to_grid(da: xr.DataArray | xr.Dataset, ds: xr.Dataset | None = None) -> Any:
    """Unstack ``cell`` onto the whole ``(lat, lon)`` grid, NaN where no cell is served.

    Args:
        da: Variable(s) of :func:`open_cube` (or a selection keeping ``cell``).
        ds: The opened store, for the grid axes when ``da`` lacks them.

    Returns:
        The same with ``cell`` replaced by ``(lat, lon)`` dims spanning ``grid_lat`` and
        ``grid_lon`` (lazy when ``da`` is).
    """
    axes = ds if ds is not None else da
    lat, lon = axes["grid_lat"].values, axes["grid_lon"].values
    out = da.drop_vars(["grid_lat", "grid_lon", "cell_index"], errors="ignore")
    return out.unstack("cell").reindex(lat=lat, lon=lon)


def as_slice(positions: Sequence[int] | np.ndarray) -> slice | np.ndarray:
    """Consecutive positions as a slice (dask then reads whole chunks, no gather), else
    the positions as an int64 array."""
    pos = np.asarray(positions, np.int64)
    if pos.size and np.array_equal(pos, np.arange(pos[0], pos[0] + pos.size)):
        return slice(int(pos[0]), int(pos[0]) + pos.size)
    return pos


def load_cells(
    ds: xr.Dataset,
    names: Sequence[str],
    positions: Sequence[int] | np.ndarray | None = None,
    time: slice | None = None,
) -> dict[str, np.ndarray]:
    """Read variables of some cells (and months) chunk by chunk into arrays made once.

    ``ds[names].isel(...).compute()`` would hold every chunk and their concatenation at
    once (twice the result); here each store chunk is read and copied into place, so the
    peak is the result plus one chunk.

    Args:
        ds: :func:`open_cube` output (or a selection of it along ``time``).
        names: Variables (or coordinates) to read; those with a ``cell`` dimension have it
            first.
        positions: Positions along ``cell`` (sorted); None reads every cell.
        time: Months to read of variables with a ``time`` dimension; None reads all.

    Returns:
        ``{name: array}``, ``cell`` first (``(len(positions), ...)``) where the variable has
        one.
    """
    n = ds.sizes["cell"]
    pos = np.arange(n) if positions is None else np.asarray(positions, np.int64)
    out: dict[str, np.ndarray] = {}
    for name in names:
        var = ds[name].variable
        if time is not None and "time" in var.dims:
            var = var.isel(time=time)
        if "cell" not in var.dims:
            out[name] = np.asarray(var.values)
            continue
        chunks = var.chunks[0] if var.chunks is not None else (n,)
        which = np.searchsorted(np.cumsum(chunks), pos, side="right")
        arr = np.empty((pos.size, *var.shape[1:]), var.dtype)
        for part in np.split(np.arange(pos.size), np.flatnonzero(np.diff(which)) + 1):
            if part.size:
                arr[part[0] : part[-1] + 1] = var.isel(cell=as_slice(pos[part])).values
        out[name] = arr
    return out


def dataset_to_cube(
    ds: xr.Dataset,
    positions: Sequence[int] | np.ndarray | None = None,
    time: slice | None = None,
    inputs: bool = True,
) -> DroughtCube:
    """Load (some cells and months of) a cube store into an in-memory :class:`DroughtCube`.

    Args:
        ds: :func:`open_cube` output.
        positions: Positions along ``cell`` to load (sorted); None loads every cell.
            Only the chunks holding them are read, one at a time (:func:`load_cells`).
        time: Months to load (a slice of ``time``); None loads the whole record. The
            cube's ``times`` are those months; ``meta`` keeps the splits' dates, so a split
            inside the window has the same samples (offset by the window's start).
        inputs: False loads only what the verification of forecasts made elsewhere reads
            (``obs``, ``baseline``, ``static``, ``drought_share``): the other cell arrays
            are empty (size 0 past ``cell``), the scaler's statistics too and
            ``spi_params`` has no entry.

    Returns:
        The cube, its cells in the store's order (``cells`` holds their flat indices).
    """
    meta = ds.attrs["meta"]
    meta = json.loads(meta) if isinstance(meta, str) else dict(meta)
    kept = CELL_VARS if inputs else ("obs", "baseline", "static")
    names = [*(v for v in kept if v != "valid"), "drought_share", "cell_index"]
    loaded = load_cells(ds, names, positions, time)
    times = ds["time"].values if time is None else ds["time"].values[time]
    n_cells = loaded["cell_index"].size
    for name in set(CELL_VARS) - set(kept) - {"valid"}:
        shape = (n_cells, *(0 for _ in ds[name].dims[1:]))
        loaded[name] = np.empty(shape, ds[name].dtype)
    spi = [str(s) for s in ds["spi"].values] if inputs else []
    spi_params = {
        t: {
            "gamma": np.ascontiguousarray(loaded["spi_gamma"][:, j].transpose(1, 2, 0)),
            "p0": np.ascontiguousarray(loaded["spi_p0"][:, j].T),
        }
        for j, t in enumerate(spi)
    }
    scaler = Scaler(
        np.ascontiguousarray(loaded["scaler_mean"].transpose(1, 2, 0)),
        np.ascontiguousarray(loaded["scaler_std"].transpose(1, 2, 0)),
        float(ds.attrs["scaler_z_mean"]),
        float(ds.attrs["scaler_z_std"]),
        float(ds.attrs["scaler_clip"]),
        tuple(str(v) for v in ds["variable"].values) if inputs else (),
    )
    return DroughtCube(
        times=pd.DatetimeIndex(times),
        lat=ds["grid_lat"].values,
        lon=ds["grid_lon"].values,
        cells=loaded["cell_index"].astype(np.int64),
        dynamic=loaded["dynamic"],
        static=loaded["static"],
        baseline=loaded["baseline"],
        target=loaded["target"],
        obs=loaded["obs"],
        pr=loaded["pr"],
        scaler=scaler,
        spi_params=spi_params,
        drought_share=loaded["drought_share"],
        meta=meta,
    )
