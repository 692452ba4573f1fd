"""A domain-free, crash-safe, transactional store for a digital twin's state and products.

Layout of a twin directory::

    <twin>/
      twin.json                 the state; replacing it is the single commit point
      .lock                     flock target + holder note (informational)
      versions/v000000/         made by init: products/ + update.json
      versions/v000001/         one immutable directory per committed update
        products/...            the files that update produced
        update.json             its UpdateRecord (with a size + sha256 manifest of products/)
      history/000001-<h>.json   append-only copy of each committed UpdateRecord
                                (<h> = first 16 hex digits of sha256(key))
      staging/<random>/         an update under construction

An update is built in ``staging/<random>/``, fsynced (files and directories), renamed to
``versions/vNNNNNN``, its history entry is written (atomically), and finally ``twin.json`` is
replaced atomically (temporary file, fsync, :func:`os.replace`, fsync of the directory). Until
that last step nothing a reader looks at has changed: readers take the committed version from
``twin.json`` and ignore version directories and history entries above it. A crash at any
instant therefore leaves the twin either as before or fully updated. The next writer, under the
lock, runs recovery: it deletes ``staging/*`` and every version directory and history entry
numbered above the committed version.

Writers hold an exclusive ``flock`` on ``.lock`` (see :mod:`twins.twin.lock`); readers take no
lock, since committed version directories and history entries never change or disappear.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, Self

from twins.twin.atomic import (
    fsync_dir,
    fsync_tree,
    json_dumps,
    remove_tree,
    sha256_file,
    write_json_atomic,
)
from twins.twin.errors import (
    ProductNotFoundError,
    TwinCorruptError,
    TwinError,
    TwinExistsError,
    TwinKindError,
    TwinLockedError,
    TwinNotFoundError,
    TwinUpdateError,
    TwinVersionError,
)
from twins.twin.lock import FileLock, LockHolder, probe_lock, read_holder
from twins.twin.records import (
    FORMAT,
    VERSIONS_DIR,
    TwinState,
    UpdateRecord,
    _json_copy,
    _now,
    key_hash,
    version_name,
)

__all__ = [
    "FORMAT",
    "ProductNotFoundError",
    "Transaction",
    "TwinCorruptError",
    "TwinError",
    "TwinExistsError",
    "TwinKindError",
    "TwinLockedError",
    "TwinNotFoundError",
    "TwinState",
    "TwinStore",
    "TwinUpdateError",
    "TwinVersionError",
    "UpdateRecord",
    "format_status",
    "key_hash",
]

logger = logging.getLogger(__name__)

STATE_FILE = "twin.json"
LOCK_FILE = ".lock"
STAGING_DIR = "staging"
HISTORY_DIR = "history"
PRODUCTS_DIR = "products"
RECORD_FILE = "update.json"
#: Copy of the state a version committed (``twin.json`` as of that version), kept so that
#: :func:`twins.twin.restore.restore` can bring it back. Versions written before it existed
#: lack it.
SNAPSHOT_FILE = "state.json"
#: Marker of a version whose ``products/`` holds the whole product set (a restore): product
#: lookups stop there instead of searching older versions.
COMPLETE_FILE = "complete"
INIT_KEY = "init"

_VERSION_RE = re.compile(r"^v(\d{6,})$")
_HISTORY_RE = re.compile(r"^(\d{6,})-([0-9a-f]{16})\.json$")
_TMP_RE = re.compile(r"^\..+\.tmp-[0-9a-f]+$")

#: Test hook: when set, called with a point name at each step of a commit, so that a test can
#: kill the process exactly there. Points: ``"staged"``, ``"renamed"``, ``"history"``,
#: ``"committed"`` (updates) and ``"init-built"`` (init).
_fault_hook: Callable[[str], None] | None = None


def _fault(point: str) -> None:
    if _fault_hook is not None:
        _fault_hook(point)


def _listdir(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


def _manifest(products_dir: Path) -> dict[str, dict[str, Any]]:
    """Return the size + sha256 manifest of every regular file below ``products_dir``.

    Raises:
        ValueError: A product is a symbolic link or a special file.
    """
    manifest: dict[str, dict[str, Any]] = {}
    for dirpath, dirnames, filenames in os.walk(products_dir):
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                raise ValueError(f"product {name!r} is a symbolic link")
        for name in filenames:
            path = Path(dirpath, name)
            rel = path.relative_to(products_dir).as_posix()
            if path.is_symlink() or not path.is_file():
                raise ValueError(f"product {rel!r} is not a regular file")
            manifest[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return dict(sorted(manifest.items()))


def _check_key(key: object, path: Path) -> str:
    if not isinstance(key, str) or not key:
        raise TwinUpdateError(
            f"twin {path}: update key must be a non-empty string, not {key!r}",
            hint="pass a key that identifies the update's inputs, e.g. a hash of them",
        )
    return key


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
        self.key = _check_key(key, store.path)
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
            manifest = _manifest(staging / PRODUCTS_DIR)
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
            _fault("staged")
            if target.exists():  # recovery removed it; something else is writing here
                raise TwinUpdateError(
                    f"twin {path}: {target} appeared during the update; another writer "
                    "ignored the lock",
                )
            os.rename(staging, target)
            self._staging = None
            fsync_dir(path / VERSIONS_DIR)
            fsync_dir(path / STAGING_DIR)
            _fault("renamed")
            write_json_atomic(
                path / HISTORY_DIR / f"{version:06d}-{key_hash(self.key)}.json",
                record.to_dict(),
            )
            _fault("history")
            write_json_atomic(path / STATE_FILE, new_state.to_dict())  # the commit point
            _fault("committed")
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


# --------------------------------------------------------------------------------------------
# Store


class TwinStore:
    """A twin directory: state, immutable versions, append-only history and a writer lock.

    Create with :meth:`init` or :meth:`open`. Read methods take no lock and read ``twin.json``
    afresh on each call, so they see commits made by other processes.

    Args:
        path: Absolute path of the twin directory (use :meth:`open` rather than this).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"TwinStore({str(self.path)!r})"

    # -- construction ---------------------------------------------------------------------

    @staticmethod
    def _abspath(path: str | os.PathLike[str]) -> Path:
        return Path(os.path.abspath(Path(path).expanduser()))

    @staticmethod
    def is_twin(path: str | os.PathLike[str]) -> bool:
        """Return whether ``path`` looks like a twin directory (holds ``twin.json``).

        Args:
            path: Directory to test.

        Returns:
            True if ``path/twin.json`` exists.
        """
        return (Path(path) / STATE_FILE).is_file()

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        kind: str,
        *,
        model_ref: str | None = None,
        cursor: str | None = None,
        config_hash: str | None = None,
        extra: Mapping[str, Any] | None = None,
        products: Callable[[Path], object] | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> TwinStore:
        """Create a new twin at version 0, atomically.

        The whole twin is built in a hidden sibling directory ``.<name>.init-<random>``,
        fsynced and renamed to ``path``; a crash leaves either no twin or a complete one (and
        possibly the hidden sibling, which is safe to delete).

        Args:
            path: Twin directory to create. It may exist if it is an empty directory; missing
                parents are created.
            kind: Domain name, e.g. ``"hydrology"``.
            model_ref: Initial model reference.
            cursor: Initial data cursor.
            config_hash: Initial config hash.
            extra: Initial domain data (JSON-serialisable).
            products: Called with the ``products/`` directory of version 0 to write initial
                products (e.g. a climatology); None for no products.
            summary: Summary stored in version 0's record.

        Returns:
            The store.

        Raises:
            TwinExistsError: ``path`` is already a twin, or exists and is not an empty
                directory.
            TwinError: ``kind``, ``extra`` or ``summary`` is invalid, or the directory cannot
                be created.
        """
        target = cls._abspath(path)
        if not isinstance(kind, str) or not kind:
            raise TwinError(f"cannot create twin {target}: kind must be a non-empty string")
        for name, value in (
            ("model_ref", model_ref),
            ("cursor", cursor),
            ("config_hash", config_hash),
        ):
            if value is not None and not isinstance(value, str):
                raise TwinError(f"cannot create twin {target}: {name} must be a string or None")
        try:
            extra_copy = _json_copy(dict(extra or {}), "extra")
            summary_copy = _json_copy(dict(summary or {}), "summary")
        except ValueError as exc:
            raise TwinError(f"cannot create twin {target}: {exc}") from None
        cls._check_free(target)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TwinError(f"cannot create twin {target}: {exc}") from exc
        tmp = target.parent / f".{target.name}.init-{secrets.token_hex(6)}"
        now = _now()
        try:
            v0 = tmp / VERSIONS_DIR / version_name(0)
            (v0 / PRODUCTS_DIR).mkdir(parents=True)
            (tmp / STAGING_DIR).mkdir()
            (tmp / HISTORY_DIR).mkdir()
            (tmp / LOCK_FILE).touch()
            if products is not None:
                products(v0 / PRODUCTS_DIR)
            try:
                manifest = _manifest(v0 / PRODUCTS_DIR)
            except ValueError as exc:
                raise TwinError(f"cannot create twin {target}: {exc}") from None
            record = UpdateRecord(
                version=0,
                key=INIT_KEY,
                action="init",
                started=now,
                finished=_now(),
                cursor_before=None,
                cursor_after=cursor,
                model_ref=model_ref,
                config_hash=config_hash,
                summary=summary_copy,
                products=manifest,
            )
            (v0 / RECORD_FILE).write_text(json_dumps(record.to_dict()), encoding="utf-8")
            state = TwinState(
                kind=kind,
                version=0,
                model_ref=model_ref,
                cursor=cursor,
                config_hash=config_hash,
                created=now,
                updated=record.finished,
                current=f"{VERSIONS_DIR}/{version_name(0)}",
                extra=extra_copy,
            )
            (tmp / STATE_FILE).write_text(json_dumps(state.to_dict()), encoding="utf-8")
            (v0 / SNAPSHOT_FILE).write_text(json_dumps(state.to_dict()), encoding="utf-8")
            fsync_tree(tmp)
            _fault("init-built")
            try:
                os.rename(tmp, target)
            except OSError as exc:
                cls._check_free(target)  # raises the precise error if someone got there first
                raise TwinError(f"cannot create twin {target}: {exc}") from exc
            fsync_dir(target.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                remove_tree(tmp)
            raise
        logger.info("twin %s: created (kind=%s)", target, kind)
        return cls(target)

    @staticmethod
    def _check_free(target: Path) -> None:
        if (target / STATE_FILE).exists():
            raise TwinExistsError(
                f"cannot create twin {target}: it is already a twin",
                hint="use `twins twin status` to inspect it, or choose another directory",
            )
        occupied = target.is_symlink() or (
            target.exists() and (not target.is_dir() or any(target.iterdir()))
        )
        if occupied:
            raise TwinExistsError(
                f"cannot create twin {target}: it exists and is not an empty directory",
                hint="choose a new or empty directory",
            )

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, kind: str | None = None) -> TwinStore:
        """Open an existing twin.

        Args:
            path: The twin directory.
            kind: If given, the twin must be of this domain.

        Returns:
            The store.

        Raises:
            TwinNotFoundError: ``path`` does not exist or holds no ``twin.json``.
            TwinCorruptError: ``twin.json`` is unreadable or invalid, or the current version
                directory is missing.
            TwinKindError: The twin's kind differs from ``kind``.
        """
        target = cls._abspath(path)
        if not target.is_dir():
            what = "does not exist" if not target.exists() else "is not a directory"
            raise TwinNotFoundError(
                f"no twin at {target}: the path {what}",
                hint="check the path, or create the twin first",
            )
        store = cls(target)
        state = store._read_state()
        current = target / state.current
        if not (current / RECORD_FILE).is_file():
            raise TwinCorruptError(
                f"twin {target} is corrupt: twin.json says version {state.version} but "
                f"{current / RECORD_FILE} is missing",
                hint="restore the twin directory from a backup",
            )
        if kind is not None and state.kind != kind:
            raise TwinKindError(
                f"twin {target} is a {state.kind!r} twin, not a {kind!r} twin",
                hint="use the command of its domain, or another directory",
            )
        return store

    # -- reading --------------------------------------------------------------------------

    def _read_state(self) -> TwinState:
        state_file = self.path / STATE_FILE
        try:
            raw = state_file.read_bytes()
        except FileNotFoundError:
            raise TwinNotFoundError(
                f"no twin at {self.path}: {STATE_FILE} is missing",
                hint="check the path, or create the twin first",
            ) from None
        except OSError as exc:
            raise TwinCorruptError(
                f"twin {self.path}: cannot read {state_file}: {exc.strerror or exc}"
            ) from exc
        try:
            return TwinState.from_dict(json.loads(raw.decode("utf-8")))
        except (ValueError, UnicodeDecodeError) as exc:
            raise TwinCorruptError(
                f"twin {self.path} is corrupt: {state_file} is invalid: {exc}",
                hint="restore twin.json from a backup; versions/*/update.json and history/ "
                "hold every committed record",
            ) from None

    @property
    def state(self) -> TwinState:
        """The committed state, read afresh from ``twin.json``."""
        return self._read_state()

    def _read_record(self, file: Path) -> UpdateRecord:
        try:
            return UpdateRecord.from_dict(json.loads(file.read_bytes().decode("utf-8")))
        except FileNotFoundError:
            raise TwinCorruptError(f"twin {self.path} is corrupt: {file} is missing") from None
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise TwinCorruptError(
                f"twin {self.path} is corrupt: {file} is invalid: {exc}"
            ) from None

    def _history_files(self, committed: int) -> list[tuple[int, str, Path]]:
        """Committed history entries as ``(version, key hash, path)``, oldest first."""
        entries = []
        for name in _listdir(self.path / HISTORY_DIR):
            match = _HISTORY_RE.match(name)
            if match and int(match.group(1)) <= committed:
                entries.append(
                    (int(match.group(1)), match.group(2), self.path / HISTORY_DIR / name)
                )
        entries.sort()
        return entries

    def history(self) -> list[UpdateRecord]:
        """Return the records of all committed updates (versions 1…N), oldest first.

        Returns:
            One record per committed update; version 0 (init) is not included.

        Raises:
            TwinCorruptError: A committed history entry is unreadable.
        """
        state = self._read_state()
        return [self._read_record(file) for _v, _h, file in self._history_files(state.version)]

    def _find(self, key: str, state: TwinState) -> UpdateRecord | None:
        wanted = key_hash(key)
        for version, hashed, file in self._history_files(state.version):
            if any(first <= version <= last for first, last in state.undone):
                continue  # taken back by a restore: its input may be ingested again
            if hashed == wanted:
                record = self._read_record(file)
                if record.key == key:
                    return record
        return None

    def find(self, key: str) -> UpdateRecord | None:
        """Return the committed update with this idempotency key, if any.

        Args:
            key: Idempotency key.

        Returns:
            Its record, or None.
        """
        return self._find(_check_key(key, self.path), self._read_state())

    def _committed_version(self, version: int | None) -> tuple[int, TwinState]:
        state = self._read_state()
        if version is None:
            return state.version, state
        if (
            isinstance(version, bool)
            or not isinstance(version, int)
            or not (0 <= version <= state.version)
        ):
            raise TwinVersionError(
                f"twin {self.path} has no version {version!r} (committed versions: "
                f"0..{state.version})"
            )
        return version, state

    def version_dir(self, version: int | None = None) -> Path:
        """Return the directory of a committed version.

        Args:
            version: Version number; None for the current version.

        Returns:
            ``<twin>/versions/vNNNNNN``.

        Raises:
            TwinVersionError: ``version`` is not committed.
        """
        number, _state = self._committed_version(version)
        return self.path / VERSIONS_DIR / version_name(number)

    def record(self, version: int | None = None) -> UpdateRecord:
        """Return the record of a committed version (version 0 is the init record).

        Args:
            version: Version number; None for the current version.

        Returns:
            The record from the version's ``update.json``.

        Raises:
            TwinVersionError: ``version`` is not committed.
            TwinCorruptError: The record is missing or invalid.
        """
        return self._read_record(self.version_dir(version) / RECORD_FILE)

    def product_path(self, name: str) -> Path:
        """Return the newest committed copy of a product.

        Versions are searched from the current one down to 0; the first whose ``products/``
        holds ``name`` wins. The search stops at a version that holds the whole product set
        (a restore), so products of versions it took back are not found.

        Args:
            name: Relative POSIX path of the product inside ``products/``.

        Returns:
            Path of the product file.

        Raises:
            ProductNotFoundError: No committed version has it (or ``name`` is not a plain
                relative path).
        """
        rel = PurePosixPath(name)
        if not name or rel.is_absolute() or ".." in rel.parts:
            raise ProductNotFoundError(
                f"twin {self.path}: invalid product name {name!r} (need a relative path)"
            )
        state = self._read_state()
        for version in range(state.version, -1, -1):
            vdir = self.path / VERSIONS_DIR / version_name(version)
            candidate = vdir / PRODUCTS_DIR / rel
            if candidate.is_file():
                return candidate
            if (vdir / COMPLETE_FILE).is_file():
                break
        raise ProductNotFoundError(
            f"twin {self.path}: no committed version (0..{state.version}) has product {name!r}",
            hint="run an update that produces it",
        )

    def verify(self) -> list[str]:
        """Check every committed version against its manifest (sizes and SHA-256).

        Returns:
            Human-readable problems; empty if the twin is intact.
        """
        problems: list[str] = []
        state = self._read_state()
        for version in range(state.version + 1):
            vdir = self.path / VERSIONS_DIR / version_name(version)
            try:
                record = self._read_record(vdir / RECORD_FILE)
            except TwinCorruptError as exc:
                problems.append(str(exc))
                continue
            if record.version != version:
                problems.append(f"{vdir / RECORD_FILE}: records version {record.version}")
            for rel, info in record.products.items():
                file = vdir / PRODUCTS_DIR / rel
                if not file.is_file():
                    problems.append(f"{file}: missing")
                elif file.stat().st_size != info["size"] or sha256_file(file) != info["sha256"]:
                    problems.append(f"{file}: content differs from the manifest")
        history = self._history_files(state.version)
        if [v for v, _h, _f in history] != list(range(1, state.version + 1)):
            problems.append(
                f"{self.path / HISTORY_DIR}: entries {[v for v, _h, _f in history]} do not "
                f"match versions 1..{state.version}"
            )
        return problems

    # -- writing --------------------------------------------------------------------------

    def _acquire(self, wait: bool | float, purpose: str) -> FileLock:
        lock = FileLock(self.path / LOCK_FILE)
        if lock.held_by_current_thread():
            raise TwinLockedError(
                f"twin {self.path} is already locked by this thread (pid {os.getpid()}); "
                "transactions cannot be nested",
                hint="finish the open transaction first",
                path=self.path,
                holder=read_holder(lock.path),
            )
        try:
            acquired = lock.acquire(wait, purpose)
        except OSError as exc:
            raise TwinError(f"twin {self.path}: cannot open lock file {lock.path}: {exc}") from exc
        if not acquired:
            holder = read_holder(lock.path)
            who = f"{holder.describe()}" if holder else "another process (holder unknown)"
            waited = "" if wait is False else f" after waiting {float(wait):g} s"
            raise TwinLockedError(
                f"twin {self.path} is locked{waited} by {who}",
                hint="retry later or use --wait",
                path=self.path,
                holder=holder,
            )
        return lock

    def _recover(self) -> list[str]:
        """Delete what uncommitted updates left behind. The caller must hold the lock.

        Returns:
            Relative paths removed.
        """
        state = self._read_state()
        removed: list[str] = []
        staging = self.path / STAGING_DIR
        for entry in _listdir(staging):
            remove_tree(staging / entry)
            removed.append(f"{STAGING_DIR}/{entry}")
        versions = self.path / VERSIONS_DIR
        for entry in _listdir(versions):
            match = _VERSION_RE.match(entry)
            if match and int(match.group(1)) > state.version:
                remove_tree(versions / entry)
                removed.append(f"{VERSIONS_DIR}/{entry}")
        history = self.path / HISTORY_DIR
        history.mkdir(exist_ok=True)
        for entry in _listdir(history):
            match = _HISTORY_RE.match(entry)
            if (match and int(match.group(1)) > state.version) or _TMP_RE.match(entry):
                remove_tree(history / entry)
                removed.append(f"{HISTORY_DIR}/{entry}")
        for entry in os.listdir(self.path):
            if _TMP_RE.match(entry):
                remove_tree(self.path / entry)
                removed.append(entry)
        if removed:
            for directory in (self.path, staging, versions, history):
                if directory.is_dir():
                    fsync_dir(directory)
            logger.warning(
                "twin %s: recovery removed uncommitted leftovers: %s",
                self.path,
                ", ".join(sorted(removed)),
            )
        if not (self.path / state.current / RECORD_FILE).is_file():
            raise TwinCorruptError(
                f"twin {self.path} is corrupt: {state.current}/{RECORD_FILE} is missing",
                hint="restore the twin directory from a backup",
            )
        return removed

    def transaction(self, key: str, *, wait: bool | float = False) -> Transaction:
        """Start an update; use as ``with store.transaction(key) as txn:``.

        Args:
            key: Idempotency key (e.g. a hash of the input files and the target month). If
                an update with this key is committed, the transaction is a no-op.
            wait: False: fail at once if another writer holds the lock; True: wait for it;
                a number: wait up to that many seconds.

        Returns:
            The transaction (acquires the lock when entered).

        Raises:
            TwinUpdateError: ``key`` is not a non-empty string.
            TwinLockedError: (on entering) the lock is busy.
        """
        return Transaction(self, key, wait)

    def rollback_to(self, version: int, key: str, *, wait: bool | float = False) -> UpdateRecord:
        """Commit a new version whose model reference is that of an earlier version.

        Only ``model_ref`` changes; the data cursor, config hash and ``extra`` stay as they
        are (the data already assimilated is not un-assimilated). The new record has action
        ``"rollback"`` and summary ``{"rollback_to": version, "model_ref": ...}``.

        Args:
            version: Committed version whose model to restore.
            key: Idempotency key of the rollback.
            wait: As in :meth:`transaction`.

        Returns:
            The new record, or the existing one if ``key`` was already committed.

        Raises:
            TwinVersionError: ``version`` is not committed.
            TwinLockedError: The lock is busy.
        """
        with self.transaction(key, wait=wait) as txn:
            if not txn.noop:
                target = self.record(version)
                txn.action = "rollback"
                txn.update_state(model_ref=target.model_ref)
                txn.summary.update({"rollback_to": version, "model_ref": target.model_ref})
        assert txn.record is not None
        return txn.record

    # -- status ---------------------------------------------------------------------------

    def lock_holder(self) -> LockHolder | None:
        """Return who holds the writer lock now, or None if it is free.

        Returns:
            The holder's note; a holder that has not written its note yet is reported with
            pid 0.
        """
        locked, holder = probe_lock(self.path / LOCK_FILE)
        if not locked:
            return None
        return holder or LockHolder(pid=0, host="?", since="?", purpose="")

    def status(self) -> dict[str, Any]:
        """Return a JSON-ready summary of the twin.

        Returns:
            Keys ``dir``, ``kind``, ``version``, ``cursor``, ``model_ref``, ``config_hash``,
            ``created``, ``updated``, ``updates`` (number of committed updates),
            ``last_update`` (``{"version", "key", "action", "finished"}`` or None),
            ``locked``, ``lock_holder`` (dict or None) and ``extra``.
        """
        state = self._read_state()
        history = self._history_files(state.version)
        last = None
        if history:
            record = self._read_record(history[-1][2])
            last = {
                "version": record.version,
                "key": record.key,
                "action": record.action,
                "finished": record.finished,
            }
        holder = self.lock_holder()
        return {
            "dir": str(self.path),
            "kind": state.kind,
            "version": state.version,
            "cursor": state.cursor,
            "model_ref": state.model_ref,
            "config_hash": state.config_hash,
            "created": state.created,
            "updated": state.updated,
            "updates": len(history),
            "last_update": last,
            "locked": holder is not None,
            "lock_holder": holder.to_dict() if holder else None,
            "extra": state.extra,
        }


