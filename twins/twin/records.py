"""What a twin stores about itself: its state (``twin.json``) and one record per version.

Both are plain frozen dataclasses validated by hand on read, so that a damaged file is reported
field by field (:class:`TwinState`, :class:`UpdateRecord`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from twins.twin.atomic import json_dumps

#: On-disk format of ``twin.json``, ``update.json`` and history entries.
FORMAT = 1
VERSIONS_DIR = "versions"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def key_hash(key: str) -> str:
    """Return the 16-hex-digit hash of an idempotency key used in history file names.

    Args:
        key: The idempotency key.

    Returns:
        First 16 hex digits of ``sha256(key)``.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def version_name(version: int) -> str:
    """Return the directory name of a version, e.g. ``"v000012"``.

    Args:
        version: Version number, >= 0.

    Returns:
        ``"v"`` followed by the number zero-padded to 6 digits.
    """
    return f"v{version:06d}"


def _check_optional_str(data: Mapping[str, Any], name: str) -> str | None:
    value = data[name]
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{name!r} must be a string or null, not {type(value).__name__}")
    return value


def _check_str(data: Mapping[str, Any], name: str) -> str:
    value = data[name]
    if not isinstance(value, str):
        raise ValueError(f"{name!r} must be a string, not {type(value).__name__}")
    return value


def _check_int(data: Mapping[str, Any], name: str) -> int:
    value = data[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name!r} must be an integer >= 0, not {value!r}")
    return value


def _check_dict(data: Mapping[str, Any], name: str) -> dict[str, Any]:
    value = data[name]
    if not isinstance(value, dict):
        raise ValueError(f"{name!r} must be an object, not {type(value).__name__}")
    return value


def _check_ranges(value: Any) -> tuple[tuple[int, int], ...]:
    ok = isinstance(value, list) and all(
        isinstance(r, list)
        and len(r) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in r)
        and r[0] <= r[1]
        for r in value
    )
    if not ok:
        raise ValueError(f"'undone' must be a list of [first, last] versions, not {value!r}")
    return tuple((int(a), int(b)) for a, b in value)


def _check_format(data: Mapping[str, Any]) -> None:
    if data.get("format") != FORMAT:
        raise ValueError(f"unsupported format {data.get('format')!r} (expected {FORMAT})")


