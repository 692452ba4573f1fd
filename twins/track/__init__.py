"""MLflow tracking for twins runs: a fault-tolerant run, a no-op stand-in, store setup.

See :mod:`twins.track.mlflow_tracker` for the design (explicit client, fail-fast HTTP,
create-the-store-once). mlflow itself is imported lazily, on first real use.
"""

from twins.track.mlflow_tracker import (
    HTTP_ENV_DEFAULTS,
    NullTracker,
    Tracker,
    TrackingError,
    load_registered_model,
    prepare_store,
    resolve_tracking_uri,
)

__all__ = [
    "HTTP_ENV_DEFAULTS",
    "NullTracker",
    "Tracker",
    "TrackingError",
    "load_registered_model",
    "prepare_store",
    "resolve_tracking_uri",
]
