"""The MLflow tracking store: which URI, creating it once, and a scoped global URI.

* :func:`resolve_tracking_uri` picks the tracking URI (config, then
  ``$MLFLOW_TRACKING_URI``, then an embedded sqlite DB in the work directory).
* :func:`prepare_store` creates and migrates the store and the experiment once, in the
  launching process, *before* DDP ranks or Ray workers start. Two processes opening a
  fresh sqlite DB at once corrupt its schema migration; a pre-created DB is safe.
* :func:`fluent_tracking_uri` sets MLflow's process-global tracking URI for the duration of
  one call (``mlflow.pytorch`` reads only that), under a process-wide lock, and restores it.

HTTP fail-fast: MLflow retries HTTP requests 7 times with exponential backoff and a
120 s timeout by default, so a dead server can block a call for minutes. For ``http(s)``
URIs, :func:`apply_http_defaults` sets :data:`HTTP_ENV_DEFAULTS` in ``os.environ`` **only
for variables the user has not set** (2 retries, backoff factor 1, 30 s timeout: a refused
connection fails in about 2-3 s).

mlflow is imported lazily, on first real use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from twins.errors import TwinsError

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "FLUENT_LOCK",
    "HTTP_ENV_DEFAULTS",
    "TrackingError",
    "apply_http_defaults",
    "artifact_location",
    "check_uri",
    "ensure_experiment",
    "error_summary",
    "fluent_tracking_uri",
    "prepare_store",
    "redact",
    "resolve_tracking_uri",
    "sqlite_path",
]

log = logging.getLogger(__name__)

#: Environment defaults applied for ``http(s)`` tracking URIs when the user has not set them.
HTTP_ENV_DEFAULTS: dict[str, str] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}

#: Held while MLflow's global tracking URI is changed (:func:`fluent_tracking_uri`).
FLUENT_LOCK = threading.Lock()


class TrackingError(TwinsError):
    """The MLflow tracking store cannot be used (malformed URI, unreachable server, ...)."""


# --------------------------------------------------------------------------- URIs


def resolve_tracking_uri(configured: str | None, workdir: Path) -> str:
    """Pick the tracking URI.

    Precedence: ``configured`` (the config's ``tracking.uri``), then
    ``$MLFLOW_TRACKING_URI``, then ``sqlite:///<workdir>/mlflow.db`` (absolute path).
    A relative sqlite path (``sqlite:///mlflow.db``) is made absolute against the
    current directory, so every process of one launch names the same file.

    Args:
        configured: URI from the config, or ``None``/empty for "not set".
        workdir: Work directory holding the default embedded DB.

    Returns:
        The tracking URI.
    """
    uri = (configured or "").strip() or os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        return f"sqlite:///{workdir.resolve()}/mlflow.db"
    db = sqlite_path(uri)
    if db is not None and not db.is_absolute():
        query = uri.partition("?")[2]
        uri = f"sqlite:///{db.resolve()}" + (f"?{query}" if query else "")
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The DB file of a ``sqlite:///`` URI, or ``None`` (not sqlite, or in memory)."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///") :].partition("?")[0]
    if rest in ("", ":memory:"):
        return None
    return Path(rest)


def redact(uri: str) -> str:
    """``uri`` with any password replaced by ``***`` (for messages)."""
    try:
        parts = urlsplit(uri)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        pass
    return uri


def check_uri(uri: str) -> None:
    """Reject URIs MLflow would only fail on slowly or confusingly.

    Raises:
        TrackingError: Empty URI, ``http(s)`` without a host, or ``sqlite:`` without ``//``.
    """
    if not uri.strip():
        raise TrackingError(
            "the MLflow tracking URI is empty",
            "set tracking.uri or $MLFLOW_TRACKING_URI, or leave both unset",
        )
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise TrackingError(f"malformed MLflow tracking URI {redact(uri)!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") and not host:
        raise TrackingError(
            f"malformed MLflow tracking URI {redact(uri)!r}: no host",
            "use e.g. http://127.0.0.1:5000",
        )
    if scheme == "sqlite" and not uri.startswith("sqlite://"):
        raise TrackingError(
            f"malformed MLflow tracking URI {redact(uri)!r}",
            "use sqlite:////absolute/path/mlflow.db",
        )


def apply_http_defaults(uri: str) -> None:
    """Set :data:`HTTP_ENV_DEFAULTS` for ``http(s)`` URIs, keeping the user's own values."""
    if uri.lower().startswith(("http://", "https://")):
        for key, value in HTTP_ENV_DEFAULTS.items():
            os.environ.setdefault(key, value)


def artifact_location(uri: str, artifact_root: Path | None) -> str | None:
    """Artifact location for a new experiment: explicit root, ``<dbdir>/mlartifacts``, or None."""
    if artifact_root is not None:
        return Path(artifact_root).resolve().as_uri()
    db = sqlite_path(uri)
    if db is not None:
        return (db.resolve().parent / "mlartifacts").as_uri()
    return None  # servers proxy artifacts themselves (mlflow-artifacts:/)


def error_summary(exc: BaseException, uri: str = "") -> str:
    """One line describing ``exc``, with the password of ``uri`` masked."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    with contextlib.suppress(ValueError):
        if password := urlsplit(uri).password:
            text = text.replace(password, "***")
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created (with ``artifact_location``) if missing."""
    from mlflow.exceptions import MlflowException

    exp = client.get_experiment_by_name(name)
    if exp is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            exp = client.get_experiment_by_name(name)  # another process won the race
            if exp is None:
                raise
    if exp.lifecycle_stage == "deleted":
        raise TrackingError(
            f"MLflow experiment {name!r} is deleted",
            "restore it (mlflow experiments restore) or choose another tracking.experiment",
        )
    return str(exp.experiment_id)


def prepare_store(uri: str, experiment: str, artifact_root: Path | None = None) -> str:
    """Create/migrate the store and the experiment, once, in the launching process.

    Call this before DDP ranks or Ray workers start: two processes opening a *fresh*
    sqlite DB at once crash in the schema migration, while a pre-created DB is safe.
    For sqlite URIs the DB's directory is created and a new experiment stores its
    artifacts in ``<dbdir>/mlartifacts`` unless ``artifact_root`` is given. An existing
    experiment keeps its artifact location. The dry run uses this to fail fast.

    Args:
        uri: Tracking URI (see :func:`resolve_tracking_uri`).
        experiment: Experiment name.
        artifact_root: Artifact directory for a new experiment (default: next to the DB;
            for servers, the server's own artifact store).

    Returns:
        The experiment id.

    Raises:
        TrackingError: The URI is malformed, the store unreachable or unusable, or the
            experiment deleted.
    """
    check_uri(uri)
    apply_http_defaults(uri)
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TrackingError(
                f"cannot create the MLflow DB directory {db.parent}: {exc}",
                "choose a writable workdir or tracking.uri",
            ) from None
    try:
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=uri)
        exp_id = ensure_experiment(client, experiment, artifact_location(uri, artifact_root))
    except TwinsError:
        raise
    except Exception as exc:  # noqa: BLE001 - MLflow, SQLAlchemy, requests all raise their own
        raise TrackingError(
            f"cannot use MLflow tracking store {redact(uri)}: {error_summary(exc, uri)}",
            "check tracking.uri / $MLFLOW_TRACKING_URI (sqlite:////abs/path/mlflow.db or "
            "http://host:port) and that the server is running",
        ) from None
    log.debug("MLflow store %s ready, experiment %r has id %s", redact(uri), experiment, exp_id)
    return exp_id


@contextlib.contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """Temporarily make ``uri`` MLflow's global tracking URI, then restore it exactly.

    Needed because ``mlflow.pytorch.log_model``/``load_model`` read the global URI.
    Restores the module global *and* ``$MLFLOW_TRACKING_URI`` (``mlflow.set_tracking_uri``
    writes that variable). Serialised by a process-wide lock.
    """
    import mlflow
    from mlflow.tracking._tracking_service import utils as tracking_utils

    with FLUENT_LOCK:
        saved_global = getattr(tracking_utils, "_tracking_uri", None)
        saved_env = os.environ.get("MLFLOW_TRACKING_URI")
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(saved_global)  # type: ignore[arg-type]  # None unsets
            if saved_env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = saved_env
