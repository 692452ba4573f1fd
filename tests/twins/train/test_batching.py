"""The trainer's collate: default_collate, or a dataset's own Collated batch unchanged."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from twins.train.batching import Collated, collate


class _Windows(Dataset):
    """Sample i = rows i..i+2 of a table; __getitems__ gathers a batch in one index_select."""

    def __init__(self, batched: bool) -> None:
        self.table = torch.arange(40.0).view(20, 2)
        self.calls = 0
        if not batched:
            self.__getitems__ = None  # the DataLoader then falls back to __getitem__

    def __len__(self) -> int:
        return 18

    def __getitem__(self, i: int):
        self.calls += 1
        return self.table[i : i + 3], torch.tensor(float(i))

    def __getitems__(self, idx):  # noqa: PLW3201
        self.calls += 1
        i = torch.as_tensor(idx)
        rows = (i[:, None] + torch.arange(3)).view(-1)
        return Collated((self.table.index_select(0, rows).view(len(idx), 3, 2), i.float()))


def test_collated_batches_pass_through_and_match_default_collate() -> None:
    fast, slow = _Windows(True), _Windows(False)
    a = list(DataLoader(fast, batch_size=4, collate_fn=collate))
    b = list(DataLoader(slow, batch_size=4, collate_fn=collate))
    assert len(a) == len(b) == 5
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert fast.calls == 5 and slow.calls == 18  # one call per batch vs one per sample
    assert collate([(torch.ones(2), 1), (torch.zeros(2), 2)])[1].tolist() == [1, 2]
