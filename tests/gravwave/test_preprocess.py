"""Band-pass filters and the per-channel Standardizer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gravwave.preprocess import Standardizer, bandpass, bandpass_sos

FS = 1024.0


def _tone(freq: float, n: int = 8192, phase: float = 0.3) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(n) / FS + phase)


def test_bandpass_passes_band_and_is_zero_phase() -> None:
    x = _tone(100.0)
    y = bandpass(x, [(90.0, 110.0)], FS)
    core = slice(1024, -1024)  # away from the filtfilt edge transients
    # Zero phase and unit gain in band: the tone comes through sample by sample.
    np.testing.assert_allclose(y[core], x[core], atol=2e-3)
    # The lag maximising the cross-correlation is 0.
    lags = np.arange(-5, 6)
    xc = [np.dot(y[core], np.roll(x, lag)[core]) for lag in lags]
    assert lags[int(np.argmax(xc))] == 0


@pytest.mark.parametrize("freq", [20.0, 60.0, 150.0, 300.0])
def test_bandpass_attenuates_out_of_band(freq: float) -> None:
    y = bandpass(_tone(freq), [(90.0, 110.0)], FS)
    # Order 8 run twice: >= 80 dB at a factor 1.4 from the edges, far more beyond.
    assert np.abs(y[1024:-1024]).max() < 1e-4


def test_several_bands_are_summed() -> None:
    x = _tone(50.0) + _tone(150.0, phase=1.0) + _tone(100.0)
    bands = [(45.0, 55.0), (140.0, 160.0)]
    y = bandpass(x, bands, FS)
    core = slice(2048, -2048)
    np.testing.assert_allclose(y[core], (_tone(50.0) + _tone(150.0, phase=1.0))[core], atol=5e-3)
    sos = bandpass_sos(bands, FS)
    assert len(sos) == 2 and sos[0].shape == (8, 6)


def test_bandpass_works_along_time_axis_of_channels() -> None:
    x = np.stack([_tone(100.0), _tone(20.0)])
    y = bandpass(x, [(90.0, 110.0)], FS)
    assert y.shape == x.shape
    np.testing.assert_allclose(y[0], bandpass(x[0], [(90.0, 110.0)], FS))


@pytest.mark.parametrize("bands", [[(0.0, 10.0)], [(20.0, 10.0)], [(100.0, 600.0)], []])
def test_bad_bands_raise(bands: list[tuple[float, float]]) -> None:
    with pytest.raises(ValueError, match="band"):
        bandpass_sos(bands, FS)


def test_standardizer_round_trip_numpy_and_torch() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal([[3.0], [-1.0], [0.0]], [[2.0], [0.5], [10.0]], size=(3, 5000))
    sc = Standardizer().fit(x)
    z = sc.transform(x)
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(sc.inverse_transform(z), x, rtol=1e-12)

    batch = torch.tensor(x[None].repeat(2, axis=0), dtype=torch.float32)  # (batch, channel, time)
    zt = sc.transform(batch)
    assert zt.dtype == torch.float32 and zt.shape == batch.shape
    np.testing.assert_allclose(zt[1].numpy(), z, atol=1e-5)
    np.testing.assert_allclose(
        sc.inverse_transform(zt).numpy(), batch.numpy(), rtol=1e-5, atol=1e-4
    )


def test_standardizer_state_dict_is_plain_and_round_trips() -> None:
    x = np.random.default_rng(1).standard_normal((2, 100)) * 4 + 1
    sc = Standardizer().fit(x)
    state = sc.state_dict()
    assert all(isinstance(v, float) for values in state.values() for v in values)
    again = Standardizer.from_state_dict(state)
    np.testing.assert_array_equal(again.transform(x), sc.transform(x))
    with pytest.raises(ValueError, match="keys"):
        Standardizer.from_state_dict({**state, "extra": [1.0]})
    with pytest.raises(ValueError, match="std"):
        Standardizer.from_state_dict({"mean": [0.0], "std": [0.0]})


def test_standardizer_one_channel_series_and_errors() -> None:
    y = np.linspace(-1, 3, 50)
    sc = Standardizer().fit(y)
    np.testing.assert_allclose(sc.inverse_transform(sc.transform(y)), y)
    with pytest.raises(ValueError, match="constant"):
        Standardizer().fit(np.stack([y, np.full(50, 2.0)]))
    with pytest.raises(ValueError, match="channels"):
        Standardizer().fit(np.ones((3, 10)) * np.arange(10)).transform(np.zeros((2, 10)))
    with pytest.raises(RuntimeError, match="not fitted"):
        Standardizer().transform(y)
