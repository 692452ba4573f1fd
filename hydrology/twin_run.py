"""What a drought twin takes from a finished training run (``twins twin init --run RUN_DIR``).

A run directory of ``hydrology.task:DroughtForecast`` written by ``twins train`` holds
``config.yaml`` (the resolved config), ``model.pt`` (the selected model state), the cached
sample cube under ``data/`` and ``summary.json`` (the registered model version, if any).
:func:`load_run` turns it into the twin's forecaster, its model reference and the index
calibration period the model was trained with (the training split: the cube fits its indices
there); :func:`run_record` reopens the daily data the run trained on; :func:`twin_indices`
chooses the indices the twin keeps from what its record holds.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import xarray as xr

from hydrology.io import CANONICAL
from hydrology.model_forecaster import ModelForecaster
from hydrology.pet import PetMethod
from hydrology.targets import missing_for
from hydrology.task import DroughtForecast
from twins.config import RunConfig, load_config
from twins.errors import ConfigError, DataError
from twins.task import build_task

__all__ = ["TASK_TARGET", "TrainedRun", "load_run", "run_record", "twin_indices"]

log = logging.getLogger(__name__)

#: The task a twin's run must have trained.
TASK_TARGET = "hydrology.task:DroughtForecast"


@dataclass(frozen=True)
class TrainedRun:
    """A finished drought-forecast run, loaded.

    Attributes:
        run_dir: The run directory.
        config: Its resolved config (workdir and name pointing at ``run_dir``).
        forecaster: The trained model as a twin forecaster.
        model_ref: ``models:/<name>/<version>`` when the run registered its model, else None.
        calibration: First and last day of the index calibration period (the training
            split), ``("YYYY-MM-DD", "YYYY-MM-DD")``.
    """

    run_dir: Path
    config: RunConfig
    forecaster: ModelForecaster
    model_ref: str | None
    calibration: tuple[str, str]


def load_run(run_dir: str | Path) -> TrainedRun:
    """Load a finished ``twins train`` run of the drought task.

    Args:
        run_dir: The run directory (``<workdir>/<name>``).

    Returns:
        The loaded run.

    Raises:
        ConfigError: Not a finished run (no directory, ``config.yaml`` or ``model.pt``), a
            run of another task, or an invalid config (one line naming the file).
    """
    run_dir = Path(run_dir)
    for name in ("config.yaml", "model.pt"):
        if not (run_dir / name).is_file():
            raise ConfigError(
                f"--run {run_dir}: not a finished training run (no {name} there)",
                hint="give the run directory twins train wrote: <workdir>/<name>",
            )
    cfg = load_config(run_dir / "config.yaml")
    if cfg.task.target != TASK_TARGET:
        raise ConfigError(
            f"--run {run_dir}: the run trained task.target {cfg.task.target!r}; a drought twin "
            f"needs {TASK_TARGET!r}"
        )
    cfg = cfg.model_copy(update={"workdir": run_dir.parent, "name": run_dir.name})
    forecaster = ModelForecaster.from_run(run_dir)
    train = forecaster.blob["splits"]["train"]
    last_day = pd.Timestamp(train[1]) + pd.offsets.MonthEnd(0)
    calibration = (str(pd.Timestamp(train[0]).date()), str(last_day.date()))
    return TrainedRun(run_dir, cfg, forecaster, _model_ref(run_dir, cfg), calibration)


def _model_ref(run_dir: Path, cfg: RunConfig) -> str | None:
    """``models:/<name>/<version>`` from ``summary.json`` when the run registered its model."""
    name = cfg.tracking.register_model
    summary = run_dir / "summary.json"
    if not name or not summary.is_file():
        return None
    try:
        version = json.loads(summary.read_text()).get("model_version")
    except ValueError:
        raise DataError(f"{summary}: not valid JSON (variable 'model_version')") from None
    return f"models:/{name}/{version}" if version else None


def run_record(run: TrainedRun) -> xr.Dataset:
    """The daily data the run trained on, canonical variables only (checked and gated as in
    training: :meth:`hydrology.task.DroughtForecast.load_dataset`).

    Raises:
        DataError: The run's files are gone or no longer pass the checks.
    """
    task = build_task(run.config)
    assert isinstance(task, DroughtForecast)
    ds = task.load_dataset()
    keep = [v for v in ds.data_vars if v in CANONICAL]
    log.info("twin record: the run's data (%s)", ", ".join(str(v) for v in keep))
    return ds[keep]


def twin_indices(
    requested: Sequence[str] | None,
    defaults: Sequence[str],
    targets: Sequence[str],
    record: xr.Dataset,
    source: str,
    pet: PetMethod = "pev",
) -> list[str]:
    """The indices a twin keeps: the requested ones (or the defaults the record can give),
    then the forecaster's targets.

    The twin's indices are computed from the record's variables (``tp``; for SPEI ``pev``
    or the temperatures ``pet`` derives it from; ``swvl1`` for SSMI:
    :func:`hydrology.targets.missing_for`).

    Args:
        requested: Index names asked for (``--indices``); None: ``defaults``, less those whose
            variable ``record`` lacks (a precipitation-only record keeps the SPIs).
        defaults: The default index names.
        targets: The forecaster's targets (always kept).
        record: The canonical record the twin starts from.
        source: Its file(s), for messages.
        pet: Where SPEI's PET comes from (the forecaster's, as trained).

    Returns:
        Index names, requested (or default) first, then the targets not among them.

    Raises:
        ConfigError: A requested index whose variable ``record`` lacks (names the index, the
            variable and ``source``).
        DataError: A target of the forecaster whose variable ``record`` lacks.
    """
    held = ", ".join(str(v) for v in record.data_vars) or "no variables"

    def lacks(names: Sequence[str]) -> list[str]:
        return [f"{n!r} needs {lack}" for n in names if (lack := missing_for(n, record, pet))]

    if requested is None:
        chosen = [n for n in defaults if missing_for(n, record, pet) is None]
        dropped = [n for n in defaults if n not in chosen]
        if dropped:
            log.info("twin indices: %s left out (%s holds %s)", dropped, source, held)
    else:
        problems = lacks(requested)
        if problems:
            raise ConfigError(
                f"--indices: {'; '.join(problems)}, which {source} does not hold (it holds "
                f"{held})",
                hint="drop those indices, or give a record that has the variable",
            )
        chosen = list(requested)
    problems = lacks(targets)
    if problems:
        raise DataError(
            f"{source}: the run's model forecasts {list(targets)}; {'; '.join(problems)}, "
            f"which the record does not hold (it holds {held})",
            hint="give the record of the variables the run trained on",
        )
    return [*chosen, *(t for t in targets if t not in chosen)]