def _json_copy(value: Any, what: str) -> Any:
    """Return a deep copy of ``value`` through JSON, or raise ValueError naming ``what``."""
    try:
        return json.loads(json_dumps(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from None


@dataclass(frozen=True)
class TwinState:
    """The committed state of a twin, as stored in ``twin.json``.

    Attributes:
        kind: Domain name, e.g. ``"hydrology"``.
        version: Committed version; 0 right after init.
        model_ref: Reference to the model in use (a path, an MLflow URI, …), or None.
        cursor: Data cursor, e.g. ``"2021-03"`` or a GPS time, or None.
        config_hash: Hash of the configuration in use, or None.
        created: ISO-8601 UTC time of init.
        updated: ISO-8601 UTC time of the last commit.
        current: Path of the current version directory relative to the twin directory.
        extra: Domain-specific JSON data.
        format: On-disk format number.
        undone: Inclusive ``(first, last)`` version ranges taken back by a restore
            (:func:`twins.twin.restore.restore_version`): they stay on disk and in the history, but
            their idempotency keys no longer count as ingested. Empty for most twins, and then
            absent from ``twin.json``.
    """

    kind: str
    version: int
    model_ref: str | None
    cursor: str | None
    config_hash: str | None
    created: str
    updated: str
    current: str
    extra: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT
    undone: tuple[tuple[int, int], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Return the ``twin.json`` content.

        Returns:
            A JSON-ready dict.
        """
        return {
            "format": self.format,
            "kind": self.kind,
            "version": self.version,
            "model_ref": self.model_ref,
            "cursor": self.cursor,
            "config_hash": self.config_hash,
            "created": self.created,
            "updated": self.updated,
            "current": self.current,
            "extra": self.extra,
        } | ({"undone": [list(r) for r in self.undone]} if self.undone else {})

    @classmethod
    def from_dict(cls, data: Any) -> TwinState:
        """Validate and build a state from parsed ``twin.json`` content.

        Args:
            data: Parsed JSON.

        Returns:
            The state.

        Raises:
            ValueError: The content is not a valid state (message says why).
        """
        if not isinstance(data, dict):
            raise ValueError("top level is not an object")
        try:
            _check_format(data)
            state = cls(
                kind=_check_str(data, "kind"),
                version=_check_int(data, "version"),
                model_ref=_check_optional_str(data, "model_ref"),
                cursor=_check_optional_str(data, "cursor"),
                config_hash=_check_optional_str(data, "config_hash"),
                created=_check_str(data, "created"),
                updated=_check_str(data, "updated"),
                current=_check_str(data, "current"),
                extra=_check_dict(data, "extra"),
                undone=_check_ranges(data.get("undone", [])),
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]!r}") from None
        if not state.kind:
            raise ValueError("'kind' is empty")
        expected = f"{VERSIONS_DIR}/{version_name(state.version)}"
        if state.current != expected:
            raise ValueError(f"'current' is {state.current!r}, expected {expected!r}")
        return state


@dataclass(frozen=True)
class UpdateRecord:
    """What one committed version did; stored as ``update.json`` and as a history entry.

    Attributes:
        version: The version this update created.
        key: Idempotency key of the update.
        action: ``"init"``, ``"update"`` or ``"rollback"``.
        started: ISO-8601 UTC time the transaction started (lock acquired).
        finished: ISO-8601 UTC time the commit began writing.
        cursor_before: Data cursor before the update.
        cursor_after: Data cursor after the update.
        model_ref: Model reference in force after the update.
        config_hash: Config hash in force after the update.
        summary: Domain JSON summary of the update.
        products: Manifest of the version's ``products/``: relative POSIX path ->
            ``{"size": int, "sha256": str}``.
    """

    version: int
    key: str
    action: str
    started: str
    finished: str
    cursor_before: str | None
    cursor_after: str | None
    model_ref: str | None
    config_hash: str | None
    summary: dict[str, Any] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form.

        Returns:
            A JSON-ready dict with a ``"format"`` field.
        """
        return {
            "format": FORMAT,
            "version": self.version,
            "key": self.key,
            "action": self.action,
            "started": self.started,
            "finished": self.finished,
            "cursor_before": self.cursor_before,
            "cursor_after": self.cursor_after,
            "model_ref": self.model_ref,
            "config_hash": self.config_hash,
            "summary": self.summary,
            "products": self.products,
        }

    @classmethod
    def from_dict(cls, data: Any) -> UpdateRecord:
        """Validate and build a record from parsed JSON.

        Args:
            data: Parsed JSON.

        Returns:
            The record.

        Raises:
            ValueError: The content is not a valid record (message says why).
        """
        if not isinstance(data, dict):
            raise ValueError("top level is not an object")
        try:
            _check_format(data)
            products = _check_dict(data, "products")
            for name, info in products.items():
                if not (
                    isinstance(info, dict)
                    and isinstance(info.get("size"), int)
                    and isinstance(info.get("sha256"), str)
                ):
                    raise ValueError(f"bad manifest entry for product {name!r}")
            return cls(
                version=_check_int(data, "version"),
                key=_check_str(data, "key"),
                action=_check_str(data, "action"),
                started=_check_str(data, "started"),
                finished=_check_str(data, "finished"),
                cursor_before=_check_optional_str(data, "cursor_before"),
                cursor_after=_check_optional_str(data, "cursor_after"),
                model_ref=_check_optional_str(data, "model_ref"),
                config_hash=_check_optional_str(data, "config_hash"),
                summary=_check_dict(data, "summary"),
                products=products,
            )
        except KeyError as exc:
            raise ValueError(f"missing field {exc.args[0]!r}") from None
