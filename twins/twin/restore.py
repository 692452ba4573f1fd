"""Take a twin back to an earlier version: its data cursor, model, domain state and products.

A restore is itself a committed version (action ``"restore"``), so nothing is deleted and the
history tells what happened. Its ``products/`` holds hard links to every product that was
current at the restored version, and lookups stop there, so products of the versions it took
back are no longer found. Their idempotency keys stop counting as ingested
(:attr:`twins.twin.records.TwinState.undone`): the data they brought in may be ingested again,
corrected. This is how a bad month or segment that got into a twin is taken out.

Example:
    >>> record = restore_version(TwinStore.open("twin"), 3)  # doctest: +SKIP
    >>> record.action, record.summary["restored"]  # doctest: +SKIP
    ('restore', 3)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from twins.twin.errors import TwinCorruptError, TwinUpdateError, TwinVersionError
from twins.twin.layout import COMPLETE_FILE, PRODUCTS_DIR, SNAPSHOT_FILE
from twins.twin.records import TwinState, UpdateRecord
from twins.twin.store import TwinStore

__all__ = ["restore_version", "visible_products"]

log = logging.getLogger(__name__)


def visible_products(store: TwinStore, version: int) -> dict[str, Path]:
    """Every product a lookup at ``version`` would find, by relative POSIX name.

    Args:
        store: The twin.
        version: A committed version.

    Returns:
        ``{name: path}``, each path inside the newest version <= ``version`` holding ``name``.

    Raises:
        TwinVersionError: ``version`` is not committed.
    """
    store.version_dir(version)  # validates the number
    found: dict[str, Path] = {}
    for v in range(version, -1, -1):
        vdir = store.version_dir(v)
        products = vdir / PRODUCTS_DIR
        for file in sorted(products.rglob("*")):
            if file.is_file():
                found.setdefault(file.relative_to(products).as_posix(), file)
        if (vdir / COMPLETE_FILE).is_file():
            break
    return found


def _snapshot(store: TwinStore, version: int) -> TwinState:
    file = store.version_dir(version) / SNAPSHOT_FILE
    try:
        return TwinState.from_dict(json.loads(file.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise TwinVersionError(
            f"twin {store.path}: version {version} has no state snapshot ({file.name}; it was "
            "committed by an older twins), so it cannot be restored",
            hint="restore a version committed since, or re-create the twin",
        ) from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise TwinCorruptError(f"twin {store.path} is corrupt: {file} is invalid: {exc}") from None


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)  # products never change once committed: sharing the inode is safe
    except OSError:
        shutil.copy2(src, dst)  # file systems without hard links


def _merge(ranges: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    merged: list[tuple[int, int]] = []
    for first, last in sorted(ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return tuple(merged)


def restore_version(store: TwinStore, version: int, *, wait: bool | float = False) -> UpdateRecord:
    """Commit a new version equal to ``version``: cursor, model, config hash, domain state and
    products as they were then.

    Running it again right after (the current version is already a restore of ``version``)
    changes nothing and returns that restore's record.

    Args:
        store: The twin.
        version: Committed version to return to; it must be older than the current one.
        wait: As in :meth:`TwinStore.transaction`.

    Returns:
        The record of the restore (action ``"restore"``, summary ``{"restored": version,
        "undone": [first, last]}``).

    Raises:
        TwinVersionError: ``version`` is not committed, is the current version, or has no
            state snapshot.
        TwinLockedError: Another update holds the lock.
    """
    if isinstance(version, bool) or not isinstance(version, int):
        raise TwinVersionError(f"twin {store.path}: version must be an integer, not {version!r}")
    current = store.state.version
    store.version_dir(version)  # a clear error for an uncommitted number
    last = store.record(current)
    if last.action == "restore" and last.summary.get("restored") == version:
        log.info("twin %s: v%d already restores v%d, nothing to do", store.path, current, version)
        return last
    if version == current:
        raise TwinVersionError(
            f"twin {store.path}: v{version} is the current version; nothing to restore",
            hint="name an earlier version (twins twin history DIR lists them)",
        )
    snapshot = _snapshot(store, version)
    with store.transaction(f"restore:v{version}:at-v{current}", wait=wait) as txn:
        if not txn.noop:
            at = txn.state.version
            if at != current:
                raise TwinUpdateError(
                    f"twin {store.path} moved from v{current} to v{at} while restoring",
                    hint="run the rollback again",
                )
            for name, src in visible_products(store, version).items():
                _link(src, txn.products_dir / name)
            txn.action = "restore"
            txn.complete = True
            txn.update_state(
                cursor=snapshot.cursor,
                model_ref=snapshot.model_ref,
                config_hash=snapshot.config_hash,
                extra=snapshot.extra,
                undone=_merge([*snapshot.undone, (version + 1, at)]),
            )
            txn.summary.update({"restored": version, "undone": [version + 1, at]})
    assert txn.record is not None
    log.info(
        "twin %s: v%d restores v%d (cursor %s)",
        store.path,
        txn.record.version,
        version,
        snapshot.cursor,
    )
    return txn.record
