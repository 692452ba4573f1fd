"""Peak memory of the out-of-core cube build against the length of the record.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/drought_outofcore_memory.py [--grid 100]
[--years 6 30] [--block-mb 64] [--threads 2] [--workdir DIR]``

Writes, year by year (bounded memory), a synthetic daily ERA5-Land-like NetCDF-4 file of
``grid x grid`` cells for each record length (``tp``, ``pev`` in m, ``swvl1`` in m3 m-3,
``t2m`` in K, statics ``lsm`` and ``z``; float32, storage chunks of one year by 50 x 50
cells, zlib level 1), then preprocesses each in a fresh process as the drought task does
with ``store: zarr``: :func:`hydrology.cubecache.open_training_lazy` (checks and gates, which
read every value once) and :func:`hydrology.outofcore.build_cube_store` on dask's threaded
scheduler (SPI-3 and SSMI-1 at leads 1-3). A thread samples the RSS of the process and its
children (psutil) every 50 ms.

Prints, per record length: the input size, the block shape, the RSS after imports, the peak
RSS and the wall time; and the ratio of the peaks (longest / shortest record). Memory is
bounded by the block, not by the record, when the ratio is near 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dask
import netCDF4
import numpy as np
import pandas as pd
import psutil

from hydrology.cubecache import open_training_lazy
from hydrology.gates import Gates
from hydrology.outofcore import build_cube_store

log = logging.getLogger("drought_outofcore_memory")

START = 1991


def write_record(path: Path, n: int, years: int, seed: int = 0) -> Path:
    """A daily record of ``years`` years on an ``n x n`` grid, written one year at a time."""
    rng = np.random.default_rng(seed)
    lat = np.linspace(40.0, 40.0 + 0.1 * (n - 1), n)
    lon = np.linspace(0.0, 0.1 * (n - 1), n)
    yy, xx = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    land = (xx > n // 5) | (yy > n // 2)  # sea in the south-west
    z = np.where(land, 9.80665 * 800 * (yy + xx) / (2 * n), 0.0).astype(np.float32)
    days = pd.date_range(f"{START}-01-01", f"{START + years - 1}-12-31", freq="D")
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", days.size)
        nc.createDimension("lat", n)
        nc.createDimension("lon", n)
        t = nc.createVariable("time", "f8", ("time",))
        t.units, t.calendar = f"days since {START}-01-01", "standard"
        t[:] = np.arange(days.size)
        for name, values, units in (("lat", lat, "degrees_north"), ("lon", lon, "degrees_east")):
            v = nc.createVariable(name, "f8", (name,))
            v.units = units
            v[:] = values
        for name, values, units in (("lsm", land.astype(np.float32), "1"), ("z", z, "m2 s-2")):
            v = nc.createVariable(name, "f4", ("lat", "lon"))
            v.units = units
            v[:] = values
        chunks = (366, min(50, n), min(50, n))
        out = {}
        for name, units in (("tp", "m"), ("pev", "m"), ("swvl1", "m3 m-3"), ("t2m", "K")):
            v = nc.createVariable(
                name,
                "f4",
                ("time", "lat", "lon"),
                zlib=True,
                complevel=1,
                chunksizes=chunks,
                fill_value=np.float32(np.nan),
            )
            v.units = units
            out[name] = v
        i = 0
        for year in range(START, START + years):
            doy = pd.date_range(f"{year}-01-01", f"{year}-12-31", freq="D").day_of_year.to_numpy()
            nd = doy.size
            season = np.sin(2 * np.pi * (doy - 100) / 365.25)[:, None, None]
            wet = 1.0 + 0.5 * rng.standard_normal((1, n, n)).clip(-1.5, 1.5)  # a year's anomaly
            tp = rng.gamma(0.6, 4.0 * wet * (1.0 - 0.3 * season), (nd, n, n)) / 1000.0
            tp *= rng.random((nd, n, n)) < 0.45
            pev = -(2.5 + 1.5 * season + 0.2 * rng.standard_normal((nd, n, n))).clip(0.1) / 1000
            sm = 0.25 + 0.05 * wet - 0.04 * season + 0.01 * rng.standard_normal((nd, n, n))
            t2m = 283.0 + 9.0 * season + 2.0 * rng.standard_normal((nd, n, n))
            for name, values in (("tp", tp), ("pev", pev), ("swvl1", sm), ("t2m", t2m)):
                out[name][i : i + nd] = np.where(land, values, np.nan).astype(np.float32)
            i += nd
    return path


def _splits(years: int) -> dict[str, tuple[str, str]]:
    end = START + years - 1
    n_val = max(1, years // 10)
    val0 = end - 2 * n_val + 1
    return {
        "train": (f"{START}-01", f"{val0 - 1}-12"),
        "val": (f"{val0}-01", f"{val0 + n_val - 1}-12"),
        "test": (f"{val0 + n_val}-01", f"{end}-12"),
    }


def preprocess(
    path: Path, out: Path, years: int, block_mb: int, threads: int
) -> dict[str, object]:
    """One build in this process (run by the child): ``{"tile", "baseline_rss", "wall_s"}``."""
    base = psutil.Process().memory_info().rss
    t0 = time.perf_counter()
    with dask.config.set(scheduler="threads", num_workers=threads):
        ds = open_training_lazy([str(path)], Gates(), block_mb * 2**20)
        info = build_cube_store(
            ds,
            out,
            _splits(years),
            require_val_drought=False,
            source=str(path),
            block_bytes=block_mb * 2**20,
        )
    return {
        "tile": info["tile"],
        "read": [*info["read_tile"], info["read_years"]],
        "cells": info["cells"],
        "baseline_rss": base,
        "wall_s": time.perf_counter() - t0,
    }


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def measure(path: Path, out: Path, years: int, block_mb: int, threads: int) -> dict[str, object]:
    """Run :func:`preprocess` in a child process, sampling its tree's RSS."""
    shutil.rmtree(out, ignore_errors=True)  # a cube of an earlier run
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(path),
        str(out),
        str(years),
        str(block_mb),
        str(threads),
    ]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    proc = psutil.Process(child.pid)
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            with contextlib.suppress(psutil.Error):
                peak[0] = max(peak[0], _tree_rss(proc))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = child.communicate()
    stop.set()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"the build of {path} failed (exit {child.returncode})")
    result = json.loads(stdout.strip().splitlines()[-1])
    return result | {"peak_rss": peak[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=100)
    ap.add_argument("--years", type=int, nargs="+", default=[6, 30])
    ap.add_argument("--block-mb", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        path, out, years, block_mb, threads = args.child
        res = preprocess(Path(path), Path(out), int(years), int(block_mb), int(threads))
        print(json.dumps(res))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ooc-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for years in args.years:
        path = work / f"daily_{args.grid}x{args.grid}_{years}y.nc"
        if not path.exists():
            t0 = time.perf_counter()
            write_record(path, args.grid, years)
            log.info("wrote %s (%.1f s)", path, time.perf_counter() - t0)
        raw = args.grid**2 * pd.date_range(f"{START}", periods=years, freq="YS").size * 365.25 * 16
        res = measure(path, work / f"cube_{years}y.zarr", years, args.block_mb, args.threads)
        rows.append(res | {"years": years, "input_gb": raw / 1e9})
        log.info(
            "%2d years: input %.2f GB (float32, 4 variables), read in blocks of %dx%d cells by "
            "%d years, fitted in blocks of %s, RSS after imports %.0f MB, peak RSS %.0f MB "
            "(%.0f MB above), %.0f s",
            years,
            raw / 1e9,
            *res["read"],
            "x".join(map(str, res["tile"])),
            res["baseline_rss"] / 1e6,
            res["peak_rss"] / 1e6,
            (res["peak_rss"] - res["baseline_rss"]) / 1e6,
            res["wall_s"],
        )
    if len(rows) > 1:
        log.info(
            "peak RSS %d years / %d years: %.2f",
            rows[-1]["years"],
            rows[0]["years"],
            rows[-1]["peak_rss"] / rows[0]["peak_rss"],
        )


if __name__ == "__main__":
    main()
