"""A twin of the toy series: the smallest complete twin loop, used by ``twins demo``.

The "system" is the toy AR process of :mod:`twins.examples.toy`, observed step
by step. The twin keeps a cursor (the last observed step), a trained one-step
forecaster, and per update writes the forecasts of the new steps, their skill
against persistence, and the forecast of the next step. ``simulate`` answers a
what-if (a scaled exogenous driver) without touching the twin. :class:`ToyTwin` is the
smallest implementation of the twin contract (:class:`twins.twin.Twin`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field

from twins.config import RunConfig, config_hash, load_config, validate
from twins.domains import Domain
from twins.errors import ConfigError
from twins.examples.toy import ToyParams, default_config, generate_series
from twins.task import build_task
from twins.twin import (
    SimulationResult,
    Twin,
    TwinStore,
    UpdateRecord,
    UpdateResult,
)

log = logging.getLogger(__name__)

KIND = "toy"


def _load_model(twin: TwinStore) -> tuple[torch.nn.Module, RunConfig]:
    ckpt = torch.load(twin.product_path("model.pt"), map_location="cpu", weights_only=True)
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


class ToyInit(BaseModel):
    """``twins twin init DIR --kind toy --run RUN_DIR``."""

    model_config = ConfigDict(extra="forbid")

    run: Path = Field(description="finished training run directory (holds model.pt)")


class ToyUpdateOptions(BaseModel):
    """``twins twin update DIR --steps N``: observe N new steps of the series."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(50, ge=1, description="new steps to observe")


class ToyScenario(BaseModel):
    """What-if: the exogenous driver scaled by ``driver_scale`` over the next ``steps``."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(50, ge=1, description="steps to forecast")
    driver_scale: float = Field(1.5, description="factor on the exogenous driver")


class ToyUpdate(UpdateResult):
    """One update: the steps observed and the skill of their forecasts.

    Attributes:
        first: First step observed.
        last: Last step observed.
        mse: Mean squared error of the one-step forecasts of the new steps.
        persistence_mse: The same for persistence.
        next_forecast: Forecast of the step after ``last``.
    """

    first: int
    last: int
    mse: float
    persistence_mse: float
    next_forecast: float


class ToySimulation(SimulationResult):
    """Mean forecast with and without the scenario, and their difference."""

    baseline: float
    scenario_mean: float
    difference: float


class ToyTwin(Twin):
    """The toy twin (see the module docstring)."""

    kind = KIND
    InitOptions = ToyInit
    UpdateOptions = ToyUpdateOptions
    Scenario = ToyScenario
    update_needs_data = False

    @classmethod
    def create(cls, path: str | os.PathLike[str], options: BaseModel) -> ToyTwin:
        """Create a toy twin from a finished training run (its ``model.pt``)."""
        opts = ToyInit.model_validate(options.model_dump())
        model_file = opts.run / "model.pt"
        if not model_file.is_file():
            raise ConfigError(f"--run {opts.run}: no model.pt there (is it a finished run?)")
        ckpt = torch.load(model_file, map_location="cpu", weights_only=True)
        cfg = validate(yaml.safe_load(ckpt["config"]), str(model_file))
        cursor = int(cfg.task.params["length"]) - 1

        def products(d: Path) -> None:
            (d / "model.pt").write_bytes(model_file.read_bytes())

        store = TwinStore.init(
            path,
            KIND,
            model_ref=str(model_file.resolve()),
            cursor=str(cursor),
            config_hash=config_hash(cfg),
            products=products,
        )
        return cls(store)

    def update(
        self,
        data: Sequence[Path] = (),
        options: BaseModel | None = None,
        *,
        wait: bool | float = False,
    ) -> ToyUpdate:
        """Observe new steps, score the forecasts of them, forecast the next one.

        Args:
            data: Unused (the toy observes its generator); must be empty.
            options: :class:`ToyUpdateOptions`.
            wait: As in :meth:`twins.twin.contract.Twin.update`.
        """
        if data:
            raise ConfigError("the toy twin observes its generator: give --steps, not --data")
        steps = ToyUpdateOptions.model_validate((options or ToyUpdateOptions()).model_dump()).steps
        model, cfg = _load_model(self.store)
        cursor = int(self.store.state.cursor or 0)
        x, u = _series(cfg, cursor + steps + 1)
        new = x[cursor + 1 :]
        digest = hashlib.sha256(new.tobytes()).hexdigest()[:12]
        key = f"toy:{cursor + 1}-{cursor + steps}:{digest}"
        w = int(cfg.task.params["window"])
        with self.store.transaction(key, wait=wait) as txn:
            if txn.noop:
                assert txn.record is not None
                log.info("nothing new: steps %d-%d already ingested", cursor + 1, cursor + steps)
                return self._result(txn.record, noop=True)
            pred = _forecast(model, x, u, cursor + 1, cursor + steps + 1, w)
            record = {
                "first": cursor + 1,
                "last": cursor + steps,
                "mse": float(np.mean((pred[:-1] - new) ** 2)),
                "persistence_mse": float(np.mean((x[cursor:-1] - new) ** 2)),
                "next_forecast": float(pred[-1]),
            }
            (txn.products_dir / "forecast.json").write_text(
                json.dumps({**record, "forecasts": pred[:-1].tolist(), "observed": new.tolist()})
            )
            txn.update_state(cursor=str(cursor + steps))
            txn.summary.update(record)
        assert txn.record is not None
        log.info(
            "twin %s: observed steps %d-%d, forecast MSE %.4g (persistence %.4g)",
            self.path,
            cursor + 1,
            cursor + steps,
            record["mse"],
            record["persistence_mse"],
        )
        return self._result(txn.record, noop=False)

    def _result(self, record: UpdateRecord, noop: bool) -> ToyUpdate:
        s = record.summary
        return ToyUpdate(
            **UpdateResult.core_fields(record, noop),
            first=int(s["first"]),
            last=int(s["last"]),
            mse=float(s["mse"]),
            persistence_mse=float(s["persistence_mse"]),
            next_forecast=float(s["next_forecast"]),
        )

    def simulate(self, scenario: BaseModel) -> ToySimulation:
        """Forecast the next steps with the driver scaled; the twin is unchanged."""
        sc = ToyScenario.model_validate(scenario.model_dump())
        model, cfg = _load_model(self.store)
        cursor = int(self.store.state.cursor or 0)
        w = int(cfg.task.params["window"])
        means = []
        for scale in (1.0, sc.driver_scale):
            x, u = _series(cfg, cursor + sc.steps + 1, scale)
            means.append(float(_forecast(model, x, u, cursor + 1, cursor + sc.steps, w).mean()))
        return ToySimulation(
            scenario=sc.model_dump(),
            baseline=means[0],
            scenario_mean=means[1],
            difference=means[1] - means[0],
        )


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
    twin = ToyTwin.create(twin_dir, ToyInit(run=cfg.run_dir))
    twin.update(options=ToyUpdateOptions(steps=40))
    twin.update(options=ToyUpdateOptions(steps=40))
    what_if = twin.simulate(ToyScenario(steps=20, driver_scale=1.5))
    log.info("what-if (driver x1.5): %s", what_if.to_json())
    print(twin.status().text)
    print(f"MLflow: mlflow ui --backend-store-uri sqlite:///{(workdir / 'mlflow.db').resolve()}")
    return 0


DOMAIN = Domain(
    name=KIND,
    description="toy AR series: the smallest complete twin loop (core demo)",
    demo=demo,
    twin=ToyTwin,
)
