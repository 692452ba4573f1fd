"""Skill of the drought forecaster on observed precipitation: GPCC Africa, SPI-3, leads 1-3.

GPCC Full Data Reanalysis V2018 (2.5 deg, Africa, monthly totals 1946-2016, precipitation
only; ``data/hydrology``), as ``hydrology/configs/gpcc.yaml`` trains on it: calibration of
the indices and training 1951-1995, validation (model selection) 1996-2005, test
2006-2015. For every training seed the hybrid LSTM is trained through the core trainer and
scored on the test years beside persistence, climatology and the overlap-aware analogue
(ESP): median RMSE over land cells and pooled CSI at SPI < -1, per lead; the model's
figures are the mean +- std over the seeds. Maps of the model's RMSE gain over ESP (seed
mean, per cell) are written as PNG, and the bars of issue 10 are checked:

* lead 1: model RMSE at least 25 % below persistence;
* leads 1 and 2: no worse than ESP (3-seed mean at most +1 %);
* lead 3: no worse than climatology.

A script, not a test (5-15 min per seed on 2 shared cores)::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/drought_gpcc_skill.py --workdir runs/gpcc
    OMP_WAIT_POLICY=PASSIVE python benchmarks/drought_gpcc_skill.py --targets spi_1 spi_3 spi_6

``--targets`` trains one model on several SPI windows (the bars concern ``spi_3``);
further arguments are config overrides as for ``twins train`` (e.g.
``task.params.seq_len=12``). ``--split val`` scores the validation years instead (what the
configuration was tuned on; the test years never were); ``--rescore`` scores the models a
previous run left in ``--workdir`` instead of training them again. Results go to
``--out`` (default ``<workdir>/gpcc-report-<split>``): ``skill.csv`` (every seed, lead and
method), ``summary.json`` (the table and the bars) and ``gain_<target>_l<lead>.png``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from hydrology.dataset import DroughtCube
from hydrology.evaluate import issue_months, predict, verification_forecasts
from hydrology.metrics import pod_far_csi, rmse
from hydrology.models.ensemble import load_selected
from hydrology.plots import skill_map
from twins.config import load_config
from twins.task import build_task
from twins.train.run import train_process

log = logging.getLogger("drought_gpcc_skill")

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "hydrology" / "configs" / "gpcc.yaml"
DATA = ROOT / "data" / "hydrology" / "gpcc_v2018_2.5deg_africa_monthly_1946-2016.nc"
BASELINES = ("persistence", "climatology", "analogue")


def _config(workdir: Path, seed: int, targets: list[str], overrides: list[str]) -> Any:
    return load_config(
        CONFIG,
        [
            f"workdir={workdir}",
            f"name=gpcc-{'-'.join(targets)}-seed{seed}",
            f"seed={seed}",
            "tracking.enabled=false",
            f"task.params.path={DATA}",
            f"task.params.targets=[{','.join(targets)}]",
            *overrides,
        ],
    )


def _scores(
    cube: DroughtCube, pred: np.ndarray | None, issue: np.ndarray, split: str
) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
    """``{target: {method: {lead: {"rmse": median, "csi": pooled, "cell_rmse": (cell,)}}}}``."""
    _, fc = verification_forecasts(cube, pred, issue, split)
    out: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for tgt, d in fc.items():
        obs = d["obs"][0]
        out[tgt] = {}
        for method, by_lead in d.items():
            if method == "obs":
                continue
            out[tgt][method] = {}
            for k, sim in by_lead.items():
                cell = np.asarray(rmse(obs, sim))
                csi = pod_far_csi(obs, sim, -1.0, pooled=True)["csi"]
                out[tgt][method][k] = {
                    "rmse": float(np.nanmedian(cell)),
                    "csi": float(csi),
                    "cell_rmse": cell,
                }
    return out


def train_seeds(
    workdir: Path,
    seeds: list[int],
    targets: list[str],
    overrides: list[str],
    split: str,
    rescore: bool = False,
) -> tuple[DroughtCube, list[dict], dict[str, float]]:
    """Train one model per seed and score it (and the baselines) on ``split``.

    With ``rescore`` a seed whose run directory already holds ``model.pt`` is scored
    without training again.

    Returns:
        ``(cube, per-seed scores, timings)``; scores as :func:`_scores`.
    """
    runs, timings = [], {}
    cube: DroughtCube | None = None
    first = workdir
    for seed in seeds:
        cfg = _config(workdir, seed, targets, overrides)
        t0 = time.perf_counter()
        if runs:  # the cube does not depend on the seed: reuse the first run's cache
            (cfg.run_dir / "data").mkdir(parents=True, exist_ok=True)
            for f in (first / "data").glob("cube-*.npz"):
                shutil.copyfile(f, cfg.run_dir / "data" / f.name)
        else:
            first = cfg.run_dir
        task = build_task(cfg)
        cube = task.cube()
        timings[f"seed{seed}_prep_s"] = time.perf_counter() - t0
        if not (rescore and (cfg.run_dir / "model.pt").is_file()):
            (cfg.run_dir / "skill_test.csv").unlink(missing_ok=True)
            summary = train_process(cfg, progress=False)
            fit = time.perf_counter() - t0 - timings[f"seed{seed}_prep_s"]
            timings[f"seed{seed}_train_s"] = fit
            timings[f"seed{seed}_fit_s"] = float(summary["fit_wall_s"])
            timings[f"seed{seed}_steps"] = float(summary["steps"])
        state = torch.load(cfg.run_dir / "model.pt", weights_only=True)["model"]
        model = load_selected(task.build_model(), state)
        issue = issue_months(cube, split, task.params.seq_len)
        pred = predict(model, cube, issue, task.params.seq_len, task.params.model)
        runs.append(_scores(cube, pred, issue, split))
        log.info("seed %d done (%.0f s)", seed, time.perf_counter() - t0)
    assert cube is not None
    return cube, runs, timings


def table(runs: list[dict]) -> pd.DataFrame:
    """Rows per target, lead and method: median RMSE and pooled CSI@-1, mean and std over
    seeds (the baselines do not depend on the seed)."""
    rows = []
    for tgt, methods in runs[0].items():
        for method, by_lead in methods.items():
            for k in by_lead:
                r = np.array([run[tgt][method][k]["rmse"] for run in runs])
                c = np.array([run[tgt][method][k]["csi"] for run in runs])
                rows.append(
                    {
                        "target": tgt,
                        "lead": k,
                        "method": method,
                        "rmse": r.mean(),
                        "rmse_std": r.std(ddof=1) if r.size > 1 else 0.0,
                        "csi@-1": c.mean(),
                        "csi_std": c.std(ddof=1) if c.size > 1 else 0.0,
                        "seeds": r.size,
                    }
                )
    return pd.DataFrame(rows).sort_values(["target", "lead", "method"], ignore_index=True)


def check_bars(tab: pd.DataFrame, target: str = "spi_3") -> list[dict[str, Any]]:
    """The bars of issue 10 on the seed-mean median RMSE: ``[{name, value, bar, met}]``."""

    def v(lead: int, method: str) -> float:
        sel = tab[(tab.target == target) & (tab.lead == lead) & (tab.method == method)]
        return float(sel["rmse"].iloc[0]) if len(sel) else float("nan")

    out = []
    for name, lead, ref, bar in (
        ("lead 1 vs persistence", 1, "persistence", -0.25),
        ("lead 1 vs ESP", 1, "analogue", 0.01),
        ("lead 2 vs ESP", 2, "analogue", 0.01),
        ("lead 3 vs climatology", 3, "climatology", 0.0),
    ):
        rel = v(lead, "model") / v(lead, ref) - 1
        out.append({"name": f"{target} {name}", "value": rel, "bar": bar, "met": bool(rel <= bar)})
    return out


def gain_maps(cube: DroughtCube, runs: list[dict], out_dir: Path) -> list[Path]:
    """Seed-mean per-cell RMSE of the model minus that of ESP (negative: the model is
    better), one PNG per SPI target and lead."""
    paths = []
    for tgt, methods in runs[0].items():
        if "analogue" not in methods:
            continue
        for k in methods["model"]:
            model = np.mean([run[tgt]["model"][k]["cell_rmse"] for run in runs], axis=0)
            gain = model - methods["analogue"][k]["cell_rmse"]
            da = xr.DataArray(
                cube.grid(gain.astype(np.float32)),
                dims=("lat", "lon"),
                coords={"lat": cube.lat, "lon": cube.lon},
            )
            share = float(np.mean(gain[np.isfinite(gain)] < 0))
            fig = skill_map(
                da,
                f"{tgt} lead {k}: RMSE model - ESP, mean of {len(runs)} seeds\n"
                f"blue: model better ({share:.0%} of cells)",
                vmin=-0.1,
                vmax=0.1,
                cmap="RdBu_r",
            )
            path = out_dir / f"gain_{tgt}_l{k}.png"
            fig.savefig(path, dpi=90)
            paths.append(path)
    return paths


def report(
    cube: DroughtCube, runs: list[dict], timings: dict[str, float], split: str, out_dir: Path
) -> dict[str, Any]:
    """Write ``skill.csv``, ``summary.json`` and the gain maps; return the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [
        {"seed": i, "target": t, "method": m, "lead": k, "rmse": s["rmse"], "csi@-1": s["csi"]}
        for i, run in enumerate(runs)
        for t, ms in run.items()
        for m, ls in ms.items()
        for k, s in ls.items()
    ]
    pd.DataFrame(rows).to_csv(out_dir / "skill.csv", index=False)
    tab = table(runs)
    bars = check_bars(tab) if "spi_3" in runs[0] else []
    figures = gain_maps(cube, runs, out_dir)
    summary = {
        "split": split,
        "period": cube.meta["splits"][split],
        "cells": int(cube.cells.size),
        "table": tab.to_dict(orient="records"),
        "bars": bars,
        "timings_s": timings,
        "figures": [str(p) for p in figures],
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", default="runs/gpcc", type=Path)
    ap.add_argument("--out", default=None, type=Path, help="report directory")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--targets", nargs="+", default=["spi_3"])
    ap.add_argument("--split", choices=["val", "test"], default="test")
    ap.add_argument("--rescore", action="store_true", help="score the models already in --workdir")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else []
    cube, runs, timings = train_seeds(
        args.workdir, args.seeds, args.targets, args.overrides, args.split, args.rescore
    )
    out = args.out or args.workdir / f"gpcc-report-{args.split}"
    summary = report(cube, runs, timings, args.split, out)
    tab = pd.DataFrame(summary["table"])
    pd.set_option("display.width", 160)
    print(f"GPCC Africa, {cube.cells.size} land cells, {args.split} {summary['period']}")
    print(tab.drop(columns="seeds").round(4).to_string(index=False))
    for b in summary["bars"]:
        verdict = "MET" if b["met"] else "NOT MET"
        print(f"  {b['name']:34s} {b['value']:+.2%}  bar {b['bar']:+.0%}  {verdict}")
    print(
        f"load average before the runs: {' '.join(load)}; timings (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())
    )
    print(f"report: {out}")


if __name__ == "__main__":
    main()
