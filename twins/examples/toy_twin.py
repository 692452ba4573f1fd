"""A twin of the toy series: the smallest complete twin loop, used by ``twins demo``.

The "system" is the toy AR process of :mod:`twins.examples.toy`, observed step
by step. The twin keeps a cursor (the last observed step), a trained one-step
forecaster, and per update writes the forecasts of the new steps, their skill
against persistence, and the forecast of the next step. ``simulate`` answers a
what-if (a scaled exogenous driver) without touching the twin.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from twins.config import RunConfig, config_hash, load_config, validate
from twins.domains import Domain
from twins.examples.toy import ToyParams, default_config, generate_series
from twins.task import build_task
from twins.twin import EXIT_NOTHING_NEW, TwinStore, format_status

log = logging.getLogger(__name__)

KIND = "toy"


def _load_model(twin: TwinStore) -> tuple[torch.nn.Module, RunConfig]:
    ckpt = torch.load(twin.product_path("model.pt"), map_location="cpu", weights_only=True)
    import yaml

    cfg = validate(yaml.safe_load(ckpt["config"]), str(twin.path / "model.pt"))
    model = build_task(cfg).build_model()
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, cfg


def _series(cfg: RunConfig, length: int, driver_scale: float = 1.0) -> tuple[np.ndarray, ...]:
    p = ToyParams.model_validate({**cfg.task.params, "length": length})
    if driver_scale != 1.0:
        p = p.model_copy(update={"driver": p.driver * driver_scale})
    return generate_series(p, cfg.seed)


def _forecast(
    model: torch.nn.Module, x: np.ndarray, u: np.ndarray, t0: int, t1: int, window: int
) -> np.ndarray:
    """One-step forecasts of ``x[t]`` for ``t`` in ``[t0, t1]`` (``t1`` may be one past data)."""
    rows = [np.concatenate([x[t - window : t], u[t - window : t]]) for t in range(t0, t1 + 1)]
    with torch.no_grad():
        return model(torch.from_numpy(np.stack(rows))).numpy()[:, 0]


def init_twin(twin_dir: Path, run_dir: Path) -> TwinStore:
    """Create a toy twin from a finished training run (its ``model.pt``)."""
    model_file = run_dir / "model.pt"
    ckpt = torch.load(model_file, map_location="cpu", weights_only=True)
    import yaml

    cfg = validate(yaml.safe_load(ckpt["config"]), str(model_file))
    cursor = int(cfg.task.params["length"]) - 1

    def products(d: Path) -> None:
        (d / "model.pt").write_bytes(model_file.read_bytes())

    return TwinStore.init(
        twin_dir,
        KIND,
        model_ref=str(model_file.resolve()),
        cursor=str(cursor),
        config_hash=config_hash(cfg),
        products=products,
    )


def update_twin(twin_dir: Path, steps: int, wait: bool | float = False) -> dict[str, Any]:
    """Observe ``steps`` new steps, score the forecasts of them, forecast the next one.

    Returns:
        The update's summary (``{"noop": True}`` when these steps were already ingested).
    """
    twin = TwinStore.open(twin_dir, kind=KIND)
    model, cfg = _load_model(twin)
    cursor = int(twin.state.cursor or 0)
    x, u = _series(cfg, cursor + steps + 1)
    new = x[cursor + 1 :]
    key = f"toy:{cursor + 1}-{cursor + steps}:" + hashlib.sha256(new.tobytes()).hexdigest()[:12]
    w = int(cfg.task.params["window"])
    with twin.transaction(key, wait=wait) as txn:
        if txn.noop:
            log.info("nothing new: steps %d-%d already ingested", cursor + 1, cursor + steps)
            return {"noop": True}
        pred = _forecast(model, x, u, cursor + 1, cursor + steps + 1, w)
        mse = float(np.mean((pred[:-1] - new) ** 2)) if steps else float("nan")
        persistence = float(np.mean((x[cursor:-1] - new) ** 2))
        record = {
            "first": cursor + 1,
            "last": cursor + steps,
            "mse": mse,
            "persistence_mse": persistence,
            "next_forecast": float(pred[-1]),
        }
        (txn.products_dir / "forecast.json").write_text(
            json.dumps({**record, "forecasts": pred[:-1].tolist(), "observed": new.tolist()})
        )
        txn.update_state(cursor=str(cursor + steps))
        txn.summary.update(record)
    log.info(
        "twin %s: observed steps %d-%d, forecast MSE %.4g (persistence %.4g)",
        twin_dir,
        cursor + 1,
        cursor + steps,
        mse,
        persistence,
    )
    return record


def simulate_twin(twin_dir: Path, steps: int, driver_scale: float) -> dict[str, Any]:
    """What-if: forecast the next ``steps`` steps with the driver scaled; the twin is unchanged.

    Returns:
        Mean forecast with and without the scenario and their difference.
    """
    twin = TwinStore.open(twin_dir, kind=KIND)
    model, cfg = _load_model(twin)
    cursor = int(twin.state.cursor or 0)
    w = int(cfg.task.params["window"])
    out = {}
    for name, scale in (("baseline", 1.0), ("scenario", driver_scale)):
        x, u = _series(cfg, cursor + steps + 1, scale)
        out[name] = float(_forecast(model, x, u, cursor + 1, cursor + steps, w).mean())
    out["difference"] = out["scenario"] - out["baseline"]
    return out


def twin_command(cmd: str, twin_dir: Path, args: list[str]) -> int:
    """``twins twin update|simulate|status DIR [--steps N] [--driver-scale F] [--wait]``."""
    if cmd == "status":
        print(format_status(TwinStore.open(twin_dir, kind=KIND)))
        return 0
    ap = argparse.ArgumentParser(prog=f"twins twin {cmd} {twin_dir}")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--driver-scale", type=float, default=1.5)
    ap.add_argument("--wait", action="store_true")
    ns = ap.parse_args(args)
    if cmd == "update":
        result = update_twin(twin_dir, ns.steps, wait=ns.wait)
        print(json.dumps(result))
        return EXIT_NOTHING_NEW if result.get("noop") else 0
    else:
        print(json.dumps(simulate_twin(twin_dir, ns.steps, ns.driver_scale)))
    return 0


def demo(workdir: Path, overrides: list[str]) -> int:
    """Dry run, train, register, build a twin, update it twice, simulate a what-if."""
    from twins.dryrun import dry_run
    from twins.train.run import train_process

    workdir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(None, [f"workdir={workdir}", *overrides], base=default_config())
    log.info("dry run:\n%s", dry_run(cfg, config_path="<demo>").render())
    summary = train_process(cfg)
    log.info(
        "trained: test loss %.4g (noise floor %.4g, persistence %.4g), model version %s",
        summary["test_loss"],
        summary["test_metrics"]["test_noise_floor_mse"],
        summary["test_metrics"]["test_persistence_mse"],
        summary.get("model_version"),
    )
    twin_dir = workdir / "twin"
    if TwinStore.is_twin(twin_dir):
        import shutil

        shutil.rmtree(twin_dir)
    init_twin(twin_dir, cfg.run_dir)
    update_twin(twin_dir, 40)
    update_twin(twin_dir, 40)
    log.info("what-if (driver x1.5): %s", simulate_twin(twin_dir, 20, 1.5))
    print(format_status(TwinStore.open(twin_dir)))
    print(f"MLflow: mlflow ui --backend-store-uri sqlite:///{(workdir / 'mlflow.db').resolve()}")
    return 0


DOMAIN = Domain(
    name=KIND,
    description="toy AR series: the smallest complete twin loop (core demo)",
    demo=demo,
    twin_command=twin_command,
)
