"""Do the dry run's projections predict? Preprocessing time and memory, and the epoch time.

Run: ``OMP_WAIT_POLICY=PASSIVE python benchmarks/drought_projection.py [--grids demo large]
[--large 200 6] [--epochs 2] [--workdir DIR]`` (``--epochs 0``: the preprocessing only)

For each grid, a daily NetCDF file and a drought config reading it with ``store: zarr``:

- ``demo``: the synthetic demo preset (50 x 50 cells, 1991-2020), written with
  :func:`hydrology.synthetic.write_netcdf`, and the demo config's model (regional means,
  a 3-member ensemble, validation every 30 steps on a 4 x 4 subsample).
- ``large``: an ERA5-Land-like ``N x N`` grid of ``Y`` years (default 200 x 200 x 6, about
  1.4 GB of float32), written year by year with the writer of
  ``benchmarks/drought_outofcore_memory.py``; the same model with 12 months of history.

then, each step in a fresh process (so that no step inherits another's memory):

1. the projection alone (:meth:`hydrology.task.DroughtForecast.preprocessing_projection`:
   a probe of a few blocks over the whole record on the configured dask engine);
2. the real preprocessing, ``twins preprocess CONFIG``, its wall time as the command
   reports it and the peak RSS of its process tree (itself and its dask workers, psutil,
   every 20 ms);
3. the training projection, :func:`twins.dryrun.dry_run` (the cube is built: no probe);
4. a real training of ``--epochs`` epochs, ``twins train``: the epoch time is the fit's
   wall time over its epochs (``summary.json``).

Prints projected / measured for the preprocessing time and peak memory and for the epoch
time; each should be within 0.8-1.25. Wall times on a shared machine are noisy: say so when
quoting them.
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
import time
from pathlib import Path
from typing import Any

import yaml
from drought_outofcore_memory import run_sampled, write_record  # the memory benchmark's

from hydrology.synthetic import generate, write_netcdf

log = logging.getLogger("drought_projection")

#: The demo config's model (hydrology/configs/demo.yaml) without its early stop, so that
#: every epoch runs its steps.
MODEL = {
    "regional": [6, 12],
    "hidden": 64,
    "dropout": 0.2,
    "hybrid": True,
    "model": "lstm",
    "subsample": 2,
    "val_subsample": 4,
    "members": 3,
    "skip": True,
}
TRAIN = {
    "max_steps_per_epoch": 300,
    "batch_size": 256,
    "val_every": 30,
    "grad_clip": 1.0,
    "optimizer": {"name": "adam", "lr": 1.0e-3},
}


def _large_splits(start: int, years: int) -> dict[str, list[str]]:
    end = start + years - 1
    return {
        "train": [f"{start}-01", f"{end - 2}-12"],
        "val": [f"{end - 1}-01", f"{end - 1}-12"],
        "test": [f"{end}-01", f"{end}-12"],
    }


def prepare(grid: str, work: Path, large: tuple[int, int]) -> Path:
    """The grid's data file and config; returns the config's path."""
    params: dict[str, Any] = dict(MODEL, store="zarr", cache_dir=str(work / "cubes"))
    if grid == "demo":
        path = work / "demo.nc"
        if not path.exists():
            write_netcdf(generate("demo"), path)
        params |= {
            "seq_len": 36,
            "splits": {
                "train": ["1991-01", "2010-12"],
                "val": ["2011-01", "2014-12"],
                "test": ["2015-01", "2020-12"],
            },
        }
    else:
        n, years = large
        path = work / f"daily_{n}x{n}_{years}y.nc"
        if not path.exists():
            t0 = time.perf_counter()
            write_record(path, n, years)
            log.info("wrote %s (%.0f s)", path, time.perf_counter() - t0)
        params |= {
            "seq_len": 12,
            "splits": _large_splits(1991, years),
            "require_val_drought": False,
        }
    params["path"] = str(path)
    cfg = {
        "name": f"projection-{grid}",
        "workdir": str(work / "runs"),
        "seed": 0,
        "task": {"target": "hydrology.task:DroughtForecast", "params": params},
        "train": dict(TRAIN, epochs=1),
        "tracking": {"enabled": False},
    }
    out = work / f"{grid}.yaml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def child(step: str, config: str) -> dict[str, Any]:
    """One step in this (fresh) process: ``project`` or ``dryrun``."""
    from twins.config import load_config
    from twins.dryrun import dry_run
    from twins.task import build_task

    cfg = load_config(config, [])
    if step == "project":
        p = build_task(cfg).preprocessing_projection()
        assert p is not None, "the config's task projects no preprocessing"
        return {
            "seconds": p.seconds,
            "peak": p.peak_bytes,
            "probe_s": p.probe_s,
            "phases": p.phases,
            "probed": p.probed,
        }
    report = dry_run(cfg, steps=10)
    return {"epoch_s": report.epoch_s, "steps": report.steps_per_epoch}


def _child_json(step: str, config: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", step, str(config)],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(grid: str, config: Path, epochs: int) -> dict[str, Any]:
    """Projection, real preprocessing, training projection, real training of ``grid``."""
    twins = [sys.executable, "-m", "twins", "-q"]
    proj = _child_json("project", config)
    log.info(
        "%s: projected %.1f s, %.0f MiB (%s); phases %s",
        grid,
        proj["seconds"],
        proj["peak"] / 2**20,
        proj["probed"],
        {k: round(v, 1) for k, v in proj["phases"].items()},
    )
    out, peak = run_sampled([*twins, "preprocess", str(config)])
    seconds = float(re.search(r" in ([0-9.]+) s:", out).group(1))  # type: ignore[union-attr]
    log.info("%s: preprocessed in %.1f s, peak %.0f MiB", grid, seconds, peak / 2**20)
    row = {
        "grid": grid,
        "pre_s": (proj["seconds"], seconds),
        "pre_peak_mib": (proj["peak"] / 2**20, peak / 2**20),
        "probe_s": proj["probe_s"],
    }
    if not epochs:
        return row
    dry = _child_json("dryrun", config)
    run_sampled([*twins, "train", str(config), f"train.epochs={epochs}"])
    cfg = yaml.safe_load(config.read_text())
    summary = json.loads((Path(cfg["workdir"]) / cfg["name"] / "summary.json").read_text())
    epoch_s = summary["fit_wall_s"] / summary["epochs"]
    log.info("%s: epoch projected %.1f s, measured %.1f s", grid, dry["epoch_s"], epoch_s)
    return row | {"epoch_s": (dry["epoch_s"], epoch_s)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grids", nargs="+", choices=["demo", "large"], default=["demo", "large"])
    ap.add_argument("--large", type=int, nargs=2, default=[200, 6], metavar=("N", "YEARS"))
    ap.add_argument("--epochs", type=int, default=2, help="0: no training, no epoch time")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        logging.basicConfig(level=logging.WARNING, force=True)
        print(json.dumps(child(*args.child)))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="drought-projection-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for grid in args.grids:
        config = prepare(grid, work, tuple(args.large))
        shutil.rmtree(work / "cubes", ignore_errors=True)  # the cubes of an earlier run
        rows.append(measure(grid, config, args.epochs))
    print(f"{'grid':6} {'quantity':22} {'projected':>10} {'measured':>10} {'ratio':>6}")
    for r in rows:
        for name, key, unit in (
            ("preprocessing time", "pre_s", "s"),
            ("preprocessing peak", "pre_peak_mib", "MiB"),
            ("epoch time", "epoch_s", "s"),
        ):
            if key not in r:
                continue
            p, m = r[key]
            print(f"{r['grid']:6} {name + ' [' + unit + ']':22} {p:10.1f} {m:10.1f} {p / m:6.2f}")
        print(f"{r['grid']:6} {'(probe took [s])':22} {r['probe_s']:10.1f}")


if __name__ == "__main__":
    main()
