"""Multi-channel Wiener filter: recovery of known linear couplings, conditioning, state."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from gwpy.timeseries import TimeSeries, TimeSeriesDict
from scipy import signal

from gravwave.cleaners import WienerCleaner
from gravwave.cleaners.fir import BlockFIR, fir_whole_window
from gravwave.models.wiener import WienerFilter

FS = 1024.0


def _coupled(
    rng: np.random.Generator, n: int, noise: float
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray], np.ndarray]:
    """Three white witnesses through short FIR filters (delays 0, 3, 6) plus white noise."""
    x = rng.standard_normal((3, n))
    filters = [np.r_[np.zeros(3 * c), rng.standard_normal(8)] for c in range(3)]
    coupling = sum(signal.lfilter(h, 1.0, x[c]) for c, h in enumerate(filters))
    eps = noise * rng.standard_normal(n)
    return x, coupling + eps, filters, eps


def test_recovers_known_fir_coupling() -> None:
    rng = np.random.default_rng(0)
    n, noise, taps = 61_440, 0.1, 32
    x, y, filters, eps = _coupled(rng, n, noise)
    wf = WienerFilter(taps, FS).fit(x, y)
    residual = (y - wf.predict(x))[taps:]
    # Least squares with p = 96 parameters on n samples leaves (1 - p/n) of the noise power;
    # the variance estimate itself has a relative standard deviation sqrt(2 / n) = 0.6 %.
    ratio = residual.var() / eps[taps:].var()
    assert abs(ratio - (1 - 3 * taps / n)) < 5 * np.sqrt(2 / n)
    # Each tap's error has standard deviation about noise / sqrt(n) = 4e-4.
    assert wf.taps is not None
    for c, h in enumerate(filters):
        expected = np.r_[h, np.zeros(taps - h.size)]
        np.testing.assert_allclose(wf.taps[c], expected, atol=6 * noise / np.sqrt(n))


def test_in_band_fit_subtracts_in_band_and_leaves_rest() -> None:
    rng = np.random.default_rng(1)
    n = 120 * int(FS)
    x = rng.standard_normal((2, n))
    resonance = signal.butter(3, [115.0, 135.0], btype="bandpass", output="sos", fs=FS)
    y = 3.0 * signal.sosfilt(resonance, x[0]) + 0.02 * rng.standard_normal(n)  # causal coupling
    half = n // 2
    wf = WienerFilter(128, FS, bands=[(100.0, 150.0)]).fit(x[:, :half], y[:half])
    cleaned = y[half:] - wf.predict(x[:, half:])  # held-out half
    f, p_raw = signal.welch(y[half:], fs=FS, nperseg=2048)
    _, p_clean = signal.welch(cleaned, fs=FS, nperseg=2048)
    asdr = np.sqrt(p_clean / p_raw)
    in_band = (f >= 110.0) & (f < 140.0)
    assert asdr[in_band].mean() < 0.1
    out_of_band = (f > 20.0) & (f < 60.0) | (f > 250.0) & (f < 450.0)
    np.testing.assert_allclose(asdr[out_of_band], 1.0, atol=0.01)


def test_centred_taps_reach_the_future() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 20_000))
    y = np.roll(x[0], -5)  # y[t] = x[t + 5]: the witness lags the strain
    causal = WienerFilter(16, FS).fit(x, y)
    centred = WienerFilter(16, FS, centred=True).fit(x, y)
    core = slice(64, -64)
    assert np.var((y - causal.predict(x))[core]) > 0.9
    assert np.var((y - centred.predict(x))[core]) < 1e-4
    assert centred.lag0 == -8 and centred.taps is not None
    assert np.argmax(np.abs(centred.taps[0])) == 8 - 5  # tap k multiplies x[t - k - lag0]


def test_duplicated_witness_is_regularised() -> None:
    rng = np.random.default_rng(3)
    x, y, filters, _ = _coupled(rng, 30_000, 0.1)
    dup = np.concatenate([x, x[:1]])  # channel 3 duplicates channel 0: R is singular
    wf = WienerFilter(32, FS, ridge=1e-6).fit(dup, y)
    assert wf.taps is not None and np.isfinite(wf.taps).all()
    # The ridge picks the minimum-norm split: the coupling is shared evenly.
    np.testing.assert_allclose(wf.taps[0], wf.taps[3], atol=1e-3)
    np.testing.assert_allclose(wf.taps[0] + wf.taps[3], np.r_[filters[0], np.zeros(24)], atol=0.01)
    assert np.var((y - wf.predict(dup))[32:]) < 0.0102
    # A large ridge shrinks the taps.
    strong = WienerFilter(32, FS, ridge=10.0).fit(dup, y)
    assert strong.taps is not None and np.abs(strong.taps).sum() < np.abs(wf.taps).sum()


def test_silent_witness_without_ridge_falls_back(caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(4)
    x, y, _, _ = _coupled(rng, 20_000, 0.1)
    silent = np.concatenate([x, np.zeros((1, x.shape[1]))])
    with caplog.at_level(logging.WARNING, logger="gravwave.models.wiener"):
        wf = WienerFilter(16, FS, ridge=0.0).fit(silent, y)
    assert "singular" in caplog.text
    assert wf.taps is not None and np.isfinite(wf.taps).all()
    np.testing.assert_array_equal(wf.taps[3], 0.0)


def test_state_round_trip() -> None:
    rng = np.random.default_rng(5)
    x, y, _, _ = _coupled(rng, 10_000, 0.1)
    wf = WienerFilter(24, FS, bands=[(20.0, 80.0), (200.0, 300.0)], centred=True).fit(x, y)
    state = wf.state_dict()
    again = WienerFilter.from_state_dict(state)
    np.testing.assert_array_equal(again.predict(x), wf.predict(x))
    assert again.bands == [(20.0, 80.0), (200.0, 300.0)] and again.centred
    with pytest.raises(ValueError, match="unknown"):
        WienerFilter.from_state_dict({**state, "surprise": 1})
    with pytest.raises(ValueError, match="inconsistent"):
        WienerFilter.from_state_dict({**state, "n_taps": 10})


def test_input_errors() -> None:
    wf = WienerFilter(8, FS)
    with pytest.raises(RuntimeError, match="not fitted"):
        wf.predict(np.zeros((2, 100)))
    with pytest.raises(ValueError, match="target"):
        wf.fit(np.ones((2, 100)), np.ones(99))
    with pytest.raises(ValueError, match="2 \\* n_taps"):
        wf.fit(np.ones((2, 10)), np.ones(10))
    with pytest.raises(ValueError, match="NaN"):
        wf.fit(np.full((2, 100), np.nan), np.ones(100))
    with pytest.raises(ValueError, match="n_taps"):
        WienerFilter(0, FS)
    x = np.random.default_rng(0).standard_normal((2, 100))
    with pytest.raises(ValueError, match="channels"):
        wf.fit(x, x[0]).predict(x[:1])


def test_fit_at_full_scale() -> None:
    """4 witnesses x 256 s at 4096 Hz with 1024 taps (FFT correlations). How fast is a
    benchmark's question (benchmarks/bench_cleaning.py), never a timed test."""
    rng = np.random.default_rng(6)
    n = 256 * 4096
    x = rng.standard_normal((4, n))
    y = x[0] + 0.5 * np.roll(x[1], 7) + 0.1 * rng.standard_normal(x.shape[1])
    wf = WienerFilter(1024, 4096.0).fit(x, y)
    assert wf.taps is not None
    # each tap's error has a standard deviation of about noise / sqrt(n) = 1e-4: 0.01 is 100 of
    # them (the other 4 x 1024 - 2 taps are free parameters too, each as noisy)
    assert abs(wf.taps[0, 0] - 1.0) < 0.01 and abs(wf.taps[1, 7] - 0.5) < 0.01


