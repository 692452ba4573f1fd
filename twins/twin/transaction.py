"""One update of a twin, as a transaction: staged, fsynced, renamed, committed by replacing
``twin.json`` (see :mod:`twins.twin.store` for the layout and the crash guarantees)."""

from __future__ import annotations

import contextlib
import enum
import logging
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from twins.atomic import fsync_dir, fsync_tree, json_dumps, remove_tree, write_json_atomic
from twins.lock import FileLock
from twins.twin.errors import TwinError, TwinUpdateError
from twins.twin.layout import (
    COMPLETE_FILE,
    HISTORY_DIR,
    PRODUCTS_DIR,
    RECORD_FILE,
    SNAPSHOT_FILE,
    STAGING_DIR,
    STATE_FILE,
    check_key,
    product_manifest,
)
from twins.twin.records import (
    VERSIONS_DIR,
    TwinState,
    UpdateRecord,
    _json_copy,
    _now,
    key_hash,
    version_name,
)

if TYPE_CHECKING:  # annotations only: the store builds transactions, not the reverse
    from twins.twin.store import TwinStore

__all__ = ["UNSET", "Transaction"]

logger = logging.getLogger("twins.twin.store")


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET = _Unset.UNSET


# --------------------------------------------------------------------------------------------
# Transaction


