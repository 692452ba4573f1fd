"""Ray Tune overhead per trial: N identical short toy trials via Tune vs a plain loop.

Both sides train the same config N times with the core trainer (:func:`train_process`),
tracking off, in one process for the loop and as Tune trials (1 CPU each, actors reused,
FIFO, ``--concurrent`` at once) for the study. Reported: wall time of each, the study's
time in ``Tuner.fit`` alone, and the ratios (whole study / loop, fit / loop) and the
overhead per trial. A script, not a timed test::

    OMP_WAIT_POLICY=PASSIVE RAY_AUTH_MODE=disabled RAY_AIR_NEW_OUTPUT=0 \\
        python benchmarks/bench_tune_overhead.py [--trials 8] [--epochs 3] [--concurrent 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

for _k, _v in {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_AUTH_MODE": "disabled",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}.items():
    os.environ.setdefault(_k, _v)

log = logging.getLogger("twins.bench")

BASE = {
    "name": "bench",
    "task": {"target": "twins.examples.toy:ToyRegression", "params": {"length": 300}},
    "train": {"epochs": 3, "batch_size": 32, "progress": False},
    "distributed": {"backend": "local"},
    "tracking": {"enabled": False},
}


def run_loop(workdir: Path, trials: int, epochs: int, length: int) -> float:
    """Wall time of ``trials`` ``train_process`` calls in this process."""
    import torch

    from twins.config import load_config
    from twins.train.run import train_process

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    for i in range(trials):
        cfg = load_config(
            None,
            [f"workdir={workdir}", f"name=loop_{i}", f"train.epochs={epochs}"],
            base={**BASE, "task": {**BASE["task"], "params": {"length": length}}},
        )
        train_process(cfg, progress=False)
    return time.perf_counter() - t0


def run_tune(workdir: Path, trials: int, epochs: int, length: int, concurrent: int) -> dict:
    """Wall times of the same trials as a Tune study (whole, and ``Tuner.fit`` alone)."""
    from ray import tune

    from twins.tune.space import split_study
    from twins.tune.study import run_study

    data = {
        **BASE,
        "workdir": str(workdir),
        "task": {**BASE["task"], "params": {"length": length}},
        "train": {**BASE["train"], "epochs": epochs},
        "tune": {
            "num_samples": trials,
            "max_concurrent": concurrent,
            "scheduler": {"name": "fifo"},
            "space": {"train.optimizer.lr": {"dist": "choice", "values": [1e-3]}},
        },
    }
    cfg, tune_cfg = split_study(data, "<bench>")
    fit_s: list[float] = []
    original = tune.Tuner.fit

    def timed_fit(self: tune.Tuner) -> object:
        t = time.perf_counter()
        try:
            return original(self)
        finally:
            fit_s.append(time.perf_counter() - t)

    tune.Tuner.fit = timed_fit  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        result = run_study(cfg, tune_cfg, num_cpus=2)
        total = time.perf_counter() - t0
    finally:
        tune.Tuner.fit = original  # type: ignore[method-assign]
    assert result.trials == trials and result.errors == 0
    return {"total_s": total, "fit_s": fit_s[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--length", type=int, default=300, help="toy series length")
    p.add_argument("--concurrent", type=int, default=1, help="Tune trials at once")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        loop_s = run_loop(Path(tmp) / "loop", args.trials, args.epochs, args.length)
        tuned = run_tune(
            Path(tmp) / "tune", args.trials, args.epochs, args.length, args.concurrent
        )
    out = {
        "trials": args.trials,
        "epochs": args.epochs,
        "concurrent": args.concurrent,
        "loop_s": round(loop_s, 2),
        "tune_total_s": round(tuned["total_s"], 2),
        "tune_fit_s": round(tuned["fit_s"], 2),
        "ratio_total": round(tuned["total_s"] / loop_s, 2),
        "ratio_fit": round(tuned["fit_s"] / loop_s, 2),
        "overhead_per_trial_s": round((tuned["fit_s"] - loop_s) / args.trials, 3),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
