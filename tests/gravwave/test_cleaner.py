"""The linear cleaner on synthetic Virgo-like data, the cleaner file format and registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gwpy.timeseries import TimeSeries, TimeSeriesDict

from gravwave.cleaners import (
    CLEANERS,
    Cleaner,
    NetworkCleaner,
    WienerCleaner,
    load_cleaner,
    register_cleaner,
)
from gravwave.metrics import asd_ratio, out_of_band
from gravwave.synthetic import SyntheticParams, generate
from twins.errors import ConfigError, DataError


def test_wiener_cleaner_removes_the_linear_coupling_and_round_trips(tmp_path: Path) -> None:
    p = SyntheticParams(duration=64, seed=1)
    train, test = generate(p, segment=0), generate(p, segment=1)
    chans = list(train.witnesses)
    cleaner = WienerCleaner(train.strain.name, chans, p.sample_rate, [p.linear_band], n_taps=128)
    assert cleaner.fit(train.strain, train.witnesses) is cleaner
    assert isinstance(cleaner, Cleaner)
    cleaned = cleaner.clean(test.strain, test.witnesses)
    assert isinstance(cleaned, TimeSeries) and cleaned.t0 == test.strain.t0
    oracle_ratio = asd_ratio(test.oracle, test.strain, [p.linear_band])
    ratio = asd_ratio(cleaned, test.strain, [p.linear_band])
    assert ratio < 0.5 and ratio < oracle_ratio + 0.15  # near the oracle on unseen data
    # Beside the band the cleaner removes the coupling's skirts (fitted over the band widened
    # by its finishing filter's transition) and adds nothing anywhere: the excess over 1 is
    # the least-squares estimation noise q = C L / (fs T) = 7 * 128 / (4096 * 57.6) = 0.4 %
    # (half of it in ASD) plus 3 sigma of the median-Welch ratio (metrics.out_of_band),
    # 3 * 2.4 sqrt(q / (2 * 64 s * 5 Hz)) = 1.8 %.
    oob = out_of_band(cleaned, test.strain, [p.linear_band])
    assert oob.worst < 1.02
    again = load_cleaner(cleaner.save(tmp_path / "c.pt"))
    w = cleaner.witness_array(test.witnesses)
    np.testing.assert_array_equal(again.noise(w), cleaner.noise(w))
    assert again.witness_channels == cleaner.witness_channels
    # refit: a new cleaner of the same configuration; the current one is unchanged
    before = cleaner.noise(w)
    new = cleaner.refit(test.strain, test.witnesses)
    assert new is not cleaner and new.filter.n_taps == 128 and new.bands == cleaner.bands
    np.testing.assert_array_equal(cleaner.noise(w), before)
    assert not np.array_equal(new.noise(w), before)


def test_earlier_wiener_file_layouts_load(tmp_path: Path) -> None:
    """Files written before the Wiener cleaner and its windowed stage were one class."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 8192))
    fs = 1024.0
    wit = TimeSeriesDict((c, TimeSeries(x[i], sample_rate=fs)) for i, c in enumerate("ab"))
    cleaner = WienerCleaner("V1:h", ["a", "b"], fs, [(100.0, 140.0)], n_taps=16, window=4.0)
    cleaner.fit(TimeSeries(np.convolve(x[0], [0.5, 0.2], "same"), sample_rate=fs), wit)
    state = cleaner.state()
    settings = {k: state.pop(k) for k in ("window", "overlap", "finish_length", "attenuation")}
    torch.save({"kind": "wiener-stage", "wiener": state, **settings}, tmp_path / "stage.pt")
    torch.save(state, tmp_path / "plain.pt")  # kind "wiener", no window settings
    stage, plain = load_cleaner(tmp_path / "stage.pt"), load_cleaner(tmp_path / "plain.pt")
    assert isinstance(stage, WienerCleaner) and stage.window == 4.0
    assert isinstance(plain, WienerCleaner) and plain.window == 8.0  # the default
    np.testing.assert_array_equal(stage.noise(x), cleaner.noise(x))


def test_bad_cleaner_files_and_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_cleaner(tmp_path / "none.pt")
    torch.save({"kind": "mystery"}, tmp_path / "m.pt")
    with pytest.raises(DataError, match="unknown kind 'mystery'"):
        load_cleaner(tmp_path / "m.pt")
    c = WienerCleaner("V1:h", ["a", "b"], 256.0, [(20.0, 40.0)], n_taps=8)
    with pytest.raises(DataError, match=r"expected \(2, time\)"):
        c.noise(np.zeros((3, 100)))
    strain = TimeSeries(np.zeros(100), sample_rate=256.0)
    with pytest.raises(DataError, match=r"witness channel\(s\) \['b'\] missing"):
        c.fit(strain, TimeSeriesDict(a=TimeSeries(np.zeros(100), sample_rate=256.0)))
    with pytest.raises(DataError, match="strain at 512 Hz, the cleaner works at 256 Hz"):
        c.fit(TimeSeries(np.zeros(100), sample_rate=512.0), TimeSeriesDict())
    with pytest.raises(DataError, match="not fitted"):
        c.noise(np.zeros((2, 100)))


def test_registry_is_explicit() -> None:
    assert CLEANERS["deepclean"] is NetworkCleaner and CLEANERS["wiener"] is WienerCleaner

    class Other(WienerCleaner):
        kind = "wiener"

    with pytest.raises(ConfigError, match="cleaner kind 'wiener' is already WienerCleaner"):
        register_cleaner(Other)
