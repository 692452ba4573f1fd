"""The cleaner registry: file ``"kind"`` -> class, and loading a cleaner file.

The registry is explicit: the built-in kinds are listed here, and a new cleaner class is
added with :func:`register_cleaner` (a plugin or a test), never by importing a module for
its side effects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gravwave.cleaners.base import Cleaner
from gravwave.cleaners.cascade import CascadeCleaner
from gravwave.cleaners.network import NetworkCleaner
from gravwave.cleaners.wiener import WienerCleaner
from twins.errors import ConfigError, DataError

__all__ = ["CLEANERS", "cleaner_from_state", "load_cleaner", "register_cleaner"]

#: File ``"kind"`` -> cleaner class. ``"wiener-stage"`` is the earlier file layout of the
#: Wiener cleaner in windowed form, read by :meth:`WienerCleaner.from_state`.
CLEANERS: dict[str, type[Cleaner]] = {
    WienerCleaner.kind: WienerCleaner,
    "wiener-stage": WienerCleaner,
    NetworkCleaner.kind: NetworkCleaner,
    CascadeCleaner.kind: CascadeCleaner,
}


def register_cleaner(cls: type[Cleaner]) -> type[Cleaner]:
    """Add ``cls`` under ``cls.kind``; returns ``cls``.

    Raises:
        ConfigError: ``cls.kind`` already names another class.
    """
    known = CLEANERS.get(cls.kind)
    if known is not None and known is not cls:
        raise ConfigError(f"cleaner kind {cls.kind!r} is already {known.__name__}")
    CLEANERS[cls.kind] = cls
    return cls


def cleaner_from_state(state: Any, source: str = "cleaner state") -> Cleaner:
    """Rebuild a cleaner from its :meth:`~gravwave.cleaners.base.Cleaner.state`.

    Raises:
        DataError: Not a cleaner state, or an unknown kind.
    """
    kind = state.get("kind") if isinstance(state, dict) else None
    cls = CLEANERS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        known = ", ".join(sorted(CLEANERS))
        raise DataError(f"{source}: unknown kind {kind!r} (known: {known})")
    return cls.from_state(state)


def load_cleaner(path: str | Path) -> Cleaner:
    """Load any registered cleaner from its file.

    Raises:
        DataError: Missing file, unreadable file or unknown kind.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"cleaner file {path} not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same user error
        raise DataError(f"cleaner file {path} cannot be read: {exc}") from None
    return cleaner_from_state(state, f"cleaner file {path}")
