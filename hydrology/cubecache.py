"""The training task's cube store: built once per data and configuration, opened by everyone.

:func:`cube_store` returns the Zarr cube (:mod:`hydrology.cubestore`) of a key under a cache
root, building it out of core (:func:`hydrology.outofcore.build_cube_store`) on the
configured dask engine (:func:`twins.compute.cluster.dask_client`) when no one has, through
:func:`twins.compute.buildonce.build_once`: the DDP ranks of a run, the trials of a tune
study and later runs with the same data and configuration share one build; the others wait
for its completion marker and open it; a build killed half-way leaves nothing that looks
complete, and the next caller builds again.

:func:`open_training_lazy` opens the configured files without reading them: checked like
:func:`hydrology.ingest.read_training` (names, units, time axis, the plausibility gates, which
read every value once, chunk by chunk), chunked in space by the block the build will use,
so that a block's whole record is read by one task and no chunk is shared by two blocks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask
import pandas as pd
import xarray as xr

from hydrology.blocks import read_blocks, year_slabs
from hydrology.gates import Gates, check_gates
from hydrology.ingest import TRAINING_REQUIRED, canonical_units, standard_months
from hydrology.io import open_grids, validate
from hydrology.outofcore import build_cube_store
from hydrology.readcache import BoundedReadCache, bound_read_cache
from hydrology.timeaxis import calendar, is_standard
from twins.compute.buildonce import Product, build_once
from twins.compute.config import ComputeConfig
from twins.errors import ConfigError, DataError
from twins.launch.models import SlurmConfig
from twins.memory import trim_freed

__all__ = [
    "build_engine",
    "cube_store",
    "gate_record",
    "input_nbytes",
    "open_lazy",
    "open_training_lazy",
]

log = logging.getLogger(__name__)


def input_nbytes(ds: xr.Dataset) -> int:
    """Bytes of the time-varying variables of ``ds`` (what the build reads), unread."""
    return int(sum(ds[v].nbytes for v in ds.data_vars if "time" in ds[v].dims))


def _per_cell(ds: xr.Dataset) -> int:
    """Bytes of one cell's whole record, every time-varying variable."""
    n = ds.sizes["lat"] * ds.sizes["lon"]
    return max(1, input_nbytes(ds) // max(n, 1))


def gate_record(ds: xr.Dataset, label: str, gates: Gates, block_bytes: int) -> None:
    """:func:`hydrology.gates.check_gates` by groups of calendar years, in bounded memory.

    The gates keep each variable's missing share per month and cell, ``(month, lat, lon)``
    in float64, until they know the land cells: over a whole record that grows with it
    (30 years of 200 x 200 cells: 115 MB a variable). With a land-sea mask (``lsm``, land
    where above 0.5, checked first and alone) the land is known beforehand, so the
    time-varying variables are checked by groups of whole calendar years (every step of a
    month in one group: the shares per month are the whole record's) whose shares fit
    ``block_bytes``; without one, land is where some month has a value, which needs the
    whole record, checked at once.

    Args:
        ds: The canonical dataset as opened, dask-backed ``(time, lat, lon)``.
        label: The file(s), for messages.
        gates: The bounds.
        block_bytes: Memory budget of a group's shares.

    Raises:
        DataError: As :func:`hydrology.gates.check_gates` (the first group holding an
            offending value names that value).
    """
    timed = [str(v) for v in ds.data_vars if "time" in ds[v].dims]
    if "lsm" not in ds.data_vars or "time" in ds["lsm"].dims or not timed:
        check_gates(ds, label, gates)
        return
    statics = [str(v) for v in ds.data_vars if "time" not in ds[v].dims]
    check_gates(ds, label, gates, variables=statics)
    cells = ds.sizes["lat"] * ds.sizes["lon"] if "lat" in ds.dims else ds["lsm"].size
    per_year = 12 * 8 * cells * (len(timed) + 1)  # the shares and one temporary
    years = max(1, block_bytes // per_year)
    for steps in year_slabs(ds.indexes["time"], years):
        check_gates(ds.isel(time=steps), label, gates, variables=timed)


def open_lazy(
    paths: Sequence[str], block_bytes: int
) -> tuple[xr.Dataset, str, tuple[int, int] | None, tuple[int, int], int]:
    """The training files opened lazily in the blocks the build reads, not gated yet.

    Args:
        paths: NetCDF/Zarr paths or glob patterns (``task.params.path``).
        block_bytes: Memory budget of one read (:func:`hydrology.blocks.read_blocks`).

    Returns:
        ``(ds, label, align, tile, years)``: the dataset (dask-backed: chunks of the read
        blocks of cells, aligned with the files' storage chunks, by the files' storage chunks
        in time, one file's steps at most), the files' label for messages, the storage
        chunks ``(lat, lon)`` of ``tp`` (None if not chunked), the read block and the
        calendar years read at once.

    Raises:
        DataError: A missing or unreadable file, no ``tp``, or no ``(lat, lon)`` grid.
    """
    bound_read_cache()  # each chunk is read once: netCDF-C's 64 MiB per variable only holds memory
    label = str(paths[0]) if len(paths) == 1 else f"{paths[0]} ... {paths[-1]}"
    target = list(paths) if len(paths) > 1 else paths[0]
    probe = open_grids(target, chunks={}, gates=None, check_values=False)
    validate(probe, label, TRAINING_REQUIRED, check_values=False)
    if "lat" not in probe.dims or "lon" not in probe.dims:
        raise DataError(
            f"{label}: dims {tuple(probe.dims)}: the cube store needs a (lat, lon) grid",
            hint="regrid station records, or set task.params.store: npz",
        )
    # The storage chunks of precipitation (statics may be stored otherwise).
    storage = probe["tp"].chunksizes
    align = (storage["lat"][0], storage["lon"][0]) if "lat" in storage else None
    shape = (probe.sizes["lat"], probe.sizes["lon"])
    step_bytes = sum(probe[v].dtype.itemsize for v in probe.data_vars if "time" in probe[v].dims)
    times = pd.DatetimeIndex(probe["time"].values) if is_standard(probe) else pd.DatetimeIndex([])
    tile, years = read_blocks(shape, times, step_bytes, block_bytes, align)
    chunks = {"lat": tile[0], "lon": tile[1]}
    if len(paths) == 1:
        chunks["time"] = int(storage["time"][0]) if "time" in storage else -1
    with warnings.catch_warnings():
        # A block smaller than a storage chunk reads its part of it: by design, not a bug.
        warnings.filterwarnings("ignore", "The specified chunks separate", UserWarning)
        ds = open_grids(target, chunks=chunks, gates=None, check_values=False)
    return ds, label, align, tile, years


def open_training_lazy(paths: Sequence[str], gates: Gates, block_bytes: int) -> xr.Dataset:
    """The training files, checked and gated, opened lazily in the blocks the build reads.

    Args:
        paths: NetCDF/Zarr paths or glob patterns (``task.params.path``).
        gates: Plausibility bounds (``task.params.gates``).
        block_bytes: Memory budget of one read (:func:`hydrology.blocks.read_blocks`).

    Returns:
        The canonical dataset, dask-backed: chunks of the build's read blocks of cells
        (aligned with the files' storage chunks) by the files' storage chunks in time (one
        file's steps at most).

    Raises:
        DataError: A missing or unreadable file, no ``tp``, invalid content, or a value
            outside the gates (one line naming the file and the variable).
    """
    ds, label, _, tile, years = open_lazy(paths, block_bytes)
    gate_record(ds, label, gates, block_bytes)  # every value once, chunk by chunk
    trim_freed()  # the chunks the gates read, freed by dask's threads, left in the arenas
    ds = canonical_units(ds)
    if not is_standard(ds):
        cal = calendar(ds.indexes["time"])
        log.info("%s: %s calendar: monthly means at month starts", label, cal)
        ds = standard_months(ds)
    log.info(
        "%s: %d x %d cells, %d steps, %.1f GB, read in blocks of %d x %d cells by %d years",
        label,
        ds.sizes["lat"],
        ds.sizes["lon"],
        ds.sizes["time"],
        input_nbytes(ds) / 1e9,
        *tile,
        years,
    )
    return ds


@contextlib.contextmanager
def build_engine(compute: ComputeConfig, nbytes: int, slurm: SlurmConfig | None) -> Iterator[str]:
    """Run the block's dask work on the engine of ``compute`` (yields the mode).

    The threaded scheduler, chosen or because the input is below ``min_cluster_bytes`` (as
    :func:`twins.compute.cluster.choose_mode` decides), is set here without importing
    :mod:`twins.compute.cluster`: that module imports dask_jobqueue, whose import installs a
    SIGINT handler, which raises outside the main thread (a Ray Tune trial building the
    cube) and replaces the handler of the importing process. Clusters go through
    :func:`twins.compute.cluster.dask_client`, imported when one is needed, from the main
    thread only: in another thread ``local`` falls back to the threaded scheduler (a trial
    has its own CPUs) and ``slurm``/``address`` are refused (before anything is built).
    A cluster's workers open the files with a bounded chunk cache
    (:class:`hydrology.readcache.BoundedReadCache`), as this process does (:func:`open_lazy`).

    Raises:
        ConfigError: ``address``, or ``slurm`` for a large input, outside the main thread.
    """
    small = nbytes < compute.min_cluster_bytes
    side = threading.current_thread() is not threading.main_thread()
    if side and (compute.mode == "address" or (compute.mode == "slurm" and not small)):
        raise ConfigError(
            f"compute.mode {compute.mode!r}: the cube's dask cluster cannot be reached from a "
            f"thread other than the main one (here {threading.current_thread().name!r}, e.g. "
            "a Ray Tune trial): dask_jobqueue's import sets a signal handler",
            hint="build the cube first from the command line (the trials then open it), or "
            "set compute.mode local or threads",
        )
    if side and compute.mode == "local" and not small:
        log.warning(
            "dask: no LocalCluster from thread %r (a Ray Tune trial; dask_jobqueue's import "
            "sets a signal handler): threaded scheduler in this process",
            threading.current_thread().name,
        )
    if compute.mode == "threads" or (compute.mode in ("local", "slurm") and small) or side:
        threads = compute.workers * compute.threads_per_worker if compute.workers else None
        log.info("dask: threaded scheduler in this process (input %.1f MB)", nbytes / 1e6)
        with dask.config.set(scheduler="threads", num_workers=threads):
            yield "threads"
        return
    from twins.compute.cluster import dask_client  # (see above: only when a cluster runs)

    with dask_client(compute, input_bytes=nbytes, slurm=slurm) as session:
        if session.client is not None:
            session.client.register_plugin(BoundedReadCache())
        yield session.mode


def cube_store(
    root: str | os.PathLike[str],
    key: str,
    dataset: Callable[[], xr.Dataset],
    cube_kwargs: Mapping[str, Any],
    compute: ComputeConfig,
    slurm: SlurmConfig | None = None,
    timeout_s: float = 3600.0,
) -> Product:
    """The complete cube store of ``key`` under ``root``, built here if no one has.

    Args:
        root: The cache root (shared by the processes that should share the cube; on a
            cluster a shared file system with ``flock``, see :mod:`twins.compute.buildonce`).
        key: The content key (``cube-<hash of data and configuration>``).
        dataset: Opens the input (lazily: :func:`open_training_lazy`); called only when
            building.
        cube_kwargs: Keyword arguments of :func:`hydrology.outofcore.build_cube_store`
            (splits, targets, leads, ...).
        compute: Where dask runs the build (``compute:`` of the run config).
        slurm: ``launch.slurm`` of the run config, for ``compute.mode: slurm``.
        timeout_s: How long to wait for another process's build.

    Returns:
        The product; open it with :func:`hydrology.cubestore.open_cube`.

    Raises:
        BuildWaitError: Waiting for another process's build timed out.
        DataError, ConfigError: The build refused the data or the configuration (nothing
            is published; the next caller tries again).
    """

    def build(tmp: Path) -> dict[str, Any]:
        ds = dataset()
        nbytes = input_nbytes(ds)
        with build_engine(compute, nbytes, slurm) as mode:
            info = build_cube_store(ds, tmp, **dict(cube_kwargs))
        return info | {"dask": mode}

    product = build_once(root, key, build, timeout_s=timeout_s)
    log.info(
        "cube store %s (%s)",
        product.path,
        "built here" if product.built else f"built by pid {product.record.get('pid')}",
    )
    return product
