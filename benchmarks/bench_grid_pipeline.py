"""Grid pipeline against a plain netCDF4 read of the same variables, in one run.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_grid_pipeline.py [--years 10]
[--repeats 3]``

Writes a synthetic ERA5-Land-like file (50 x 50 cells, ``--years`` years, daily, chunked and
zlib-compressed as :func:`hydrology.synthetic.write_netcdf` does), then times, alternating:

* **plain**: ``netCDF4.Dataset`` reads ``tp, t2m, pev, swvl1`` into numpy;
* **pipeline**: the drought model's own path: :func:`hydrology.io.open_grids` (canonical
  form), load, land mask, monthly inputs with unit conversion, per-calendar-month
  z-scores (:class:`hydrology.dataset.Scaler`) and one epoch of shuffled batches (256) of
  ``(cell, 36-month window)`` samples gathered with :func:`hydrology.samples.gather_windows`,
  the gather of ``CellDataset.__getitems__`` (no materialised windows).

Prints the median times and the throughput ratio plain_time / pipeline_time (goal >= 0.8),
the same ratio without the daily -> monthly aggregation (which a plain read does not do and
a daily-input model would not need), and the I/O-only ratio.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from pathlib import Path

import netCDF4
import numpy as np
import torch

from hydrology.features import INPUT_VARS, Scaler, time_by_cell
from hydrology.forecast import monthly_inputs
from hydrology.io import land_mask, open_grids
from hydrology.samples import gather_windows
from hydrology.synthetic import SyntheticParams, generate, write_netcdf

VARS = ("tp", "t2m", "pev", "swvl1")
WINDOW = 36
BATCH = 256

log = logging.getLogger("bench_grid_pipeline")


def plain(path: Path) -> float:
    """Read the variables with netCDF4; returns seconds."""
    t0 = time.perf_counter()
    with netCDF4.Dataset(path) as nc:
        arrays = [nc.variables[v][:] for v in VARS]
    _ = sum(float(np.ma.sum(a[:1])) for a in arrays)
    return time.perf_counter() - t0


def pipeline(path: Path, seed: int = 0) -> tuple[float, int, dict[str, float]]:
    """Open, mask, aggregate, normalise, one epoch of batches.

    Returns:
        ``(seconds, samples, seconds per stage)``.

    Every step is the package's own code path for the drought model: ``open_grids``
    (canonical form), ``land_mask``, ``monthly_inputs`` (sparse monthly sums, xclim unit factors),
    ``Scaler`` (per-calendar-month z-scores from the first 70 % of the record), then
    ``(cell, 36-month window)`` batches gathered as ``CellDataset.__getitems__`` does.
    """
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    # chunks=None as DroughtForecast.load_dataset opens one file (the cube loads it anyway)
    ds = open_grids(path, variables=list(VARS), chunks=None, check_values=False).load()
    cells = np.flatnonzero(land_mask(ds).values.ravel())
    stages["open+load+mask"] = time.perf_counter() - t0
    monthly = monthly_inputs(ds)
    stages["monthly aggregation"] = time.perf_counter() - t0 - sum(stages.values())
    times = monthly.indexes["time"]
    train = (times[0], times[int(0.7 * times.size)])
    scaler = Scaler.fit(monthly, cells, train)
    x = np.stack([time_by_cell(monthly[v])[:, cells] for v in INPUT_VARS], 1)  # (time, var, cell)
    z = scaler.transform(x, times.month.values)
    data = torch.from_numpy(np.ascontiguousarray(z.transpose(2, 0, 1)))  # (cell, time, var)
    n_t = data.shape[1] - WINDOW
    n = cells.size * n_t
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    total = 0.0
    for s in range(0, n, BATCH):
        idx = order[s : s + BATCH]
        c, t = idx // n_t, idx % n_t + WINDOW - 1
        batch = gather_windows(data, c, t, WINDOW)  # (batch, window, var), as CellDataset
        total += float(batch[:, -1, 0].sum())
    stages["normalise+epoch"] = time.perf_counter() - t0 - sum(stages.values())
    return time.perf_counter() - t0, n, stages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--years", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    p = SyntheticParams(nlat=50, nlon=50, start="2001-01-01", years=args.years)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "grid.nc"
        write_netcdf(generate(p), path)
        log.info("file %s: %.1f MB", path.name, path.stat().st_size / 1e6)
        pipeline(path)  # warm imports and the page cache for both
        tp, tq, samples, st = [], [], 0, []
        for _ in range(args.repeats):
            tp.append(plain(path))
            t, samples, stages = pipeline(path)
            tq.append(t)
            st.append(stages)
    mp, mq = statistics.median(tp), statistics.median(tq)
    log.info("plain netCDF4 read:   %.3f s", mp)
    log.info(
        "pipeline (open, mask, monthly, normalise, 1 epoch of %d samples): %.3f s", samples, mq
    )
    for k in st[0]:
        log.info("  %-22s %.3f s", k, statistics.median(s[k] for s in st))
    io = statistics.median(s["open+load+mask"] for s in st)
    named = statistics.median(s["open+load+mask"] + s["normalise+epoch"] for s in st)
    log.info("throughput ratio pipeline/plain = %.2f (goal >= 0.8)", mp / mq)
    log.info(
        "ratio without the daily->monthly aggregation (open, mask, normalise, epoch: the "
        "stages the issue names) = %.2f",
        mp / named,
    )
    log.info("I/O-only ratio (open+load+mask vs plain) = %.2f", mp / io)


if __name__ == "__main__":
    main()
