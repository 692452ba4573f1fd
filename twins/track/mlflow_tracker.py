"""MLflow tracking that never stops training: one fault-tolerant run.

:class:`Tracker` is one MLflow run. Each method swallows backend errors, logs one warning per
kind of call and marks the tracker ``degraded``. :class:`NullTracker` has the same interface
and does nothing (ranks other than 0, tracking disabled). The store itself (URI, creation,
HTTP fail-fast defaults) is :mod:`twins.track.store`; loading and registering models is
:mod:`twins.track.registry`.

Everything goes through an explicit :class:`mlflow.MlflowClient`, never MLflow's
process-global "fluent" run state, so trackers are safe inside Ray workers and tests.
The one exception is :meth:`Tracker.log_model`: ``mlflow.pytorch`` reads the global
tracking URI, so that call sets it for its own duration under a process-wide lock
(:func:`twins.track.store.fluent_tracking_uri`) and then restores both the global and the
``MLFLOW_TRACKING_URI`` environment variable exactly as they were. No fluent run is ever
started.

After :data:`FAILURES_BEFORE_PAUSE` consecutive failed calls a tracker stops calling the
backend for :data:`PAUSE_S` seconds, so a black-holed server cannot slow training by
one timeout per call.

mlflow is imported lazily, so ``NullTracker`` costs nothing on ranks that never log.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import torch

from twins.track.store import (
    apply_http_defaults,
    artifact_location,
    check_uri,
    ensure_experiment,
    error_summary,
    fluent_tracking_uri,
    redact,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Terminal run statuses accepted by :meth:`Tracker.end`.
RUN_STATUSES = ("FINISHED", "FAILED", "KILLED")
#: Buffered metrics are sent as soon as this many are waiting.
METRIC_FLUSH_AT = 200
#: Consecutive failed backend calls after which a tracker pauses for :data:`PAUSE_S`.
FAILURES_BEFORE_PAUSE = 3
#: Seconds a tracker skips backend calls after :data:`FAILURES_BEFORE_PAUSE` failures.
PAUSE_S = 60.0

# MLflow's own limits (mlflow.utils.validation, 3.17).
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_TAGS_PER_BATCH = 100
_MAX_PARAM_VAL_LENGTH = 6000
_MAX_TAG_VAL_LENGTH = 8000
_MAX_KEY_LENGTH = 250
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")


class _FirstPickleWarningOnly(logging.Filter):
    """Let ``mlflow.pytorch``'s "pickle can execute code" warning through once per process.

    We choose pickle on purpose (the model must load back as the original module); the
    warning on every ``log_model`` call would only be noise.
    """

    seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "Pickle or CloudPickle" not in record.getMessage():
            return True
        first, _FirstPickleWarningOnly.seen = not self.seen, True
        return first


_PICKLE_FILTER = _FirstPickleWarningOnly()


# --------------------------------------------------------------------------- helpers


def _clean_key(key: str) -> str:
    """A metric/param/tag key MLflow accepts: bad characters become ``_``, max 250 chars."""
    key = _BAD_KEY_CHARS.sub("_", str(key))
    key = re.sub(r"/{2,}", "/", key).strip("/") or "_"
    key = "/".join("_" if part in (".", "..") else part for part in key.split("/"))
    return key[:_MAX_KEY_LENGTH]


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys: ``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, name))
        else:
            out[name] = value
    return out


def _plain(obj: Any) -> Any:
    """A JSON/YAML-safe copy of ``obj``: mappings, lists, scalars; anything else ``str()``'d."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_plain(v) for v in obj]
    if isinstance(obj, torch.Tensor) and obj.numel() == 1:
        return obj.item()
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item) and getattr(obj, "shape", None) == ():
        with contextlib.suppress(Exception):
            return item()
    return str(obj)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The plain module inside DDP/DataParallel and ``torch.compile`` wrappers."""
    for _ in range(4):
        if isinstance(model, torch.nn.parallel.DistributedDataParallel | torch.nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod") and isinstance(model._orig_mod, torch.nn.Module):
            model = model._orig_mod
        else:
            break
    return model


def _as_example(example: Any) -> Any:
    """An MLflow-acceptable input example: tensors become numpy arrays."""
    if isinstance(example, torch.Tensor):
        return example.detach().cpu().numpy()
    if isinstance(example, Mapping):
        return {k: _as_example(v) for k, v in example.items()}
    return example


def _torch_requirement() -> str:
    return f"torch=={torch.__version__.split('+')[0]}"


# --------------------------------------------------------------------------- Tracker


class Tracker:
    """One fault-tolerant MLflow run.

    Every method catches exceptions from MLflow and the backend, logs one warning per
    failing kind of call (later ones at DEBUG), sets :attr:`degraded` and returns: a
    tracking outage never stops training. Failed metric batches are dropped, not
    retried. If :meth:`start` fails, every later call is a no-op. After
    :data:`FAILURES_BEFORE_PAUSE` consecutive failures, backend calls are skipped
    for :data:`PAUSE_S` seconds, then tried again.

    Uses an explicit :class:`mlflow.MlflowClient`; see the module docstring for the one
    place (:meth:`log_model`) that touches MLflow's global tracking URI.

    Args:
        uri: Tracking URI (see :func:`resolve_tracking_uri`).
        experiment: Experiment name; created if missing (prefer :func:`prepare_store`
            in the launcher when several processes may start at once).
        run_name: Run name shown in the UI.
        tags: Run tags (MLflow's user/source tags are added automatically).
        parent_run_id: Make this a nested child of that run.
        enabled: ``False`` makes every method a no-op.

    Attributes:
        run_id: The MLflow run id once started, else ``None``.
        experiment_id: The experiment id once started, else ``None``.
        degraded: ``True`` once any backend call failed.
        model_uri: ``models:/<model_id>`` of the last model logged, else ``None``.
    """

    def __init__(
        self,
        uri: str,
        experiment: str,
        run_name: str | None = None,
        tags: Mapping[str, str] | None = None,
        parent_run_id: str | None = None,
        enabled: bool = True,
    ) -> None:
        self.uri = uri
        self.experiment = experiment
        self.run_name = run_name
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.parent_run_id = parent_run_id
        self.enabled = enabled
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.degraded = False
        self.model_uri: str | None = None
        self._client: MlflowClient | None = None
        self._metrics: list[Metric] = []
        self._params: dict[str, str] = {}
        self._warned: set[str] = set()
        self._lock = threading.RLock()
        self._failures = 0
        self._paused_until = 0.0
        self._ended = False
        if enabled:
            apply_http_defaults(uri)

    # -- plumbing ------------------------------------------------------------------

    def _active(self) -> bool:
        return self.enabled and self.run_id is not None and not self._ended

    def _get_client(self) -> MlflowClient:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _warn_once(self, kind: str, message: str, *args: Any) -> None:
        if kind in self._warned:
            log.debug(message, *args)
        else:
            self._warned.add(kind)
            log.warning(message, *args)

    def _call(self, kind: str, fn: Callable[[], T]) -> tuple[bool, T | None]:
        """Run one backend call; on failure warn once per ``kind``, return ``(False, None)``."""
        if time.monotonic() < self._paused_until:
            log.debug("MLflow %s skipped: backend paused after repeated failures", kind)
            return False, None
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - a tracking outage must never stop training
            self.degraded = True
            self._failures += 1
            self._warn_once(
                kind,
                "MLflow %s failed at %s (%s); training continues, further "
                "%s failures are logged at DEBUG level",
                kind,
                redact(self.uri),
                error_summary(exc, self.uri),
                kind,
            )
            if self._failures >= FAILURES_BEFORE_PAUSE:
                self._paused_until = time.monotonic() + PAUSE_S
                self._failures = 0
                self._warn_once(
                    "pause",
                    "MLflow: %d consecutive failures, not contacting %s "
                    "for %.0f s (data logged meanwhile is dropped)",
                    FAILURES_BEFORE_PAUSE,
                    redact(self.uri),
                    PAUSE_S,
                )
            return False, None
        self._failures = 0
        return True, result

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> str | None:
        """Create the run (idempotent).

        Returns:
            The run id, or ``None`` when disabled or the backend failed.
        """
        if not self.enabled or self._ended:
            return self.run_id
        if self.run_id is not None:
            return self.run_id

        def _start() -> tuple[str, str]:
            check_uri(self.uri)
            client = self._get_client()
            exp_id = ensure_experiment(client, self.experiment, artifact_location(self.uri, None))
            tags: dict[str, str] = {}
            with contextlib.suppress(Exception):
                from mlflow.tracking.context.registry import resolve_tags

                tags.update(resolve_tags({}))
            tags.update(self.tags)
            if self.parent_run_id:
                tags["mlflow.parentRunId"] = self.parent_run_id
            tags = {_clean_key(k): _truncate(str(v), _MAX_TAG_VAL_LENGTH) for k, v in tags.items()}
            run = client.create_run(exp_id, run_name=self.run_name, tags=tags)
            return exp_id, run.info.run_id

        ok, result = self._call("start", _start)
        if ok and result is not None:
            self.experiment_id, self.run_id = result
            log.info(
                "MLflow run %s (experiment %r) at %s",
                self.run_id,
                self.experiment,
                redact(self.uri),
            )
        return self.run_id

    def end(self, status: str = "FINISHED") -> None:
        """Flush buffered metrics and terminate the run (idempotent).

        Args:
            status: ``FINISHED``, ``FAILED`` or ``KILLED``.

        Raises:
            ValueError: Unknown ``status`` (a programming error, not an outage).
        """
        if status not in RUN_STATUSES:
            raise ValueError(f"status must be one of {RUN_STATUSES}, got {status!r}")
        if not self._active():
            self._ended = True
            return
        self.flush()
        self._paused_until = 0.0  # always try to close the run
        run_id = self.run_id
        assert run_id is not None
        self._call("end", lambda: self._get_client().set_terminated(run_id, status))
        self._ended = True

    def __enter__(self) -> Tracker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.end("FINISHED")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.end("KILLED")
        else:
            self.end("FAILED")

    # -- params, metrics, tags -----------------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log parameters; nested mappings become dotted keys (``train.lr``).

        Values are ``str()``'d and truncated to MLflow's 6000 characters. MLflow params
        are immutable: re-logging a key with the same value is skipped, with a different
        value it is skipped with a warning.

        Args:
            params: Flat or nested parameters.
        """
        if not self._active():
            return
        from mlflow.entities import Param

        todo: dict[str, str] = {}
        for raw_key, raw_value in _flatten(params).items():
            key = _clean_key(raw_key)
            value = _truncate(str(raw_value), _MAX_PARAM_VAL_LENGTH)
            previous = self._params.get(key, todo.get(key))
            if previous is None:
                todo[key] = value
            elif previous != value:
                self._warn_once(
                    "param-changed",
                    "MLflow param %r already logged as %r; params "
                    "are immutable, keeping the first value (not %r)",
                    key,
                    _truncate(previous, 80),
                    _truncate(value, 80),
                )
        items = list(todo.items())
        client = self._get_client()
        for i in range(0, len(items), _MAX_PARAMS_TAGS_PER_BATCH):
            chunk = dict(items[i : i + _MAX_PARAMS_TAGS_PER_BATCH])
            send = functools.partial(
                client.log_batch, self.run_id, params=[Param(k, v) for k, v in chunk.items()]
            )
            ok, _ = self._call("log_params", send)
            if ok:
                self._params.update(chunk)

    def log_metrics(self, metrics: Mapping[str, Any], step: int) -> None:
        """Buffer metrics for ``step``; sent by :meth:`flush` (automatic at 200 and at end).

        Values that are not numbers (strings, ``None``, multi-element tensors) are
        skipped with a one-time warning.

        Args:
            metrics: Name to number (floats, ints, numpy or one-element torch scalars).
            step: Training step or epoch.
        """
        if not self._active():
            return
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        new: list[Metric] = []
        for key, value in metrics.items():
            try:
                if isinstance(value, str | bytes) or value is None:
                    raise TypeError(type(value).__name__)
                number = float(value)
            except (TypeError, ValueError, RuntimeError):
                self._warn_once(
                    "metric-not-numeric",
                    "MLflow metric %r skipped: %s is not a number",
                    key,
                    _truncate(repr(value), 80),
                )
                continue
            new.append(Metric(_clean_key(key), number, timestamp, int(step)))
        with self._lock:
            self._metrics.extend(new)
            waiting = len(self._metrics)
        if waiting >= METRIC_FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Send buffered metrics with ``log_batch`` (at most 1000 per request)."""
        with self._lock:
            batch, self._metrics = self._metrics, []
        if not batch or not self._active():
            return
        client = self._get_client()
        for i in range(0, len(batch), _MAX_METRICS_PER_BATCH):
            chunk = batch[i : i + _MAX_METRICS_PER_BATCH]
            self._call(
                "log_metrics", functools.partial(client.log_batch, self.run_id, metrics=chunk)
            )

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Set run tags (values ``str()``'d and truncated to 8000 characters).

        Args:
            tags: Tag name to value.
        """
        if not self._active():
            return
        from mlflow.entities import RunTag

        items = [
            RunTag(_clean_key(k), _truncate(str(v), _MAX_TAG_VAL_LENGTH)) for k, v in tags.items()
        ]
        client = self._get_client()
        for i in range(0, len(items), _MAX_PARAMS_TAGS_PER_BATCH):
            chunk = items[i : i + _MAX_PARAMS_TAGS_PER_BATCH]
            self._call("set_tags", functools.partial(client.log_batch, self.run_id, tags=chunk))

    # -- artifacts -----------------------------------------------------------------

    def log_text(self, text: str, artifact_file: str) -> None:
        """Store ``text`` as the run artifact ``artifact_file`` (e.g. ``"config.yaml"``)."""
        if not self._active():
            return
        run_id = self.run_id
        assert run_id is not None
        self._call("log_text", lambda: self._get_client().log_text(run_id, text, artifact_file))

    def log_dict(self, d: Mapping[str, Any], artifact_file: str) -> None:
        """Store a mapping as YAML (``.yaml``/``.yml``) or JSON (any other suffix).

        Values that are neither mappings, sequences nor scalars are ``str()``'d.
        """
        if not self._active():
            return
        plain = _plain(d)
        if Path(artifact_file).suffix.lower() in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(plain, sort_keys=False, allow_unicode=True)
        else:
            text = json.dumps(plain, indent=2)
        self.log_text(text, artifact_file)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        """Upload a file, or a directory's contents, under ``artifact_path``."""
        if not self._active():
            return
        run_id = self.run_id
        assert run_id is not None
        local = Path(path)

        def _upload() -> None:
            client = self._get_client()
            if local.is_dir():
                client.log_artifacts(run_id, str(local), artifact_path)
            elif local.is_file():
                client.log_artifact(run_id, str(local), artifact_path)
            else:
                raise FileNotFoundError(f"no such file or directory: {local}")

        self._call("log_artifact", _upload)

    def log_figure(self, fig: Any, artifact_file: str) -> None:
        """Store a matplotlib (or plotly) figure as ``artifact_file`` (``.png``, ``.svg``, ...)."""
        if not self._active():
            return
        run_id = self.run_id
        assert run_id is not None
        self._call("log_figure", lambda: self._get_client().log_figure(run_id, fig, artifact_file))

    def log_model(
        self,
        model: torch.nn.Module,
        registered_name: str | None,
        input_example: Any = None,
        artifact_name: str = "model",
    ) -> str | None:
        """Log ``model`` to this run and optionally register it.

        Uses ``mlflow.pytorch.log_model`` with ``serialization_format="pickle"`` (it loads
        back as the original ``nn.Module``, resumable; the class must be importable
        where it is loaded) and explicit ``pip_requirements`` (skips 3-7 s of inference).
        DDP/DataParallel/``torch.compile`` wrappers are removed first. The model goes to
        this run's experiment (its ``LoggedModel`` is created explicitly, because
        MLflow would otherwise put it in the fluent default experiment). MLflow's global
        tracking URI is set for the duration of the call and restored afterwards.

        Args:
            model: The module to log.
            registered_name: Registered-model name, or ``None`` to log without registering.
            input_example: Optional model input (tensor/array); MLflow infers a signature.
            artifact_name: Name of the logged model.

        Returns:
            The new model version as a string when registered, else ``None`` (also on
            failure; :attr:`model_uri` holds ``models:/<model_id>`` when logging worked).
        """
        if not self._active():
            return None
        self.flush()  # so the LoggedModel picks up the run's latest metrics
        run_id, exp_id = self.run_id, self.experiment_id
        assert run_id is not None and exp_id is not None
        module = _unwrap(model)
        example = _as_example(input_example)

        def _log() -> tuple[str, str | None]:
            import mlflow.pytorch

            mlflow_pytorch_log = logging.getLogger("mlflow.pytorch")
            if _PICKLE_FILTER not in mlflow_pytorch_log.filters:
                mlflow_pytorch_log.addFilter(_PICKLE_FILTER)
            client = self._get_client()
            logged = client.create_logged_model(
                experiment_id=exp_id,
                name=artifact_name,
                source_run_id=run_id,
                params=dict(self._params) or None,
            )
            with fluent_tracking_uri(self.uri):
                info = mlflow.pytorch.log_model(
                    module,
                    name=artifact_name,
                    registered_model_name=registered_name,
                    input_example=example,
                    pip_requirements=[_torch_requirement()],
                    serialization_format="pickle",
                    model_id=logged.model_id,
                    run_id=run_id,
                )
            version = info.registered_model_version
            return info.model_uri, None if version is None else str(version)

        started = time.perf_counter()
        ok, result = self._call("log_model", _log)
        if not ok or result is None:
            return None
        self.model_uri, version = result
        log.info(
            "MLflow logged model %s%s in %.2f s",
            self.model_uri,
            f" as {registered_name} version {version}" if version else "",
            time.perf_counter() - started,
        )
        return version


class NullTracker(Tracker):
    """A tracker that does nothing: :attr:`run_id` stays ``None``, nothing is imported.

    Used on ranks other than 0 and when tracking is disabled. Accepts (and ignores)
    the :class:`Tracker` constructor arguments so it can stand in anywhere.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__("", "", enabled=False)