def format_status(store: TwinStore | Mapping[str, Any]) -> str:
    """Return a multi-line human description of a twin, as printed by ``twins twin status``.

    Args:
        store: The store, or a dict from :meth:`TwinStore.status`.

    Returns:
        Aligned ``label  value`` lines, without a trailing newline.
    """
    status = store.status() if isinstance(store, TwinStore) else store

    def show(value: Any) -> str:
        return "-" if value is None else str(value)

    last = status["last_update"]
    if last is None:
        last_text = "none (only init)"
    else:
        last_text = f"v{last['version']} {last['action']} key={last['key']} at {last['finished']}"
    holder = status["lock_holder"]
    if holder is None:
        lock_text = "free"
    else:
        lock_text = LockHolder(
            pid=int(holder["pid"]),
            host=str(holder["host"]),
            since=str(holder["since"]),
            purpose=str(holder.get("purpose", "")),
        ).describe()
        lock_text = f"held by {lock_text}"
    rows = [
        ("twin", status["dir"]),
        ("kind", status["kind"]),
        ("version", f"{status['version']} ({status['updates']} updates)"),
        ("cursor", show(status["cursor"])),
        ("model", show(status["model_ref"])),
        ("config hash", show(status["config_hash"])),
        ("created", status["created"]),
        ("updated", status["updated"]),
        ("last update", last_text),
        ("lock", lock_text),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
