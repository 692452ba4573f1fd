"""Project the out-of-core cube build of a grid from a probe on a few of its blocks.

:func:`project_cube_build` measures :func:`hydrology.outofcore.build_cube_store` (and the
plausibility gates :func:`hydrology.cubecache.open_training_lazy` runs first) on a
rectangle of whole blocks of the configured grid over the **whole record**, on the dask
engine the real build will use, and extrapolates:

- **Memory** is bounded by the blocks, not by the grid or the record
  (:mod:`hydrology.outofcore`): the probe reads and fits blocks of the same shape as the
  real build, at least as many at once as the engine has threads, so the peak RSS of the
  probe's process tree (this process and its dask workers, sampled with psutil) is the
  projected peak.
- **Time** scales, phase by phase, with the cells the phase works on, since the probe
  keeps the whole record (the analogue baseline's cost grows with the square of the
  years, so a probe over fewer years would not extrapolate): the gates and the monthly
  aggregation read every cell of the record (sea included), so they scale with the grid's
  cells over the probe's; the fits, features and the store's writes work on the served
  (land) cells, so they scale with the grid's land cells over the probe's. Opening the
  files and starting the engine happen once and are not scaled. The two build phases are
  told apart by the moment the cube store's metadata appears on disk (the build writes it
  when the fits start), so the split needs no scheduler-specific hook.

The probe's window is the rectangle of whole blocks, at least one block of the read and
one of the fit tile on each side and at least as many fit blocks as engine threads, whose
land share is closest to the grid's (:func:`plan_probe`). The build chooses its blocks from
the grid's shape, so the window is one on which it chooses the real build's blocks; where
only a large share of a grid of few blocks would do, the probe gives the build the real fit
blocks (``fit_tile=``) and the build reads the window in the real read blocks (a window
of whole read blocks, aligned with the files' chunks, gets the grid's read tile). The
blocks the probe ran are checked against the plan (a warning says when they differ).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import xarray as xr

from hydrology.blocks import BLOCK_BYTES, choose_tile, fit_bytes_per_cell, read_blocks
from hydrology.cubecache import build_engine, input_nbytes, open_lazy
from hydrology.gates import Gates, check_gates
from hydrology.indices import IndexSpec
from hydrology.ingest import canonical_units, standard_months
from hydrology.outofcore import build_cube_store
from hydrology.timeaxis import is_standard
from twins.compute.config import ComputeConfig
from twins.launch.models import SlurmConfig
from twins.memory import trim_freed
from twins.task import PreprocessProjection

__all__ = ["ProbePlan", "plan_probe", "project_cube_build", "tree_rss"]

log = logging.getLogger(__name__)

#: Largest share of the grid's cells a probe takes before it gives the build its blocks.
MAX_SHARE = 0.25

#: Seconds between samples of the process tree's RSS (and checks for the store's metadata).
SAMPLE_S = 0.02


@dataclass(frozen=True)
class ProbePlan:
    """Where the probe runs and how the real build would read and fit the grid.

    Attributes:
        shape: The grid ``(lat, lon)``.
        read_tile: Cells of a read block ``(rows, cols)`` (:func:`read_blocks`).
        fit_tile: Cells of a fit block (:func:`choose_tile`, as the build sizes it).
        window: The probe's rows and columns ``(slice, slice)``.
        land: Land cells of the grid.
        probe_land: Land cells in the window.
        explicit: The build on the window must be given the fit tile (``fit_tile=``): on any
            window up to :data:`MAX_SHARE` of the grid it would choose other blocks.
    """

    shape: tuple[int, int]
    read_tile: tuple[int, int]
    fit_tile: tuple[int, int]
    window: tuple[slice, slice]
    land: int
    probe_land: int
    explicit: bool = False

    @property
    def probe_cells(self) -> int:
        """Cells in the window."""
        return (self.window[0].stop - self.window[0].start) * (
            self.window[1].stop - self.window[1].start
        )

    @property
    def whole(self) -> bool:
        """True when the window is the whole grid (nothing to extrapolate)."""
        return self.probe_cells == self.shape[0] * self.shape[1]


def _tiles(
    shape: tuple[int, int],
    times: pd.DatetimeIndex,
    step_bytes: int,
    n_vars: int,
    n_targets: int,
    block_bytes: int,
    align: tuple[int, int] | None,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """The read and fit tiles :func:`build_cube_store` chooses for a grid of ``shape``.

    The fit block's bytes per cell are those of :func:`build_cube_store`
    (:func:`hydrology.blocks.fit_bytes_per_cell`).
    """
    read, _ = read_blocks(shape, times, step_bytes, block_bytes, align)
    n_years = int(times.year[-1] - times.year[0] + 1) if times.size else 1
    per_cell = fit_bytes_per_cell(n_years, n_vars, n_targets)
    return read, choose_tile(shape, per_cell, block_bytes, read)


def _windows(
    shape: tuple[int, int], unit: tuple[int, int], size: tuple[int, int]
) -> Iterator[tuple[slice, slice]]:
    """Every window of ``size`` cells at unit-aligned positions."""
    ny, nx = shape
    h, w = size
    for y in range(0, max(ny - h, 0) + 1, unit[0]):
        for x in range(0, max(nx - w, 0) + 1, unit[1]):
            yield slice(y, y + h), slice(x, x + w)


def plan_probe(
    shape: tuple[int, int],
    times: pd.DatetimeIndex,
    step_bytes: int,
    n_vars: int,
    n_targets: int,
    land: np.ndarray,
    threads: int,
    block_bytes: int = BLOCK_BYTES,
    align: tuple[int, int] | None = None,
) -> ProbePlan:
    """The smallest window of whole blocks that behaves like the grid.

    The window grows by units of ``max(read tile, fit tile)`` (each a multiple of the
    other, :func:`choose_tile`), on its shorter side, until it holds at least ``threads``
    fit blocks (so the engine runs as many blocks at once as in the real build) and
    :func:`build_cube_store` would choose the same tiles on it. The tiles depend on the
    grid's shape (a side no longer than a read block is not aligned), so on a grid of few
    read blocks that window may be most of the grid: past :data:`MAX_SHARE` the window
    only needs the fit blocks, and the build is given them (``explicit``). Among the
    windows of that size at whole units, the one whose land share is closest to the grid's
    (and has land).

    Args:
        shape: Grid ``(lat, lon)``.
        times: The record's time stamps.
        step_bytes: Bytes of one cell and step, every time-varying variable.
        n_vars: Time-varying variables.
        n_targets: Target indices.
        land: Land cells ``(lat, lon)``, bool.
        threads: Threads the engine runs blocks on, all workers together.
        block_bytes: The build's memory budget of a block.
        align: The files' storage chunks ``(lat, lon)``.

    Returns:
        The plan; its window is the whole grid when nothing smaller behaves like it.
    """
    read, fit = _tiles(shape, times, step_bytes, n_vars, n_targets, block_bytes, align)
    unit = (max(read[0], fit[0]), max(read[1], fit[1]))
    ny, nx = shape

    def enough(h: int, w: int) -> bool:
        return math.ceil(h / fit[0]) * math.ceil(w / fit[1]) >= threads

    def same(h: int, w: int) -> bool:  # the input arrives chunked by the read tile
        return _tiles((h, w), times, step_bytes, n_vars, n_targets, block_bytes, read) == (
            read,
            fit,
        )

    h, w = _grow(shape, unit, lambda h, w: enough(h, w) and same(h, w))
    explicit = False
    if h * w > MAX_SHARE * ny * nx:  # the tiles depend on the grid's shape
        h2, w2 = _grow(shape, unit, enough)
        if h2 * w2 < h * w:  # a smaller window, if the build is given the fit tile
            h, w, explicit = h2, w2, True
    share = float(land.mean()) if land.size else 0.0
    best: tuple[float, tuple[slice, slice]] | None = None
    for win in _windows(shape, unit, (h, w)):
        sub = land[win]
        if not sub.any():
            continue
        gap = abs(float(sub.mean()) - share)
        if best is None or gap < best[0]:
            best = (gap, win)
    window = best[1] if best is not None else (slice(0, ny), slice(0, nx))
    return ProbePlan(shape, read, fit, window, int(land.sum()), int(land[window].sum()), explicit)


def _grow(
    shape: tuple[int, int], unit: tuple[int, int], done: Callable[[int, int], bool]
) -> tuple[int, int]:
    """The first ``(rows, cols)`` of whole units, growing the shorter side, that is ``done``
    (or the grid)."""
    ny, nx = shape
    k = [1, 1]
    while True:
        h, w = min(ny, k[0] * unit[0]), min(nx, k[1] * unit[1])
        if done(h, w) or (h, w) == shape:
            return h, w
        k[0 if (h <= w and h < ny) or w >= nx else 1] += 1


def _land(ds: xr.Dataset) -> np.ndarray:
    """Land cells ``(lat, lon)``: ``lsm > 0.5`` where given, else a first step of ``tp``."""
    if "lsm" in ds.data_vars and "time" not in ds["lsm"].dims:
        lsm = canonical_units(ds[["lsm"]])["lsm"]
        return np.asarray(lsm.values > 0.5)
    return np.isfinite(ds["tp"].isel(time=0).values)


def tree_rss(proc: psutil.Process) -> int:
    """RSS of ``proc`` and all its descendants (bytes; processes that vanish are skipped)."""
    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:  # proc itself has exited
        return 0
    total = 0
    for p in tree:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


class _Sampler:
    """Samples the peak RSS of this process's tree, and when ``marker`` first exists."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker
        self.peak = 0
        self.marked: float | None = None
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self._proc))
            if self.marked is None and self.marker.exists():
                self.marked = time.perf_counter()
            time.sleep(SAMPLE_S)

    def __enter__(self) -> _Sampler:
        self.peak = tree_rss(self._proc)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _threads(compute: ComputeConfig) -> int:
    """Threads the engine of ``compute`` runs blocks on, all workers together."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if compute.workers:
        return compute.workers * compute.threads_per_worker
    return max(1, cores or 1)


def project_cube_build(
    paths: Sequence[str],
    gates: Gates,
    cube_kwargs: Mapping[str, Any],
    compute: ComputeConfig,
    slurm: SlurmConfig | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> PreprocessProjection:
    """Project the cube store build of the files in ``paths`` from a probe.

    Args:
        paths: NetCDF/Zarr paths or glob patterns (``task.params.path``).
        gates: Plausibility bounds (``task.params.gates``).
        cube_kwargs: Keyword arguments of :func:`build_cube_store` as the task passes them
            (splits, targets, leads, regional, ...; ``block_bytes`` is taken from here).
        compute: Where dask runs the build (``compute:`` of the run config).
        slurm: ``launch.slurm`` of the run config, for ``compute.mode: slurm``.
        block_bytes: The build's memory budget of a block (when ``cube_kwargs`` has none).

    Returns:
        The projection: seconds, peak bytes of the process tree, what was probed, the
        projected seconds per phase.

    Raises:
        DataError: The files cannot be read, or the probe's values fail the gates (the
            same one line the real build gives).
        ConfigError: A target whose variable the files lack.
    """
    kwargs = dict(cube_kwargs)
    block_bytes = int(kwargs.get("block_bytes", block_bytes))
    kwargs["block_bytes"] = block_bytes
    kwargs["require_val_drought"] = False  # a property of the whole grid, not the probe's
    t0 = time.perf_counter()
    raw, label, align, _, _ = open_lazy(paths, block_bytes)
    time_vars = [str(v) for v in raw.data_vars if "time" in raw[v].dims]
    step_bytes = sum(raw[v].dtype.itemsize for v in time_vars)
    times = pd.DatetimeIndex(raw["time"].values) if is_standard(raw) else None
    if times is None:  # a model calendar: the build reads its monthly means
        times = pd.DatetimeIndex(standard_months(raw[["tp"]])["time"].values)
    shape = (raw.sizes["lat"], raw.sizes["lon"])
    n_targets = len([IndexSpec.parse(t) for t in kwargs.get("targets", ("spi_3", "ssmi_1"))])
    nbytes = input_nbytes(raw)
    threads = _threads(compute)
    plan = plan_probe(
        shape,
        times,
        step_bytes,
        len(time_vars),
        n_targets,
        _land(raw),
        threads,
        block_bytes,
        align,
    )
    sub = raw.isel(lat=plan.window[0], lon=plan.window[1])
    _, years = read_blocks(shape, times, step_bytes, block_bytes, plan.read_tile)
    if plan.explicit:  # the real build's fit blocks given; its read blocks as chosen
        kwargs["fit_tile"] = plan.fit_tile
    t_open = time.perf_counter() - t0
    with tempfile.TemporaryDirectory(prefix="twins-probe-") as tmp:
        store = Path(tmp) / "probe.zarr"
        with _Sampler(store / "zarr.json") as sampler:
            # As the real build: the gates in this process (dask's default scheduler) when
            # the files are opened, then the build on the engine.
            t1 = time.perf_counter()
            check_gates(sub, label, gates)
            trim_freed()
            ds = canonical_units(sub)
            if not is_standard(ds):
                ds = standard_months(ds)
            t2 = time.perf_counter()
            with build_engine(compute, nbytes, slurm):
                t3 = time.perf_counter()
                info = build_cube_store(ds, store, **kwargs)
                t4 = time.perf_counter()
            t5 = time.perf_counter()
        marked = sampler.marked if sampler.marked is not None else t3
    r_all = shape[0] * shape[1] / plan.probe_cells
    served = info["cells"]
    r_land = plan.land / plan.probe_land if plan.probe_land else r_all
    phases = {
        "open": t_open,
        "gates": (t2 - t1) * r_all,
        "engine": (t3 - t2) + (t5 - t4),
        "months": (marked - t3) * r_all,
        "fits": (t4 - marked) * r_land,
    }
    window = plan.window
    probed = (
        f"{label}: rows {window[0].start}-{window[0].stop - 1}, cols {window[1].start}-"
        f"{window[1].stop - 1} of {shape[0]} x {shape[1]} ({plan.probe_cells} cells, "
        f"{served} served; {1 / r_all:.1%} of the grid), the whole record "
        f"({times[0]:%Y-%m} to {times[-1]:%Y-%m}); blocks: read {plan.read_tile[0]} x "
        f"{plan.read_tile[1]} by "
        f"{years} year(s), fit {plan.fit_tile[0]} x {plan.fit_tile[1]}, {threads} thread(s)"
    )
    read = plan.read_tile
    if (tuple(info["tile"]), tuple(info["read_tile"]), info["read_years"]) != (
        plan.fit_tile,
        read,
        years,
    ):
        log.warning(
            "probe of %s: read %s by %d years, fitted %s; planned %s by %d years, %s: the "
            "memory projection is off by their ratio",
            label,
            info["read_tile"],
            info["read_years"],
            info["tile"],
            read,
            years,
            plan.fit_tile,
        )
    projection = PreprocessProjection(
        seconds=float(sum(phases.values())),
        peak_bytes=int(sampler.peak),
        probed=probed,
        probe_s=time.perf_counter() - t0,
        phases=phases,
        cpus=threads,
    )
    log.info(
        "preprocessing projected: %.0f s, peak RSS %.0f MiB (%s)",
        projection.seconds,
        projection.peak_rss_mib,
        probed,
    )
    return projection
