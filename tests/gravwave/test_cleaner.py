"""The linear cleaner on synthetic Virgo-like data, and the cleaner file format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gravwave.cleaner import Cleaner, WienerCleaner, load_cleaner
from gravwave.metrics import asd_ratio, out_of_band_ratio
from gravwave.synthetic import SyntheticParams, generate
from twins.errors import DataError


def test_wiener_cleaner_removes_the_linear_coupling_and_round_trips(tmp_path: Path) -> None:
    p = SyntheticParams(duration=64, seed=1)
    train, test = generate(p, segment=0), generate(p, segment=1)
    chans = list(train.witnesses)
    cleaner = WienerCleaner(train.strain.name, chans, p.sample_rate, [p.linear_band], n_taps=128)
    cleaner.fit(np.stack([train.witnesses[c].value for c in chans]), train.strain.value)
    assert isinstance(cleaner, Cleaner)
    w = np.stack([test.witnesses[c].value for c in chans])
    cleaned = test.strain - cleaner.noise(w)
    oracle_ratio = asd_ratio(test.oracle, test.strain, [p.linear_band])
    ratio = asd_ratio(cleaned, test.strain, [p.linear_band])
    assert ratio < 0.5 and ratio < oracle_ratio + 0.15  # near the oracle on unseen data
    assert abs(out_of_band_ratio(cleaned, test.strain, [p.linear_band]) - 1) < 0.01
    again = load_cleaner(cleaner.save(tmp_path / "c.pt"))
    np.testing.assert_array_equal(again.noise(w), cleaner.noise(w))
    assert again.witness_channels == cleaner.witness_channels


def test_bad_cleaner_files_and_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_cleaner(tmp_path / "none.pt")
    torch.save({"kind": "mystery"}, tmp_path / "m.pt")
    with pytest.raises(DataError, match="unknown kind 'mystery'"):
        load_cleaner(tmp_path / "m.pt")
    c = WienerCleaner("V1:h", ["a", "b"], 256.0, [(20.0, 40.0)], n_taps=8)
    with pytest.raises(DataError, match=r"expected \(2, time\)"):
        c.fit(np.zeros((3, 100)), np.zeros(100))
