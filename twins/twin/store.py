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

Writers hold an exclusive ``flock`` on ``.lock`` (see :mod:`twins.lock`); readers take no
lock, since committed version directories and history entries never change or disappear.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from twins.atomic import (
    fsync_dir,
    fsync_tree,
    json_dumps,
    remove_tree,
    sha256_file,
)
from twins.lock import FileLock, LockHolder, probe_lock, read_holder
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
from twins.twin.layout import (
    COMPLETE_FILE,
    HISTORY_DIR,
    HISTORY_RE,
    INIT_KEY,
    LOCK_FILE,
    PRODUCTS_DIR,
    RECORD_FILE,
    SNAPSHOT_FILE,
    STAGING_DIR,
    STATE_FILE,
    TMP_RE,
    VERSION_RE,
    check_key,
    listdir,
    product_manifest,
)
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
from twins.twin.transaction import Transaction

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

#: Test hook: when set, called with a point name at each step of a commit, so that a test can
#: kill the process exactly there. Points: ``"staged"``, ``"renamed"``, ``"history"``,
#: ``"committed"`` (updates) and ``"init-built"`` (init).
_fault_hook: Callable[[str], None] | None = None


def _fault(point: str) -> None:
    if _fault_hook is not None:
        _fault_hook(point)


# --------------------------------------------------------------------------------------------
# Store


class TwinStore:
    """A twin directory: state, immutable versions, append-only history and a writer lock.

    Create with :meth:`init` or :meth:`open`. Read methods take no lock and read ``twin.json``
    afresh on each call, so they see commits made by other processes.

    Args:
        path: Absolute path of the twin directory (use :meth:`open` rather than this).
    """

    @staticmethod
    def _fault(point: str) -> None:
        """Call the test hook (:data:`_fault_hook`) at a named step of a commit."""
        _fault(point)

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
        cls.check_free(target)
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
                manifest = product_manifest(v0 / PRODUCTS_DIR)
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
                cls.check_free(target)  # raises the precise error if someone got there first
                raise TwinError(f"cannot create twin {target}: {exc}") from exc
            fsync_dir(target.parent)
        except BaseException:
            with contextlib.suppress(OSError):
                remove_tree(tmp)
            raise
        logger.info("twin %s: created (kind=%s)", target, kind)
        return cls(target)

    @staticmethod
    def check_free(target: Path) -> None:
        """Refuse a directory a new twin cannot be created in (a twin, or other content).

        Domains call it before expensive work; :meth:`init` checks again when it commits.

        Raises:
            TwinExistsError: ``target`` is a twin, or exists and is not an empty directory.
        """
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
        for name in listdir(self.path / HISTORY_DIR):
            match = HISTORY_RE.match(name)
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
        return self._find(check_key(key, self.path), self._read_state())

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
        for entry in listdir(staging):
            remove_tree(staging / entry)
            removed.append(f"{STAGING_DIR}/{entry}")
        versions = self.path / VERSIONS_DIR
        for entry in listdir(versions):
            match = VERSION_RE.match(entry)
            if match and int(match.group(1)) > state.version:
                remove_tree(versions / entry)
                removed.append(f"{VERSIONS_DIR}/{entry}")
        history = self.path / HISTORY_DIR
        history.mkdir(exist_ok=True)
        for entry in listdir(history):
            match = HISTORY_RE.match(entry)
            if (match and int(match.group(1)) > state.version) or TMP_RE.match(entry):
                remove_tree(history / entry)
                removed.append(f"{HISTORY_DIR}/{entry}")
        for entry in os.listdir(self.path):
            if TMP_RE.match(entry):
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
