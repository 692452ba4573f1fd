"""One twin contract for every domain: init, open, update, simulate, status, history, rollback.

A domain's twin subclasses :class:`Twin` and declares its typed models:

* ``InitOptions``: what ``twins twin init DIR`` needs (files of a trained model, a policy);
* ``UpdateOptions``: options of an update besides its data files (channels, bounds);
* ``Scenario``: the what-if of ``simulate``;

and returns typed results: an :class:`UpdateResult` subclass from ``update``, a
:class:`SimulationResult` subclass from ``simulate`` and a :class:`TwinStatus` (subclass)
from ``status``. ``history`` and ``rollback`` are the core's, the same for every twin. The
command line (:mod:`twins.twin.commands`) is built from these models, so no domain parses
arguments.

Example:
    >>> twin = DroughtTwin.open("twins-demo/hydrology/drought-twin")  # doctest: +SKIP
    >>> twin.update(["era5land_2021-03.nc"]).version  # doctest: +SKIP
    7
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict

from twins.twin.records import UpdateRecord
from twins.twin.restore import restore_version
from twins.twin.store import TwinStore, format_status

#: Exit status of ``twins twin update`` when the input was already ingested (nothing new);
#: 0 means updated, and failures keep the CLI's codes (1 runtime, 2 config, 3 data, 4 twin,
#: 75 locked). Schedulers (cron, systemd timers, Slurm, CronJobs) branch on these.
EXIT_NOTHING_NEW = 10

__all__ = [
    "EXIT_NOTHING_NEW",
    "NoOptions",
    "RollbackResult",
    "SimulationResult",
    "Twin",
    "TwinResult",
    "TwinStatus",
    "UpdateResult",
    "rollback",
]


class NoOptions(BaseModel):
    """Options model of a command that takes none."""

    model_config = ConfigDict(extra="forbid")


class TwinResult(BaseModel):
    """Base of typed results: frozen, JSON-printable by :meth:`to_json`."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    #: Fields left out of :meth:`to_json` (in-memory objects such as a dataset).
    json_exclude: ClassVar[frozenset[str]] = frozenset()

    def to_json(self) -> str:
        """The result as one line of JSON (what the command line prints)."""
        return self.model_dump_json(exclude=set(self.json_exclude))


class UpdateResult(TwinResult):
    """What an update did.

    Attributes:
        version: The version holding the update (the existing one for a no-op).
        noop: True when the input was already ingested (nothing written).
        cursor: Data cursor after the update.
        action: ``"update"``, ``"restore"``, ...
        key: Idempotency key of the update.
    """

    version: int
    noop: bool
    cursor: str | None
    action: str = "update"
    key: str = ""

    @classmethod
    def core_fields(cls, record: UpdateRecord, noop: bool) -> dict[str, Any]:
        """The base fields, read from a committed record (for subclasses' constructors)."""
        return {
            "version": record.version,
            "noop": noop,
            "cursor": record.cursor_after,
            "action": record.action,
            "key": record.key,
        }


class RollbackResult(UpdateResult):
    """What a rollback did.

    Attributes:
        restored: The version the twin returned to.
        undone: First and last version taken back.
        model_ref: Model reference in force after the rollback.
    """

    restored: int
    undone: tuple[int, int]
    model_ref: str | None


class SimulationResult(TwinResult):
    """Base of a domain's what-if answer; the twin is never changed by a simulation.

    Attributes:
        scenario: The scenario as validated.
    """

    scenario: dict[str, Any]


