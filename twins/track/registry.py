"""The MLflow model registry: register a model file as a new version, load a logged model.

:func:`register_file` logs one file (a cleaner, a forecaster: any format the domain reads
back itself) as the artifact of a short run and registers it as a new version of a
registered model; domains (the noise twin's accepted cleaners) call it instead of MLflow.
:func:`load_registered_model` loads a PyTorch model logged by
:meth:`twins.track.Tracker.log_model`. Both raise :class:`~twins.track.store.TrackingError`
on any failure, in one line; a caller for whom tracking is optional catches it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from twins.track.store import (
    TrackingError,
    apply_http_defaults,
    check_uri,
    error_summary,
    fluent_tracking_uri,
    prepare_store,
    redact,
)

__all__ = ["ModelVersion", "load_registered_model", "register_file"]

log = logging.getLogger(__name__)


class ModelVersion(BaseModel):
    """A registered model version.

    Attributes:
        name: Registered-model name.
        version: Version number MLflow gave it (as a string, as MLflow returns it).
        run_id: The run that logged the file.
        source: Artifact URI of the registered file's directory.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    version: str
    run_id: str
    source: str


def register_file(
    uri: str,
    experiment: str,
    name: str,
    path: Path,
    *,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    artifact_path: str = "model",
) -> ModelVersion:
    """Log ``path`` as an artifact of a new run and register it as a new version of ``name``.

    The store and experiment are created if missing (:func:`prepare_store`); the registered
    model too. The run is closed ``FINISHED``, or ``FAILED`` when registering fails after it
    was created.

    Args:
        uri: Tracking URI (see :func:`twins.track.resolve_tracking_uri`).
        experiment: Experiment of the run.
        name: Registered-model name.
        path: The file to register.
        run_name: Run name shown in the UI.
        tags: Tags of the run and of the model version (values ``str()``'d).
        artifact_path: Directory of the file among the run's artifacts.

    Returns:
        The new version.

    Raises:
        TrackingError: No such file, a malformed URI, an unreachable or unusable store.
    """
    file = Path(path)
    if not file.is_file():
        raise TrackingError(f"cannot register {file}: no such file")
    started = time.perf_counter()
    exp_id = prepare_store(uri, experiment)
    str_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    run_id: str | None = None
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        client = MlflowClient(tracking_uri=uri)
        run = client.create_run(exp_id, run_name=run_name, tags=str_tags)
        run_id = run.info.run_id
        client.log_artifact(run_id, str(file), artifact_path)
        try:
            client.create_registered_model(name)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        source = f"{run.info.artifact_uri}/{artifact_path}"
        mv = client.create_model_version(name, source=source, run_id=run_id, tags=str_tags)
        client.set_terminated(run_id)
    except Exception as exc:  # noqa: BLE001 - MLflow, SQLAlchemy, requests all raise their own
        if run_id is not None:
            _close_failed(uri, run_id)
        raise TrackingError(
            f"cannot register {file.name} as model {name!r} in {redact(uri)}: "
            f"{error_summary(exc, uri)}"
        ) from None
    log.info(
        "registered %s as %s version %s (%.1f s)",
        file.name,
        name,
        mv.version,
        time.perf_counter() - started,
    )
    return ModelVersion(name=name, version=str(mv.version), run_id=run_id, source=source)


def _close_failed(uri: str, run_id: str) -> None:
    """Mark a half-done registration run FAILED; the store may be gone, so never raise."""
    try:
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=uri).set_terminated(run_id, "FAILED")
    except Exception as exc:  # noqa: BLE001 - best effort on a failing store
        log.debug("could not mark run %s FAILED: %s", run_id, error_summary(exc, uri))


def load_registered_model(
    uri: str,
    name: str,
    version: str | int = "latest",
    map_location: str | torch.device | None = "cpu",
) -> torch.nn.Module:
    """Load a registered PyTorch model logged by :meth:`Tracker.log_model`.

    Sets MLflow's global tracking URI for the duration of the call (restored after).

    Args:
        uri: Tracking URI of the store holding the registry.
        name: Registered-model name.
        version: Version number, or ``"latest"``.
        map_location: Device for the weights (default CPU, so GPU-trained models load
            anywhere); ``None`` keeps the saved devices.

    Returns:
        The original ``nn.Module`` (pickle format).

    Raises:
        TrackingError: The store, model or version cannot be found or loaded.
    """
    check_uri(uri)
    apply_http_defaults(uri)
    model_uri = f"models:/{name}/{version}"
    try:
        import mlflow.pytorch

        with fluent_tracking_uri(uri):
            kwargs = {} if map_location is None else {"map_location": map_location}
            model = mlflow.pytorch.load_model(model_uri, **kwargs)
    except Exception as exc:  # noqa: BLE001
        raise TrackingError(
            f"cannot load {model_uri} from {redact(uri)}: {error_summary(exc, uri)}",
            "check the model name and version in the MLflow UI",
        ) from None
    if not isinstance(model, torch.nn.Module):
        raise TrackingError(f"{model_uri} is a {type(model).__name__}, not a torch nn.Module")
    return model
