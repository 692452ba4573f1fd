"""What a twin stores about itself: its state (``twin.json``) and one record per version.

Both are frozen pydantic models with strict types (no coercion: ``"3"`` is not a version, ``true``
is not an integer), so a damaged file is reported naming the field (:class:`TwinState`,
:class:`UpdateRecord`).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from twins.atomic import json_dumps

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


def _json_copy(value: Any, what: str) -> Any:
    """Return a deep copy of ``value`` through JSON, or raise ValueError naming ``what``."""
    try:
        return json.loads(json_dumps(value))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} is not JSON-serialisable: {exc}") from None


Version = Annotated[StrictInt, Field(ge=0)]


class _Record(BaseModel):
    """Strict, frozen, no unknown fields dropped silently (they are ignored on read so that a
    newer twins can add fields an older one still opens)."""

    model_config = ConfigDict(frozen=True, strict=True, extra="ignore")

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """Validate and build from parsed JSON.

        Args:
            data: Parsed JSON.

        Returns:
            The model.

        Raises:
            ValueError: Not a valid object of this kind; one line naming the field.
        """
        if not isinstance(data, dict):
            raise ValueError("top level is not an object")
        if data.get("format") != FORMAT:
            raise ValueError(f"unsupported format {data.get('format')!r} (expected {FORMAT})")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = ".".join(str(p) for p in err["loc"]) or "value"
            if err["type"] == "missing":
                raise ValueError(f"missing field {name!r}") from None
            got = err.get("input")
            raise ValueError(f"{name!r}: {err['msg'].lower()} (got {got!r})") from None


class TwinState(_Record):
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
            (:func:`twins.twin.restore.restore_version`): they stay on disk and in the
            history, but their idempotency keys no longer count as ingested. Empty for most
            twins, and then absent from ``twin.json``.
    """

    kind: StrictStr
    version: Version
    model_ref: StrictStr | None
    cursor: StrictStr | None
    config_hash: StrictStr | None
    created: StrictStr
    updated: StrictStr
    current: StrictStr
    extra: dict[str, Any] = Field(default_factory=dict)
    format: StrictInt = FORMAT
    undone: tuple[
        tuple[Annotated[StrictInt, Field(ge=1)], Annotated[StrictInt, Field(ge=1)]], ...
    ] = ()

    @field_validator("kind")
    @classmethod
    def _kind_not_empty(cls, v: str) -> str:
        if not v:
            raise ValueError("'kind' is empty")
        return v

    @field_validator("undone", mode="before")
    @classmethod
    def _ranges(cls, v: Any) -> Any:
        # JSON has lists, not tuples; strict mode would refuse them
        if isinstance(v, list):
            v = tuple(tuple(r) if isinstance(r, list) else r for r in v)
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        expected = f"{VERSIONS_DIR}/{version_name(self.version)}"
        if self.current != expected:
            raise ValueError(f"'current' is {self.current!r}, expected {expected!r}")
        for first, last in self.undone:
            if first > last:
                raise ValueError(f"'undone' range [{first}, {last}] is reversed")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Return the ``twin.json`` content.

        Returns:
            A JSON-ready dict (``undone`` only when not empty).
        """
        out = self.model_dump(mode="json", exclude={"undone"})
        if self.undone:
            out["undone"] = [list(r) for r in self.undone]
        return out


class UpdateRecord(_Record):
    """What one committed version did; stored as ``update.json`` and as a history entry.

    Attributes:
        version: The version this update created.
        key: Idempotency key of the update.
        action: ``"init"``, ``"update"``, ``"restore"`` (:func:`twins.twin.restore_version`),
            ``"rollback"`` (:meth:`TwinStore.rollback_to`) or a domain's own (the noise
            twin's ``"revert-cleaner"``).
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

    version: Version
    key: StrictStr
    action: StrictStr
    started: StrictStr
    finished: StrictStr
    cursor_before: StrictStr | None
    cursor_after: StrictStr | None
    model_ref: StrictStr | None
    config_hash: StrictStr | None
    summary: dict[str, Any] = Field(default_factory=dict)
    products: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("products")
    @classmethod
    def _manifest(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, info in v.items():
            if not (
                isinstance(info.get("size"), int)
                and not isinstance(info.get("size"), bool)
                and isinstance(info.get("sha256"), str)
            ):
                raise ValueError(f"bad manifest entry for product {name!r}")
        return v

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form.

        Returns:
            A JSON-ready dict with a ``"format"`` field.
        """
        return {"format": FORMAT, **self.model_dump(mode="json")}
