"""Batches a dataset gathers itself.

``torch.utils.data.DataLoader`` fetches a batch with ``dataset.__getitems__(indices)`` when
the dataset has one (``Subset`` forwards it), then hands the result to ``collate_fn``. A
dataset whose samples are windows of one big tensor can gather a whole batch with a
single ``index_select`` instead of ``batch_size`` Python calls plus a ``torch.stack`` per
field; it wraps the gathered batch in :class:`Collated` and :func:`collate` (the trainer's
default ``collate_fn``) passes it through unchanged. Every other dataset is collated by
``default_collate`` as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch.utils.data import default_collate

__all__ = ["Collated", "collate"]


class Collated:
    """An already collated batch, returned by a dataset's ``__getitems__``.

    Args:
        batch: The batch exactly as ``default_collate`` would have built it from the samples,
            e.g. ``((dynamic (batch, seq, F), static (batch, S)), target (batch, n_out))``.
    """

    __slots__ = ("batch",)

    def __init__(self, batch: Any) -> None:
        self.batch = batch


def collate(samples: Sequence[Any] | Collated) -> Any:
    """``default_collate``, except that a :class:`Collated` batch passes through unchanged."""
    if isinstance(samples, Collated):
        return samples.batch
    return default_collate(samples)  # type: ignore[arg-type]