class TwinStatus(TwinResult):
    """Where a twin stands.

    Attributes:
        path: The twin directory.
        kind: Its domain.
        version: Committed version.
        cursor: Data cursor.
        model_ref: Model in use.
        updates: Number of committed updates (versions after init).
        last_update: ``{"version", "key", "action", "finished"}`` of the newest, or None.
        locked: True while an update holds the lock.
        text: The printable form (what ``twins twin status`` shows).
    """

    path: str
    kind: str
    version: int
    cursor: str | None
    model_ref: str | None
    updates: int
    last_update: dict[str, Any] | None
    locked: bool
    text: str

    @classmethod
    def core_fields(cls, store: TwinStore, extra_lines: Sequence[str] = ()) -> dict[str, Any]:
        """The base fields of ``store``'s status; ``extra_lines`` are appended to the text."""
        st = store.status()
        return {
            "path": st["dir"],
            "kind": st["kind"],
            "version": st["version"],
            "cursor": st["cursor"],
            "model_ref": st["model_ref"],
            "updates": st["updates"],
            "last_update": st["last_update"],
            "locked": st["locked"],
            "text": "\n".join([format_status(st), *extra_lines]),
        }


class Twin(ABC):
    """A digital twin in a directory: the contract every domain implements.

    Args:
        store: The opened store (use :meth:`open` or :meth:`init`).
    """

    #: Domain name: the twin's ``kind`` in ``twin.json``.
    kind: ClassVar[str]
    #: Options of ``twins twin init``.
    InitOptions: ClassVar[type[BaseModel]] = NoOptions
    #: Options of ``twins twin update`` besides ``--data``.
    UpdateOptions: ClassVar[type[BaseModel]] = NoOptions
    #: The what-if of ``twins twin simulate``.
    Scenario: ClassVar[type[BaseModel]] = NoOptions
    #: Whether ``update`` needs data files (``--data``); a twin that observes a generator
    #: (the toy) does not.
    update_needs_data: ClassVar[bool] = True

    def __init__(self, store: TwinStore) -> None:
        self.store = store

    @property
    def path(self) -> Path:
        """The twin directory."""
        return self.store.path

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Self:
        """Open an existing twin of this domain.

        Raises:
            TwinNotFoundError: No twin there.
            TwinKindError: The twin belongs to another domain.
        """
        return cls(TwinStore.open(path, kind=cls.kind))

    @classmethod
    @abstractmethod
    def create(cls, path: str | os.PathLike[str], options: BaseModel) -> Self:
        """Create a twin at ``path`` from ``options`` (an ``InitOptions``): ``twins twin init``.

        Raises:
            TwinExistsError: ``path`` is not free.
        """

    @abstractmethod
    def update(
        self,
        data: Sequence[Path],
        options: BaseModel | None = None,
        *,
        wait: bool | float = False,
    ) -> UpdateResult:
        """Ingest new data after the cursor, as one transaction.

        Args:
            data: Data files (the domain's Python API may accept in-memory objects too).
            options: An ``UpdateOptions``; None for the defaults.
            wait: False: refuse at once if another update holds the lock; True: wait; a
                number: wait up to that many seconds.
        """

    @abstractmethod
    def simulate(self, scenario: BaseModel) -> SimulationResult:
        """Answer a what-if (a ``Scenario``) from the current state; changes nothing."""

    def status(self) -> TwinStatus:
        """Where the twin stands (domains extend it with their own fields and lines)."""
        return TwinStatus(**TwinStatus.core_fields(self.store))

    def history(self) -> list[UpdateRecord]:
        """Every committed version's record, init (version 0) first."""
        return [self.store.record(0), *self.store.history()]

    def rollback(self, version: int, *, wait: bool | float = False) -> RollbackResult:
        """Return the twin to an earlier version: data cursor, model, domain state and
        products as they were then. A bad input that got in is taken out this way; it may then
        be ingested again, corrected (see :func:`twins.twin.restore.restore_version`).

        Raises:
            TwinVersionError: ``version`` is not an earlier committed version.
        """
        return rollback(self.store, version, wait=wait)


def rollback(store: TwinStore, version: int, *, wait: bool | float = False) -> RollbackResult:
    """:meth:`Twin.rollback` on a bare store (a twin whose domain is not installed)."""
    before = store.state.version
    record = restore_version(store, version, wait=wait)
    first, last = record.summary["undone"]
    return RollbackResult(
        **UpdateResult.core_fields(record, noop=record.version == before),
        restored=int(record.summary["restored"]),
        undone=(int(first), int(last)),
        model_ref=record.model_ref,
    )
