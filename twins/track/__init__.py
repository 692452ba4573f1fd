"""MLflow tracking for twins runs: a fault-tolerant run, a no-op stand-in, store setup,
the model registry.

See :mod:`twins.track.mlflow_tracker` for the run (explicit client, fail-fast HTTP),
:mod:`twins.track.store` for the store (create-the-store-once) and
:mod:`twins.track.registry` for registered models. mlflow itself is imported lazily, on
first real use.
"""

from twins.track.mlflow_tracker import NullTracker, Tracker
from twins.track.registry import ModelVersion, load_registered_model, register_file
from twins.track.store import (
    HTTP_ENV_DEFAULTS,
    TrackingError,
    prepare_store,
    resolve_tracking_uri,
)

__all__ = [
    "HTTP_ENV_DEFAULTS",
    "ModelVersion",
    "NullTracker",
    "Tracker",
    "TrackingError",
    "load_registered_model",
    "prepare_store",
    "register_file",
    "resolve_tracking_uri",
]
