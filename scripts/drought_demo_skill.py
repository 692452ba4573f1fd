"""Train the hybrid drought LSTM on the demo preset and print its skill beside the baselines.

Run: ``OMP_WAIT_POLICY=PASSIVE python scripts/drought_demo_skill.py [--workdir DIR]
[--figures DIR] [overrides ...]`` (overrides as for ``twins train``, e.g. ``seed=1``).

Trains ``hydrology/configs/demo.yaml`` through :func:`twins.train.run.train_process` (tracking
off), then scores the saved model on the test period (2015-2020) beside persistence,
climatology and the overlap-aware analogue, and checks the acceptance bars of
``reference/feasibility-hydrology.md``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import pandas as pd
import torch

from hydrology.evaluate import acceptance, headline
from hydrology.models.ensemble import load_selected
from twins.config import load_config
from twins.task import build_task
from twins.train.run import train_process

log = logging.getLogger("drought_demo_skill")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--workdir", default="runs")
    ap.add_argument("--figures", default=None, help="directory for PNG figures")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", force=True)
    config = Path(__file__).resolve().parents[1] / "hydrology" / "configs" / "demo.yaml"
    cfg = load_config(
        config, [f"workdir={args.workdir}", "tracking.enabled=false", *args.overrides]
    )
    t0 = time.perf_counter()
    task = build_task(cfg)
    task.cube()
    t_prep = time.perf_counter() - t0
    (cfg.run_dir / "skill_test.csv").unlink(missing_ok=True)
    summary = train_process(cfg, progress=False)
    t_train = time.perf_counter() - t0 - t_prep
    t1 = time.perf_counter()
    saved = cfg.run_dir / "skill_test.csv"
    if args.figures is None and saved.is_file():
        # train_process already scored the saved model on the test period (task.evaluate)
        table = pd.read_csv(saved)
    else:
        model = task.build_model()
        state = torch.load(cfg.run_dir / "model.pt", weights_only=True)["model"]
        load_selected(model, state)
        table = task.skill_table(model, "test", args.figures)
    t_eval = time.perf_counter() - t1
    pd.set_option("display.width", 160)
    pd.set_option("display.max_rows", 200)
    print(headline(table).round(3).to_string())
    print("\nacceptance (relative RMSE change, or value) vs bar:")
    for name, (val, bar, ok) in acceptance(table).items():
        print(f"  {name:34s} {val:+.3f}  bar {bar:+.3f}  {'MET' if ok else 'NOT MET'}")
    print(
        f"\ntimings: data prep {t_prep:.1f} s, train_process {t_train:.1f} s "
        f"(fit {summary['fit_wall_s']:.1f} s, {summary['steps']} steps), "
        f"evaluation {t_eval:.1f} s (test scoring inside train_process unless --figures)"
    )


if __name__ == "__main__":
    main()