def test_witness_selection_keeps_the_coupled_witness_and_lowers_the_held_out_residual() -> None:
    rng = np.random.default_rng(7)
    n = 120 * int(FS)
    x = rng.standard_normal((12, n))  # witness 0 couples; 1-11 do not
    resonance = signal.butter(3, [115.0, 135.0], btype="bandpass", output="sos", fs=FS)
    y = 3.0 * signal.sosfilt(resonance, x[0]) + rng.standard_normal(n)
    half, bands, taps = n // 2, [(100.0, 150.0)], 128
    every = WienerFilter(taps, FS, bands=bands).fit(x[:, :half], y[:half])
    chosen = WienerFilter(taps, FS, bands=bands, select_channels=True)
    chosen.fit(x[:, :half], y[:half])
    assert chosen.taps is not None and every.taps is not None
    assert np.any(chosen.taps[0] != 0) and not np.any(chosen.taps[1:])
    # the kept witness's taps solve the same normal equations as a fit on it alone
    alone = WienerFilter(taps, FS, bands=bands).fit(x[:1, :half], y[:half])
    assert alone.taps is not None
    np.testing.assert_allclose(chosen.taps[0], alone.taps[0], rtol=1e-9, atol=0)
    # 11 uncoupled witnesses fitted to noise add about 11 x 128 taps x (100 / 1024) of the
    # band's ~6000 effective samples: 2.3 % of the residual power on unseen data, against a
    # scatter of the difference of about 2 sqrt(0.023 / 6000) = 0.4 %: selection is lower
    held = signal.sosfiltfilt(signal.butter(8, bands[0], "bandpass", output="sos", fs=FS), y)

    def residual(wf: WienerFilter) -> float:
        pred = signal.sosfiltfilt(
            signal.butter(8, bands[0], "bandpass", output="sos", fs=FS), wf.predict(x)
        )
        return float(np.var((held - pred)[half + taps :]))

    assert residual(chosen) < residual(every) * (1 - 0.01)
    # the block FIR skips the unselected witnesses and gives the same output (float64 FFT
    # convolutions of 2^12-2^13 points round at ~1e-13 of taps x data; a witness skipped
    # wrongly would differ by its whole share)
    win = x[None, :, : 4 * int(FS)]
    assert chosen.witness_mean is not None
    np.testing.assert_allclose(
        BlockFIR(chosen.taps, chosen.witness_mean)(win),
        fir_whole_window(win, chosen.taps, chosen.witness_mean),
        rtol=0,
        atol=1e-9 * float(np.abs(chosen.taps).sum() * np.abs(win).max()),
    )


def test_wiener_cleaner_keeps_its_selection_setting_through_its_state() -> None:
    rng = np.random.default_rng(8)
    n = 40 * int(FS)
    x = rng.standard_normal((3, n))
    y = 2.0 * signal.lfilter([0.5, -0.3, 0.2], [1.0], x[0]) + rng.standard_normal(n)
    chans = ["a", "b", "c"]
    wit = TimeSeriesDict((c, TimeSeries(x[i], sample_rate=FS)) for i, c in enumerate(chans))
    cleaner = WienerCleaner("V1:h", chans, FS, [(100.0, 140.0)], n_taps=16, select_channels=True)
    cleaner.fit(TimeSeries(y, sample_rate=FS), wit)
    again = WienerCleaner.from_state(cleaner.state())
    assert again.select_channels and again.filter.select_channels
    assert cleaner.filter.taps is not None and again.filter.taps is not None
    np.testing.assert_array_equal(again.filter.taps, cleaner.filter.taps)
    old = cleaner.state()
    del old["select_channels"]  # a file written before the setting: every witness, as fitted
    assert not WienerCleaner.from_state(old).select_channels
