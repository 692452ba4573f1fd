"""Peak memory of the drought task's out-of-core cube build against the length of the record.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/drought_outofcore_memory.py [--grid 200]
[--years 6 30] [--block-mb 64] [--compute local] [--workers N] [--workdir DIR] [--keep]``
(small first: ``--grid 50 --years 4 6``).

Writes, year by year (bounded memory), a synthetic daily ERA5-Land-like NetCDF-4 file of
``grid x grid`` cells for each record length (``tp``, ``pev`` in m, ``swvl1`` in m3 m-3,
``t2m`` in K, statics ``lsm`` and ``z``; float32, storage chunks of one year by 50 x 50
cells, zlib level 1; the shorter records are the first years of the longest: same seed),
then builds each one's cube in a fresh process exactly as a user's run does: the drought
task of ``hydrology/configs/demo.yaml`` (regional inputs included) with
``task.params.path`` set to the file, ``store: zarr`` and the record's splits, through
:meth:`hydrology.task.DroughtForecast.cube_store` (:func:`hydrology.cubecache.open_training_lazy`:
checks and gates, which read every value once; :func:`hydrology.outofcore.build_cube_store`
on the ``compute:`` engine: by default ``local``, a dask ``LocalCluster``, as for any input
of 1 GiB or more). A thread samples the RSS of the whole process tree (the build's process,
the dask scheduler's and workers' processes and their children; psutil) every 50 ms.

Prints, per record length: the input size, the block shapes, the RSS after imports, the
peak RSS of the tree and the wall time; then the bars of issue 11: every peak under
2.5 GB, and the longest record's peak within 20 % of the shortest's (memory is bounded by
the block, not by the record).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import psutil

from hydrology.projection import tree_rss

log = logging.getLogger("drought_outofcore_memory")

START = 1991
ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "hydrology" / "configs" / "demo.yaml"
PEAK_BAR = 2.5e9  # bytes: the peak RSS of the process tree, each record length
GROWTH_BAR = 0.20  # the longest record's peak within 20 % of the shortest's


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


def splits(years: int) -> dict[str, tuple[str, str]]:
    """Train, validation and test months of a record of ``years`` years from ``START``."""
    end = START + years - 1
    n_val = max(1, years // 10)
    val0 = end - 2 * n_val + 1
    return {
        "train": (f"{START}-01", f"{val0 - 1}-12"),
        "val": (f"{val0}-01", f"{val0 + n_val - 1}-12"),
        "test": (f"{val0 + n_val}-01", f"{end}-12"),
    }


def task_overrides(
    path: Path,
    years: int,
    workdir: Path,
    block_mb: int = 64,
    compute: str = "local",
    workers: int | None = None,
) -> list[str]:
    """Overrides of ``demo.yaml`` that train on the file at ``path`` from a Zarr cube.

    The cube store lives under ``workdir / "cubes"``; ``compute`` and ``workers`` set the
    ``compute:`` section (``min_cluster_bytes: 0``: the engine runs whatever the input's
    size); no dashboard (no port taken).
    """
    out = [
        f"workdir={workdir}",
        "tracking.enabled=false",
        f"task.params.path={path}",
        "task.params.store=zarr",
        f"task.params.block_mb={block_mb}",
        f"task.params.cache_dir={workdir / 'cubes'}",
        "task.params.require_val_drought=false",
        f"compute.mode={compute}",
        "compute.min_cluster_bytes=0",
        "compute.dashboard_address=null",
    ]
    out += [f"task.params.splits.{k}=[{a},{b}]" for k, (a, b) in splits(years).items()]
    if workers is not None:
        out.append(f"compute.workers={workers}")
    return out


PREPROCESSED = re.compile(r"preprocessed \S+ in ([0-9.]+) s: cube store (\S+)$")


def child_build(overrides: list[str]) -> tuple[dict[str, object], int]:
    """Build the cube as a user does, ``python -m twins preprocess CONFIG OVERRIDES``, in a
    fresh process, its process tree's RSS sampled (dask's workers start by re-running the
    parent's main module: the CLI's imports, not a benchmark script's).

    Returns:
        ``({"info", "wall_s", "path"}, peak RSS of the tree)``: ``info`` as
        :func:`hydrology.outofcore.build_cube_store` returns it, ``wall_s`` the build's
        wall time as the command reports it (imports not included).
    """
    cmd = [sys.executable, "-m", "twins", "-q", "preprocess", str(CONFIG), *overrides]
    stdout, peak = run_sampled(cmd)
    found = [m for line in stdout.splitlines() if (m := PREPROCESSED.search(line.strip()))]
    if not found:
        raise SystemExit(f"twins preprocess printed no cube store: {stdout[-500:]!r}")
    wall, path = float(found[-1][1]), found[-1][2]
    record = json.loads(Path(f"{path}.done.json").read_text())
    return {"info": record["info"], "wall_s": wall, "path": path}, peak


def run_sampled(cmd: list[str], every_s: float = 0.02) -> tuple[str, int]:
    """Run ``cmd``, sampling its process tree's RSS every ``every_s`` seconds.

    Returns:
        Its standard output, and the peak RSS of its tree (bytes).
    """
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    proc = psutil.Process(child.pid)
    peak, stop = [0], threading.Event()
    parts: list[str] = []

    def sample() -> None:
        while not stop.is_set():
            total = tree_rss(proc)
            if total > peak[0]:
                peak[0] = total
                parts[:] = _composition(proc)
            time.sleep(every_s)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, _ = child.communicate()
    stop.set()
    sampler.join()
    if child.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed (exit {child.returncode})")
    log.info("at the peak (%.0f MB): %s", peak[0] / 1e6, ", ".join(parts))
    return stdout, peak[0]


def _composition(proc: psutil.Process) -> list[str]:
    """Each process of the tree and its RSS, e.g. ``main 640 MB``, ``worker 820 MB``."""
    out = []
    try:
        tree = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return out
    for p in tree:
        try:
            line = " ".join(p.cmdline())
            rss = p.memory_info().rss
        except psutil.Error:
            continue
        kind = "main" if p.pid == proc.pid else "worker" if "spawn_main" in line else "other"
        out.append(f"{kind} {rss / 1e6:.0f} MB")
    return out


def input_bytes(n: int, years: int) -> float:
    """Bytes of the daily float32 record of ``n x n`` cells, four variables."""
    days = pd.date_range(f"{START}-01-01", f"{START + years - 1}-12-31", freq="D").size
    return float(n * n * days * 4 * 4)


def ensure_record(work: Path, n: int, years: int) -> Path:
    """The record file of ``n x n`` cells and ``years`` years under ``work`` (written once)."""
    path = work / f"daily_{n}x{n}_{years}y.nc"
    if not path.exists():
        t0 = time.perf_counter()
        tmp = path.with_suffix(".part")
        write_record(tmp, n, years)
        tmp.rename(path)
        log.info("wrote %s (%.1f s)", path, time.perf_counter() - t0)
    return path


def verdict(name: str, value: float, ok: bool, bar: str) -> str:
    """One result line: the figure, the bar and whether it is met."""
    return f"{name}: {value:.3g} ({'PASS' if ok else 'FAIL'}: bar {bar})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", type=int, default=200)
    ap.add_argument("--years", type=int, nargs="+", default=[6, 30])
    ap.add_argument("--block-mb", type=int, default=64)
    ap.add_argument("--compute", choices=["local", "threads"], default="local")
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--keep",
        action="store_true",
        help="keep each cube store in WORKDIR/cubes (the training benchmark of "
        "drought_outofcore_bench.py opens it there instead of building it again)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ooc-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for years in sorted(args.years):
        path = ensure_record(work, args.grid, years)
        run = work / f"run_{years}y"
        shutil.rmtree(run, ignore_errors=True)  # the cube of an earlier run
        res, peak = child_build(
            task_overrides(path, years, run, args.block_mb, args.compute, args.workers)
        )
        info = res["info"]
        rows.append({"years": years, "peak": peak})
        log.info(
            "%2d years: input %.2f GB (float32, 4 variables), read in blocks of %dx%d cells by "
            "%d years, fitted in blocks of %s, dask %s, peak RSS of the process tree %.0f MB, "
            "%.0f s",
            years,
            input_bytes(args.grid, years) / 1e9,
            *info["read_tile"],
            info["read_years"],
            "x".join(map(str, info["tile"])),
            info["dask"],
            peak / 1e6,
            res["wall_s"],
        )
        if args.keep:
            (work / "cubes").mkdir(exist_ok=True)
            for item in (run / "cubes").iterdir():
                if not (work / "cubes" / item.name).exists():
                    item.rename(work / "cubes" / item.name)
        shutil.rmtree(run, ignore_errors=True)
    for r in rows:
        log.info(
            verdict(
                f"peak RSS {r['years']} years [GB]", r["peak"] / 1e9, r["peak"] < PEAK_BAR, "< 2.5"
            )
        )
    if len(rows) > 1:
        ratio = rows[-1]["peak"] / rows[0]["peak"]
        log.info(
            verdict(
                f"peak RSS {rows[-1]['years']} years / {rows[0]['years']} years",
                ratio,
                abs(ratio - 1) <= GROWTH_BAR,
                "within 0.8-1.2",
            )
        )


if __name__ == "__main__":
    main()
