"""Run the same training loop on Ray Train workers (``--backend ray``).

The driver prepares the MLflow store (so workers never race on a fresh sqlite
schema), starts a quiet local Ray or joins ``--address``, and runs a
``TorchTrainer`` whose workers each call :func:`twins.train.run.train_process`
with a strategy adopting Ray's process group. Rank 0 writes the run directory,
so on a multi-node cluster ``workdir`` must be on a shared file system.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import ray
from ray.train import RunConfig as RayRunConfig
from ray.train import ScalingConfig
from ray.train.torch import TorchTrainer

from twins.config import RunConfig, check_workdir, to_dict
from twins.errors import ConfigError, DataError, TwinsError
from twins.train.run import removed_if_refused

log = logging.getLogger(__name__)

QUIET_RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AIR_NEW_OUTPUT": "0",
    "RAY_DEDUP_LOGS": "1",
}


def _worker_loop(config: dict[str, Any]) -> None:
    """Body of each Ray Train worker."""
    import ray.train

    from twins.config import validate
    from twins.train.dist import ClusterEnv, DDPStrategy, Strategy
    from twins.train.run import train_process

    cfg = validate(config["config"], "<ray driver>")
    ctx = ray.train.get_context()
    env = ClusterEnv(
        launcher="ray",
        rank=ctx.get_world_rank(),
        world_size=ctx.get_world_size(),
        local_rank=ctx.get_local_rank(),
        local_world_size=ctx.get_local_world_size(),
    )
    if env.world_size > 1:
        strategy: Strategy = DDPStrategy(env, cfg.distributed.use_gpu, cfg.distributed.timeout_s)
    else:
        strategy = Strategy(env)
    summary = train_process(cfg, resume=config["resume"], strategy=strategy, progress=False)
    ray.train.report({k: v for k, v in summary.items() if isinstance(v, int | float)})


def run_on_ray(cfg: RunConfig, resume: bool = False) -> dict[str, Any]:
    """Train ``cfg`` with ``cfg.distributed.workers`` Ray Train workers.

    Returns:
        The run summary written by rank 0.

    Raises:
        ConfigError: The config is refused (by the driver or a worker); nothing is left.
        DataError: The data is refused by a worker; nothing is left.
        TwinsError: The cluster cannot be reached, or a worker failed (its logs are kept).
    """
    for k, v in QUIET_RAY_ENV.items():
        os.environ.setdefault(k, v)
    cfg = cfg.model_copy(update={"workdir": cfg.workdir.resolve()})
    check_workdir(cfg)
    with removed_if_refused(cfg.run_dir):  # a refused task leaves no run directory behind
        failure = _fit_on_ray(cfg, resume)
    if failure is not None:
        raise failure
    summary_path = cfg.run_dir / "summary.json"
    if not summary_path.is_file():
        raise TwinsError(
            f"Ray run finished but {summary_path} is missing",
            "is workdir on a file system shared by all Ray nodes?",
        )
    return json.loads(summary_path.read_text())


def _refusal(exc: BaseException) -> TwinsError | None:
    """The config or data error a worker raised, rebuilt on the driver, or None.

    Ray wraps a worker's exception: ``WorkerGroupError.worker_failures`` maps ranks to it, and
    a ``RayTaskError`` keeps it as ``.cause``.
    """
    seen: list[BaseException] = [exc]
    for err in list(seen):
        seen.extend(getattr(err, "worker_failures", {}).values())
    for err in seen:
        for candidate in (err, err.__cause__, getattr(err, "cause", None)):
            original = getattr(candidate, "cause", candidate)
            if isinstance(original, ConfigError | DataError):
                text = str(original).strip().splitlines()[0]
                return type(original)(text, original.hint)
    return None


def _fit_on_ray(cfg: RunConfig, resume: bool) -> TwinsError | None:
    """Start or join Ray and fit; raise refusals (config/data errors), return other failures.

    Returns:
        None on success, else the error to raise once the run directory is kept for its logs.
    """
    d = cfg.distributed
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.tracking.enabled:
        from twins.track import prepare_store, resolve_tracking_uri

        prepare_store(resolve_tracking_uri(cfg.tracking.uri, cfg.workdir), cfg.tracking.experiment)
    started = False
    # RAY_ADDRESS (set by KubeRay drivers and our Slurm script) means "join this cluster"
    address = d.address or os.environ.get("RAY_ADDRESS")
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            else:
                os.environ.setdefault("RAY_AUTH_MODE", "disabled")
                cpus = max(1, math.ceil(d.workers * d.cpus_per_worker))
                # "local": a new Ray even where `ray start` left a cluster to find
                ray.init(
                    address="local",
                    num_cpus=cpus,
                    include_dashboard=False,
                    logging_level="ERROR",
                    log_to_driver=False,
                )
        except Exception as exc:  # noqa: BLE001 - ray raises many kinds
            where = address or "a local Ray"
            raise TwinsError(
                f"cannot start or join {where}: {exc}",
                "check distributed.address or start `ray start --head`",
            ) from None
        started = True
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={"config": to_dict(cfg), "resume": resume},
        scaling_config=ScalingConfig(
            num_workers=d.workers,
            use_gpu=d.use_gpu,
            resources_per_worker={"CPU": d.cpus_per_worker},
        ),
        run_config=RayRunConfig(storage_path=str(cfg.run_dir / "ray"), name=cfg.name),
    )
    try:
        trainer.fit()
    except Exception as exc:  # noqa: BLE001 - surface the worker's error in one line
        refusal = _refusal(exc)
        if refusal is not None:
            raise refusal from None
        cause = exc.__cause__ or exc
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
        return TwinsError(
            f"Ray training of {cfg.name} failed: {type(cause).__name__}: {first}",
            f"worker logs are under {cfg.run_dir / 'ray'}",
        )
    finally:
        if started:
            ray.shutdown()
    return None
