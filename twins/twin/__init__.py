"""A domain-free, crash-safe, transactional store for digital twins.

A twin is a directory holding its state (``twin.json``), one immutable directory per
committed version (``versions/vNNNNNN/`` with that update's ``products/`` and ``update.json``)
and an append-only ``history/``. Updates run as transactions under an exclusive ``flock``
lock; replacing ``twin.json`` is the single commit point, so a crash at any instant leaves
the twin either as before or fully updated. Each update carries an idempotency key: an update
whose key is already committed is a no-op.

Example:
    >>> store = TwinStore.init("twin", kind="hydrology", cursor="2021-02")  # doctest: +SKIP
    >>> with store.transaction("sha256:...:2021-03") as txn:  # doctest: +SKIP
    ...     if not txn.noop:
    ...         (txn.products_dir / "spi.nc").write_bytes(data)
    ...         txn.update_state(cursor="2021-03")
    ...         txn.summary["cells"] = 1234
"""

from twins.lock import LockHolder
from twins.twin.contract import (
    EXIT_NOTHING_NEW,
    NoOptions,
    RollbackResult,
    SimulationResult,
    Twin,
    TwinResult,
    TwinStatus,
    UpdateResult,
)
from twins.twin.restore import restore_version, visible_products
from twins.twin.store import (
    FORMAT,
    ProductNotFoundError,
    Transaction,
    TwinCorruptError,
    TwinError,
    TwinExistsError,
    TwinKindError,
    TwinLockedError,
    TwinNotFoundError,
    TwinState,
    TwinStore,
    TwinUpdateError,
    TwinVersionError,
    UpdateRecord,
    format_status,
    key_hash,
)

__all__ = [
    "EXIT_NOTHING_NEW",
    "NoOptions",
    "RollbackResult",
    "SimulationResult",
    "Twin",
    "TwinResult",
    "TwinStatus",
    "UpdateResult",
    "FORMAT",
    "LockHolder",
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
    "restore_version",
    "visible_products",
]
