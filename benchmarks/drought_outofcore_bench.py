"""Throughput, scaling and training of the drought task's out-of-core cube (issue 11).

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/drought_outofcore_bench.py COMMAND [options]``
(the records are written once under ``--workdir`` by
:func:`drought_outofcore_memory.write_record`; commands that share a workdir reuse them):

- ``throughput [--workdir DIR]``: the demo preset (50 x 50 cells, 1991-2020) written as a
  NetCDF file; today's in-memory path (the task with ``store: npz``:
  :func:`hydrology.ingest.read_training` and :func:`hydrology.dataset.build_cube`) against
  the out-of-core path (``store: zarr``: :meth:`hydrology.task.DroughtForecast.cube_store`
  on the threaded scheduler, as the task runs an input under 1 GiB), both on the demo
  recipe (``hydrology/configs/demo.yaml``, regional inputs included), the file read once
  before either (page cache warm for both). Checks the two cubes are equal (every array,
  bit for bit, cell by cell) and prints in-memory time / out-of-core time: bar >= 0.8.
- ``scaling [--grid 200] [--years 6]``: the large grid's cube built through the task with
  ``compute: local`` and 1, then 2 dask workers of one thread (``LocalCluster`` through
  :func:`twins.compute.cluster.dask_client`), each in a fresh process; prints the speedup
  (1-worker time / 2-worker time): bar >= 1.5 on 2 cores.
- ``training [--grid 200] [--years 6] [--steps 20]``: DDP with 2 ranks (``torchrun
  --nproc_per_node=2``, gloo on CPU) training the task from the large grid's cube store
  (built first if missing); each rank measures its RSS after imports and model build,
  before data (its baseline), then the peak RSS of its process tree during
  :func:`twins.train.run.train_process`; prints each rank's peak above its baseline / the
  whole cube's size uncompressed (every variable of the store): bar <= 0.6.
- ``tune [--grid 200] [--years 6]``: a 4-trial Ray Tune study (two at a time) of
  ``twins/tune/spaces/drought.yaml`` on the large grid's file with ``store: zarr`` and no
  cube built beforehand; counts the cube stores under the trials' shared cache, their
  completion markers, and cubes the trials built themselves: bar: one store, built once.

Wall-time ratios are meaningful on an otherwise idle machine only.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import xarray as xr
from drought_outofcore_memory import (
    CONFIG,
    ROOT,
    child_build,
    ensure_record,
    task_overrides,
    tree_rss,
    verdict,
)

from hydrology.cubestore import dataset_to_cube, open_cube
from hydrology.dataset import DroughtCube
from hydrology.synthetic import generate, write_netcdf
from twins.config import load_config
from twins.task import build_task

log = logging.getLogger("drought_outofcore_bench")

THROUGHPUT_BAR = 0.8  # in-memory time / out-of-core time, demo grid
SPEEDUP_BAR = 1.5  # 1-worker time / 2-worker time, large grid, 2 cores
RANK_SHARE_BAR = 0.6  # a rank's peak RSS above its baseline / the cube's size uncompressed
SPACE = ROOT / "twins" / "tune" / "spaces" / "drought.yaml"
CUBE_ARRAYS = ("dynamic", "static", "baseline", "target", "obs", "pr", "drought_share")


# ------------------------------------------------------------------------------ throughput


def cube_differences(a: DroughtCube, b: DroughtCube) -> list[str]:
    """Names of what differs between two cubes (cells matched by their grid index; NaN
    equals NaN); empty when they are equal bit for bit."""
    if not np.array_equal(np.sort(a.cells), np.sort(b.cells)):
        return ["cells"]
    ia, ib = np.argsort(a.cells), np.argsort(b.cells)
    out = []
    for name in CUBE_ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        if name != "drought_share":
            x, y = x[ia], y[ib]
        if not np.array_equal(x, y, equal_nan=True):
            out.append(name)
    for name in ("mean", "std"):
        if not np.array_equal(
            getattr(a.scaler, name)[..., ia], getattr(b.scaler, name)[..., ib], equal_nan=True
        ):
            out.append(f"scaler.{name}")
    if not a.times.equals(b.times):
        out.append("times")
    if {k: v for k, v in a.meta.items() if k != "source"} != {
        k: v for k, v in b.meta.items() if k != "source"
    }:
        out.append("meta")
    return out


def throughput(work: Path) -> None:
    """In-memory against out-of-core build of the demo grid from a file, same cube."""
    path = work / "demo.nc"
    if not path.exists():
        ds = generate("demo").drop_vars(["drought_forcing", "drought_mask"])
        write_netcdf(ds, path)
    path.read_bytes()  # warm the page cache for both paths
    run = work / "throughput"
    shutil.rmtree(run, ignore_errors=True)
    base = [
        f"workdir={run}",
        "tracking.enabled=false",
        f"task.params.path={path}",
        f"task.params.cache_dir={run / 'cubes'}",
        "task.params.require_val_drought=false",
    ]
    memory = build_task(
        load_config(CONFIG, [*base, "task.params.store=npz", "task.params.cache=false"])
    )
    t0 = time.perf_counter()
    in_memory = memory.cube()
    t_mem = time.perf_counter() - t0
    ooc = build_task(load_config(CONFIG, [*base, "task.params.store=zarr"]))
    opened = ooc._lazy_dataset
    gate_s = [0.0]

    def timed_open() -> xr.Dataset:  # the file opened, checked and gated (a full read)
        t = time.perf_counter()
        ds = opened()
        gate_s[0] = time.perf_counter() - t
        return ds

    ooc._lazy_dataset = timed_open  # type: ignore[method-assign]
    t0 = time.perf_counter()
    store = ooc.cube_store()
    t_ooc = time.perf_counter() - t0
    info = json.loads(Path(f"{store}.done.json").read_text())["info"]
    diff = cube_differences(in_memory, dataset_to_cube(open_cube(store)))
    log.info(
        "demo grid %s: in-memory %.1f s, out-of-core %.1f s (of which opening and gating the "
        "file, a full read, %.1f s; dask %s, fitted in blocks of %s), cubes %s",
        in_memory.dynamic.shape,
        t_mem,
        t_ooc,
        gate_s[0],
        info["dask"],
        "x".join(map(str, info["tile"])),
        "equal bit for bit" if not diff else f"DIFFER in {', '.join(diff)}",
    )
    ok = not diff and t_mem / t_ooc >= THROUGHPUT_BAR
    log.info(verdict("in-memory time / out-of-core time", t_mem / t_ooc, ok, ">= 0.8, same cube"))
    shutil.rmtree(run, ignore_errors=True)


# ------------------------------------------------------------------------------ scaling


def scaling(work: Path, grid: int, years: int) -> None:
    """The large grid's cube on a LocalCluster of 1, then 2 single-thread workers."""
    path = ensure_record(work, grid, years)
    walls = {}
    for workers in (1, 2):
        run = work / f"scaling_{workers}"
        shutil.rmtree(run, ignore_errors=True)
        res, peak = child_build(task_overrides(path, years, run, compute="local", workers=workers))
        walls[workers] = float(res["wall_s"])  # type: ignore[arg-type]
        log.info(
            "%d x %d cells x %d years, %d worker(s): %.1f s (dask %s), peak RSS of the tree "
            "%.0f MB",
            grid,
            grid,
            years,
            workers,
            walls[workers],
            res["info"]["dask"],  # type: ignore[index]
            peak / 1e6,
        )
        if workers == 1:  # keep one cube for the training benchmark
            shutil.rmtree(work / "cubes", ignore_errors=True)
            (run / "cubes").rename(work / "cubes")
        shutil.rmtree(run, ignore_errors=True)
    speedup = walls[1] / walls[2]
    log.info(verdict("speedup 2 workers / 1 worker", speedup, speedup >= SPEEDUP_BAR, ">= 1.5"))


