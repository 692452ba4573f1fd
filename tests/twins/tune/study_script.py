"""Run a toy study in its own process (the resume test SIGKILLs it).

Usage: ``python study_script.py WORKDIR [--slow-from K]``. With ``--slow-from K``, trials
with index >= K sleep a long time before training, so the test can kill the study while
trial 0 is finished and the others are not.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Any

import twins.tune.study as study
from twins.tune.space import load_study

SPACE = Path(__file__).resolve().parents[3] / "twins" / "tune" / "spaces" / "toy.yaml"
OVERRIDES = ["task.params.length=300", "train.epochs=3", "tune.max_concurrent=1"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdir")
    parser.add_argument("--slow-from", type=int, default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.slow_from is not None:
        original = study.make_trainable
        slow_from = args.slow_from

        def slow_make(*a: Any, **k: Any) -> Any:
            inner = original(*a, **k)

            def trial(config: dict[str, Any]) -> None:
                from ray import tune

                if int(tune.get_context().get_trial_id().rsplit("_", 1)[1]) >= slow_from:
                    time.sleep(300)
                inner(config)

            return trial

        study.make_trainable = slow_make
    cfg, tune_cfg = load_study(SPACE, [f"workdir={args.workdir}", *OVERRIDES])
    study.run_study(cfg, tune_cfg, num_cpus=2)


if __name__ == "__main__":
    main()