class Transaction:
    """One update of a twin; use through ``with store.transaction(key) as txn:``.

    Entering acquires the twin's lock, runs recovery and re-reads the state. If an update with
    the same key is already committed, :attr:`noop` is True, :attr:`record` is that update's
    record and leaving the block writes nothing. Otherwise the caller writes product files into
    :attr:`products_dir`, may change the state with :meth:`update_state` and fill
    :attr:`summary`; leaving the block normally commits, leaving it with an exception aborts
    (the staging directory is removed, the twin is unchanged) and the exception propagates.

    Attributes:
        store: The store.
        key: Idempotency key.
        noop: True if the key was already committed.
        record: The already committed record (no-op) or, after commit, the new record.
        summary: Domain summary stored in the new record (JSON-serialisable values only).
        action: Record action, ``"update"`` unless set otherwise.
        complete: Set True when :attr:`products_dir` receives the twin's whole product set
            (a restore); lookups of products then stop at this version.
        committed: True once the commit succeeded.
    """

    def __init__(self, store: TwinStore, key: str, wait: bool | float) -> None:
        self.store = store
        self.key = check_key(key, store.path)
        self.noop = False
        self.record: UpdateRecord | None = None
        self._state: TwinState | None = None
        self.summary: dict[str, Any] = {}
        self.action = "update"
        self.complete = False
        self.committed = False
        self._wait = wait
        self._lock: FileLock | None = None
        self._staging: Path | None = None
        self._started = ""
        self._changes: dict[str, Any] = {}
        self._entered = False
        self._closed = False

    # -- context manager ------------------------------------------------------------------

    def __enter__(self) -> Self:
        if self._entered:
            raise TwinUpdateError(f"twin {self.store.path}: a transaction can be entered once")
        self._entered = True
        store = self.store
        # Lock-free fast path: committed history entries never change or disappear, so a key
        # found here stays committed; nothing (not even the lock file) is touched.
        state = store._read_state()
        existing = store._find(self.key, state)
        if existing is None:
            self._lock = store._acquire(self._wait, f"update key={self.key}")
            try:
                self._started = _now()
                store._recover()
                state = store._read_state()
                existing = store._find(self.key, state)
                if existing is None:
                    staging_root = store.path / STAGING_DIR
                    staging_root.mkdir(exist_ok=True)
                    self._staging = staging_root / secrets.token_hex(8)
                    (self._staging / PRODUCTS_DIR).mkdir(parents=True)
            except OSError as exc:
                self._release()
                raise TwinError(
                    f"twin {store.path}: cannot prepare update key={self.key!r}: {exc}",
                    hint="check permissions and free space in the twin directory",
                ) from exc
            except BaseException:
                self._release()
                raise
        self._state = state
        if existing is not None:
            self.noop = True
            self.record = existing
            self._release()
            logger.info(
                "twin %s: update key=%r already committed as v%d, nothing to do",
                store.path,
                self.key,
                existing.version,
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:
            return
        self._closed = True
        if self.noop:
            return
        try:
            if exc_type is not None:
                logger.info(
                    "twin %s: update key=%r aborted by %s",
                    self.store.path,
                    self.key,
                    exc_type.__name__,
                )
                self._abort()
                return
            try:
                self._commit()
            except BaseException:
                self._abort()
                raise
        finally:
            self._release()

    # -- API used inside the block --------------------------------------------------------

    def _require_open(self) -> None:
        if not self._entered or self._closed:
            raise TwinUpdateError(
                f"twin {self.store.path}: transaction key={self.key!r} is not active",
                hint="use it inside `with store.transaction(key) as txn:`",
            )
        if self.noop:
            raise TwinUpdateError(
                f"twin {self.store.path}: update key={self.key!r} is already committed "
                f"(v{self.record.version if self.record else '?'}); nothing may be written",
                hint="check txn.noop before writing",
            )

    @property
    def state(self) -> TwinState:
        """The committed state as it was when the transaction started (read under the lock).

        Raises:
            TwinUpdateError: The transaction has not been entered.
        """
        if self._state is None:
            raise TwinUpdateError(
                f"twin {self.store.path}: transaction key={self.key!r} has not been entered",
                hint="use it inside `with store.transaction(key) as txn:`",
            )
        return self._state

    @property
    def version(self) -> int:
        """The version this transaction creates (or, for a no-op, the committed one)."""
        if self.record is not None:
            return self.record.version
        return self.state.version + 1

    @property
    def products_dir(self) -> Path:
        """Directory (inside staging) to write this update's product files into.

        Raises:
            TwinUpdateError: The transaction is a no-op or not active.
        """
        self._require_open()
        assert self._staging is not None
        return self._staging / PRODUCTS_DIR

    def update_state(
        self,
        *,
        cursor: str | None | _Unset = UNSET,
        model_ref: str | None | _Unset = UNSET,
        config_hash: str | None | _Unset = UNSET,
        extra: Mapping[str, Any] | _Unset = UNSET,
        undone: tuple[tuple[int, int], ...] | _Unset = UNSET,
    ) -> None:
        """Set fields of the state this update commits; unspecified fields stay as they are.

        Args:
            cursor: New data cursor.
            model_ref: New model reference.
            config_hash: New config hash.
            extra: New domain data; replaces the whole ``extra`` dict (copy
                ``txn.state.extra`` and modify it to merge).
            undone: New :attr:`TwinState.undone` ranges (set by a restore).

        Raises:
            TwinUpdateError: A value has the wrong type, ``extra`` is not JSON-serialisable,
                or the transaction is a no-op or not active.
        """
        self._require_open()
        path = self.store.path
        for name, value in (
            ("cursor", cursor),
            ("model_ref", model_ref),
            ("config_hash", config_hash),
        ):
            if value is UNSET:
                continue
            if value is not None and not isinstance(value, str):
                raise TwinUpdateError(
                    f"twin {path}: {name} must be a string or None, not {type(value).__name__}"
                )
            self._changes[name] = value
        if extra is not UNSET:
            if not isinstance(extra, Mapping):
                raise TwinUpdateError(
                    f"twin {path}: extra must be a mapping, not {type(extra).__name__}"
                )
            try:
                self._changes["extra"] = _json_copy(dict(extra), "extra")
            except ValueError as exc:
                raise TwinUpdateError(f"twin {path}: {exc}") from None
        if undone is not UNSET:
            self._changes["undone"] = tuple((int(a), int(b)) for a, b in undone)

    # -- commit / abort -------------------------------------------------------------------

    def _commit(self) -> None:
        store = self.store
        state = self.state
        staging = self._staging
        assert staging is not None
        path = store.path
        try:
            summary = _json_copy(self.summary, "summary")
        except ValueError as exc:
            raise TwinUpdateError(f"twin {path}: update key={self.key!r}: {exc}") from None
        try:
            manifest = product_manifest(staging / PRODUCTS_DIR)
        except ValueError as exc:
            raise TwinUpdateError(f"twin {path}: update key={self.key!r}: {exc}") from None
        new_state = state.model_copy(update=self._changes)
        version = state.version + 1
        finished = _now()
        record = UpdateRecord(
            version=version,
            key=self.key,
            action=self.action,
            started=self._started,
            finished=finished,
            cursor_before=state.cursor,
            cursor_after=new_state.cursor,
            model_ref=new_state.model_ref,
            config_hash=new_state.config_hash,
            summary=summary,
            products=manifest,
        )
        new_state = new_state.model_copy(
            update={
                "version": version,
                "updated": finished,
                "current": f"{VERSIONS_DIR}/{version_name(version)}",
            }
        )
        record_json = json_dumps(record.to_dict()).encode("utf-8")
        target = path / VERSIONS_DIR / version_name(version)
        try:
            (staging / RECORD_FILE).write_bytes(record_json)
            (staging / SNAPSHOT_FILE).write_text(json_dumps(new_state.to_dict()), encoding="utf-8")
            if self.complete:
                (staging / COMPLETE_FILE).touch()
            fsync_tree(staging)
            self.store._fault("staged")
            if target.exists():  # recovery removed it; something else is writing here
                raise TwinUpdateError(
                    f"twin {path}: {target} appeared during the update; another writer "
                    "ignored the lock",
                )
            os.rename(staging, target)
            self._staging = None
            fsync_dir(path / VERSIONS_DIR)
            fsync_dir(path / STAGING_DIR)
            self.store._fault("renamed")
            write_json_atomic(
                path / HISTORY_DIR / f"{version:06d}-{key_hash(self.key)}.json",
                record.to_dict(),
            )
            self.store._fault("history")
            write_json_atomic(path / STATE_FILE, new_state.to_dict())  # the commit point
            self.store._fault("committed")
        except OSError as exc:
            raise TwinUpdateError(
                f"twin {path}: could not commit update key={self.key!r} as v{version}: {exc}",
                hint="check free space and permissions; the twin is unchanged unless "
                "`status` shows the new version",
            ) from exc
        self.record = record
        self.committed = True
        logger.info(
            "twin %s: committed v%d key=%r (%d products)", path, version, self.key, len(manifest)
        )

    def _abort(self) -> None:
        if self._staging is not None:
            with contextlib.suppress(OSError):
                remove_tree(self._staging)
            self._staging = None
        # If the failure came after the rename, recovery (based on twin.json, so correct
        # whether or not the commit point was reached) removes the uncommitted leftovers.
        try:
            self.store._recover()
        except (OSError, TwinError) as exc:
            logger.warning(
                "twin %s: cleanup after aborted update failed: %s", self.store.path, exc
            )

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