# ------------------------------------------------------------------------------ training


def training_overrides(path: Path, years: int, work: Path, steps: int) -> list[str]:
    """The task on the large grid's file from the shared cube, a short DDP training."""
    return [
        *task_overrides(path, years, work / "train", compute="local"),
        f"task.params.cache_dir={work / 'cubes'}",
        "train.epochs=1",
        f"train.max_steps_per_epoch={steps}",
        "train.val_every=1000",
        "train.progress=false",
        "task.params.members=1",
    ]


def _uncompressed(store: Path) -> int:
    ds = open_cube(store)
    return int(sum(ds[v].nbytes for v in ds.variables))


def train_rank(overrides: list[str], out: Path) -> None:
    """One DDP rank (run by torchrun): baseline after imports and model build, then the
    task's real training, its tree's RSS sampled every 50 ms; writes ``rank<r>.json``."""
    import torch._dynamo  # noqa: F401  (DDP imports it when it wraps the model: 74 MB)

    from twins.train.run import train_process  # (the rank's imports are part of its baseline)

    cfg = load_config(CONFIG, overrides)
    task = build_task(cfg)
    store = task.cube_store()  # built: opens the marker only
    model = task.build_model()  # (from the store's attributes: no cell read)
    del model, task
    gc.collect()
    me = psutil.Process()
    baseline = tree_rss(me)
    peak, stop = [baseline], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(me))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    summary = train_process(cfg, progress=False)
    stop.set()
    sampler.join()
    rank = int(os.environ.get("RANK", "0"))
    record = {
        "rank": rank,
        "baseline": baseline,
        "peak": peak[0],
        "wall_s": time.perf_counter() - t0,
        "world_size": summary["world_size"],
        "steps": summary["steps"],
        "store": str(store),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record))


