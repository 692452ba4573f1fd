"""How much SPI-3 skill over the analogue (ESP) baseline is there to win on a synthetic preset?

Run: ``OMP_WAIT_POLICY=PASSIVE python scripts/drought_skill_ceiling.py [--workdir DIR]
[overrides ...]`` (overrides as for ``twins train``, e.g. ``task.params.preset=tiny``).

Builds (or reuses) the drought model's sample cube for ``hydrology/configs/demo.yaml`` and
prints, per split and lead, median RMSE across cells relative to ESP for:

* **recalibrated ESP**: ``a + b * ESP`` fitted on the split itself (what a bias shift of
  that period alone is worth; unknowable from training years);
* **oracle**: ``a + b * ESP + c * future forcing + d * current forcing``, with the
  generator's true drought forcing, fitted on the split itself: a ceiling, not a method;
* **ridge, train-fitted**: ``ESP`` plus local (SPI-3, SSMI at the issue month) and regional
  observables (Gaussian-smoothed SPI-3 / SSMI maps, sigma 6 and 12 cells, and their 6-month
  means) fitted on the training years, scored out of sample.

It also prints the share of land cell-months in drought per split (the generator's mask).

These numbers are the "why" beside the demo's acceptance table: the model cannot gain more
over ESP than the forcing leaves to gain, and the in-sample terms are upper bounds.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from hydrology.dataset import DroughtCube
from hydrology.synthetic import PRESETS, generate
from twins.config import load_config
from twins.task import build_task

log = logging.getLogger("drought_skill_ceiling")


def regional(cube: DroughtCube, values: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian-weighted mean over land of a ``(cell, time)`` field; same shape back."""
    ny, nx = cube.shape
    nt = values.shape[1]
    grid = np.zeros((nt, ny * nx))
    land = np.zeros((nt, ny * nx))
    grid[:, cube.cells] = np.nan_to_num(values.T)
    land[:, cube.cells] = np.isfinite(values.T)
    num = gaussian_filter(grid.reshape(nt, ny, nx), (0, sigma, sigma), mode="constant")
    den = gaussian_filter(land.reshape(nt, ny, nx), (0, sigma, sigma), mode="constant")
    return (num / np.maximum(den, 1e-9)).reshape(nt, -1)[:, cube.cells].T


def trailing_mean(values: np.ndarray, months: int) -> np.ndarray:
    """Mean over the last ``months`` months (issue month included) of ``(cell, time)``."""
    out = np.full_like(values, np.nan)
    c = np.cumsum(np.nan_to_num(values), axis=1)
    c = np.concatenate([np.zeros((values.shape[0], 1)), c], axis=1)
    out[:, months - 1 :] = (c[:, months:] - c[:, :-months]) / months
    return out


def median_rmse(pred: np.ndarray, obs: np.ndarray) -> float:
    """Median over cells of the RMSE over time, ``(cell, time)`` inputs."""
    return float(np.nanmedian(np.sqrt(np.nanmean((pred - obs) ** 2, axis=1))))


def lstsq(x: np.ndarray, y: np.ndarray, ridge: float = 0.0) -> np.ndarray:
    """Least squares (optionally ridge) over the finite rows of ``x (..., p)``, ``y (...)``."""
    ok = np.isfinite(y) & np.isfinite(x).all(-1)
    a, b = x[ok], y[ok]
    return np.linalg.solve(a.T @ a + ridge * np.eye(a.shape[1]), a.T @ b)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workdir", default="runs")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    config = Path(__file__).resolve().parents[1] / "hydrology" / "configs" / "demo.yaml"
    cfg = load_config(
        config, [f"workdir={args.workdir}", "tracking.enabled=false", *args.overrides]
    )
    task = build_task(cfg)
    p = task.params
    if p.path:
        raise SystemExit("the ceiling needs the synthetic generator's true forcing (no path=)")
    cube = task.cube()
    ds = generate(PRESETS[p.preset].model_copy(update={"seed": p.seed}))
    nt = cube.times.size
    forcing = ds["drought_forcing"].resample(time="MS").mean().values.reshape(nt, -1)
    forcing = forcing[:, cube.cells].T  # (cell, time)
    if "spi_3" not in cube.targets:
        raise SystemExit("the ceiling is computed for spi_3")
    i_spi = cube.targets.index("spi_3")
    obs = {name: cube.obs[:, :, j] for j, name in enumerate(cube.targets)}
    feats = list(obs.values())
    for sigma in (6, 12):
        for v in obs.values():
            r = regional(cube, v, sigma)
            feats += [r, trailing_mean(r, 6)]
    n_lead = len(cube.leads)
    train = cube.split_range("train")
    shares = []
    for split in ("train", "val", "test"):
        a, b = cube.split_range(split)
        shares.append(f"{split} {cube.drought_share[a : b + 1].mean():.1%}")
    log.info("drought cell-months (true drought mask): %s", ", ".join(shares))
    for split in ("val", "test"):
        a, b = cube.split_range(split)
        for j, k in enumerate(cube.leads):
            o = i_spi * n_lead + j

            def issues(lo: int, hi: int, k: int = k) -> np.ndarray:
                return np.arange(max(lo - k, 12), hi - k + 1)

            ts = issues(a, b)
            y, esp = cube.target[:, ts, o], cube.baseline[:, ts, o]
            one = np.ones_like(esp)
            future = np.mean([forcing[:, ts + d] for d in range(1, k + 1)], axis=0)
            x_cal = np.stack([one, esp], -1)
            x_orc = np.stack([one, esp, future, forcing[:, ts]], -1)
            cal = x_cal @ lstsq(x_cal, y)
            orc = x_orc @ lstsq(x_orc, y)

            def x_ridge(t: np.ndarray, o: int = o) -> np.ndarray:
                cols = [np.ones((cube.cells.size, t.size)), cube.baseline[:, t, o]]
                return np.nan_to_num(np.stack(cols + [f[:, t] for f in feats], -1))

            tt = issues(*train)
            coef = lstsq(x_ridge(tt), cube.target[:, tt, o], ridge=1.0)
            rid = x_ridge(ts) @ coef
            base = median_rmse(esp, y)
            rows = {
                "recalibrated ESP (in-sample)": cal,
                "oracle (in-sample)": orc,
                "ridge, train-fitted": rid,
            }
            parts = [f"{name} {median_rmse(v, y) / base - 1:+.1%}" for name, v in rows.items()]
            log.info("%s spi_3 lead %d: ESP %.3f | %s", split, k, base, " | ".join(parts))


if __name__ == "__main__":
    main()