def training(work: Path, grid: int, years: int, steps: int) -> None:
    """DDP with 2 ranks from the large cube: each rank's RSS above its baseline."""
    path = ensure_record(work, grid, years)
    overrides = training_overrides(path, years, work, steps)
    task = build_task(load_config(CONFIG, overrides))
    store = task.cube_store()  # built here once if the scaling benchmark left none
    size = _uncompressed(store)
    out = work / "ranks"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work / "train", ignore_errors=True)
    out.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        __file__,
        "train-rank",
        json.dumps(overrides),
        str(out),
    ]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(Path(__file__).parent)}
    subprocess.run(cmd, check=True, env=env, cwd=work)
    log.info("cube %s: %.0f MB uncompressed", store, size / 1e6)
    for f in sorted(out.glob("rank*.json")):
        r = json.loads(f.read_text())
        share = (r["peak"] - r["baseline"]) / size
        log.info(
            "rank %d of %d: baseline %.0f MB, peak %.0f MB, %d steps in %.0f s",
            r["rank"],
            r["world_size"],
            r["baseline"] / 1e6,
            r["peak"] / 1e6,
            r["steps"],
            r["wall_s"],
        )
        log.info(
            verdict(
                f"rank {r['rank']} peak above baseline / cube size",
                share,
                share <= RANK_SHARE_BAR,
                "<= 0.6",
            )
        )


# ------------------------------------------------------------------------------ tune


def tune(work: Path, grid: int, years: int) -> None:
    """A 4-trial study on the large grid's file, no cube beforehand: one build."""
    from twins.tune.space import load_study  # (Ray only for this command)
    from twins.tune.study import run_study

    path = ensure_record(work, grid, years)
    run = work / "tune"
    shutil.rmtree(run, ignore_errors=True)
    overrides = [
        o
        for o in task_overrides(path, years, run, compute="local")
        if not o.startswith(("task.params.cache_dir", "compute."))
    ]
    cfg, tune_cfg = load_study(
        SPACE,
        [
            *overrides,
            "train.epochs=1",
            "train.max_steps_per_epoch=3",
            "tune.num_samples=4",
            "tune.max_concurrent=2",
        ],
    )
    t0 = time.perf_counter()
    result = run_study(cfg, tune_cfg, num_cpus=2)
    wall = time.perf_counter() - t0
    trials = run / cfg.name / "trials"
    root = trials / "cubes"
    names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
    stores = [n for n in names if n.startswith("cube-") and "." not in n]
    markers = [n for n in names if n.endswith(".done.json")]
    leftovers = [n for n in names if ".tmp-" in n]
    own = list(trials.glob("*/data/cube-*.npz"))
    builders = {json.loads((root / m).read_text())["pid"] for m in markers}
    log.info(
        "tune: %d trials (%d errors) in %.0f s; under %s: %d store(s), %d marker(s) by %d "
        "builder process(es), %d half-built, %d cubes of the trials' own",
        result.trials,
        result.errors,
        wall,
        root,
        len(stores),
        len(markers),
        len(builders),
        len(leftovers),
        len(own),
    )
    builds = len(builders) + len(leftovers) + len(own)
    ok = result.trials == 4 and result.errors == 0 and len(stores) == 1 and builds == 1
    log.info(verdict("cube builds in a 4-trial study", builds, ok, "== 1"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("throughput", "scaling", "training", "tune"):
        p = sub.add_parser(name)
        p.add_argument("--workdir", type=Path, default=None)
        p.add_argument("--grid", type=int, default=200)
        p.add_argument("--years", type=int, default=6)
        p.add_argument("--steps", type=int, default=20)
    rank = sub.add_parser("train-rank")
    rank.add_argument("overrides")
    rank.add_argument("out", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if args.command == "train-rank":
        train_rank(json.loads(args.overrides), args.out)
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ooc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.command == "throughput":
        throughput(work)
    elif args.command == "scaling":
        scaling(work, args.grid, args.years)
    elif args.command == "training":
        training(work, args.grid, args.years, args.steps)
    else:
        tune(work, args.grid, args.years)


if __name__ == "__main__":
    main()
