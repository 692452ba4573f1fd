"""Offline Hann overlap-add (:meth:`Cleaner.clean`) and online frame-by-frame cleaning."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import pytest
from gwpy.timeseries import TimeSeries, TimeSeriesDict
from scipy import signal

from gravwave.cleaners import (
    CascadeCleaner,
    Cleaner,
    NetworkCleaner,
    NetworkConfig,
    OnlineCleaner,
    WienerCleaner,
)
from gravwave.cleaners.windowed import fir_bandpass, hann, overlap_add
from gravwave.models import DeepClean
from gravwave.preprocess import Standardizer

FS = 1024.0


class OracleCleaner(Cleaner):
    """Predicts the noise exactly: witness 0 *is* the noise (zero reach, nothing to fit)."""

    kind = "test-oracle"
    strain_channel = "V1:h"
    witness_channels = ("noise", "other")
    sample_rate = FS
    bands = ((10.0, 20.0),)

    def fit(self, strain: TimeSeries, witnesses: Mapping[str, TimeSeries]) -> Self:
        return self

    def raw(self, witnesses: np.ndarray) -> np.ndarray:
        return np.asarray(witnesses)[:, :1].copy()

    def finish(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray(raw)[0]

    def state(self) -> dict[str, Any]:
        return {"kind": self.kind}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        return cls()


@pytest.mark.parametrize(("total", "overlap"), [(10_000, 0.5), (4096, 0.5), (5000, 0.75)])
def test_overlap_add_weights_sum_to_one(total: int, overlap: float) -> None:
    x = np.random.default_rng(0).standard_normal((2, total))
    ones = overlap_add(lambda b: np.ones((b.shape[0], 1, b.shape[2])), x, 1024, overlap)
    # float64 weights of <= 4 overlapping windows divided by their sum: a few u64
    np.testing.assert_allclose(ones, 1.0, rtol=1e-12)
    # a periodic Hann at 50 % overlap sums to exactly 1 without normalisation
    w = hann(1024)
    # sin^2 + cos^2 from two correctly rounded cosines and three operations: <= 4 u64 = 4e-16
    np.testing.assert_allclose(w[:512] + w[512:], 1.0, atol=1e-15)


def test_oracle_prediction_returns_the_oracle() -> None:
    rng = np.random.default_rng(1)
    n = int(37.5 * FS)
    noise, floor = rng.standard_normal(n), rng.standard_normal(n)
    strain = TimeSeries(floor + noise, sample_rate=FS, t0=100.0, name="V1:h")
    wit = TimeSeriesDict(
        noise=TimeSeries(noise, sample_rate=FS, t0=100.0),
        other=TimeSeries(rng.standard_normal(n), sample_rate=FS, t0=100.0),
    )
    cleaned = OracleCleaner().clean(strain, wit, window=8.0)
    # identical predictions in every window, weights summing to 1: float rounding only
    # |values| < 6 (Gaussian, 1e5 samples): a few float64 operations, <= 10 u64 * 6 = 7e-15
    np.testing.assert_allclose(cleaned.value, floor, rtol=0, atol=1e-12)
    assert cleaned.t0.value == 100.0 and cleaned.name == "V1:h_DC"


def test_fir_bandpass_is_flat_in_band_and_attenuates_outside() -> None:
    taps = fir_bandpass([(49.0, 51.0)], FS, round(0.3 * FS), attenuation=60.0)
    f, h = signal.freqz(taps, worN=8192, fs=FS)
    gain = np.abs(h)
    assert np.all(np.abs(gain[(f >= 49) & (f <= 51)] - 1) < 2e-3)
    assert gain[(f < 40) | (f > 60)].max() < 2e-3  # -54 dB one transition width out


def _cascade(n_ch: int = 4, seed: int = 0) -> CascadeCleaner:
    rng = np.random.default_rng(seed)
    chans = [f"w{i}" for i in range(n_ch)]
    x = rng.standard_normal((n_ch, int(64 * FS)))
    y = signal.lfilter([0.5, -0.3, 0.2], [1.0], x[0]) + 0.1 * rng.standard_normal(x.shape[1])
    wit = TimeSeriesDict((c, TimeSeries(x[i], sample_rate=FS)) for i, c in enumerate(chans))
    wiener = WienerCleaner("V1:h", chans, FS, [(100.0, 140.0)], n_taps=32, window=8.0)
    wiener.fit(TimeSeries(y, sample_rate=FS), wit)
    model = DeepClean(n_ch, widths=(4, 8), dilations=(1, 2)).eval()
    config = NetworkConfig(
        strain_channel="V1:h",
        witness_channels=chans,
        sample_rate=FS,
        bands=[(40.0, 60.0)],
        target_scale=0.7,
        window=8.0,
    )
    return CascadeCleaner(wiener, NetworkCleaner(model, Standardizer().fit(x), config))


def test_online_equals_offline_in_the_interior() -> None:
    cascade = _cascade()
    rng = np.random.default_rng(2)
    n = int(40 * FS)
    x = rng.standard_normal((4, n))
    s = rng.standard_normal(n)
    strain = TimeSeries(s, sample_rate=FS, name="V1:h")
    wit = TimeSeriesDict(
        (c, TimeSeries(x[i], sample_rate=FS)) for i, c in enumerate(cascade.witness_channels)
    )
    offline = cascade.clean(strain, wit).value

    online = OnlineCleaner(cascade, frame=1.0, lookahead=0.5)
    frames = []
    f = int(FS)
    for i in range(0, n, f):
        got = online.push(s[i : i + f], x[:, i : i + f])
        frames += got
    frames += online.flush()
    out = np.concatenate(frames)
    assert out.shape == (n,) and len(online.latencies) == n // f
    assert online.delay == 0.5

    noise = s - offline
    diff = out - offline
    interior = slice(int(8 * FS), n - int(8 * FS))
    # Online raw predictions equal the offline ones wherever a window holds the whole
    # reach; offline differs only by the Hann weight of windows whose edge is within the
    # reach of a sample: at most sin^2(pi * reach / window) of an edge error of the size
    # of the prediction. Bound it with a factor 4 for the edge error.
    reach = max(cascade.reach) + cascade.finish_reach
    eps = math.sin(math.pi * reach / (8 * FS)) ** 2
    assert np.abs(diff[interior]).max() <= 4 * eps * np.abs(noise).max()
    # By default a frame waits for the cleaner's reach, no more, within the same bound
    # (its windows sit elsewhere in the shorter buffer: not the same bits as above).
    fitted = OnlineCleaner(cascade, frame=1.0)
    assert fitted.lookahead_n == cascade.reach[1] + cascade.finish_reach < online.lookahead_n
    frames = []
    for i in range(0, n, f):
        frames += fitted.push(s[i : i + f], x[:, i : i + f])
    frames += fitted.flush()
    short = np.concatenate(frames) - offline
    assert np.abs(short[interior]).max() <= 4 * eps * np.abs(noise).max()
    # tighter, in band: the difference is far below the predicted noise
    _, p_diff = signal.welch(diff[interior], FS, nperseg=2048)
    freqs, p_noise = signal.welch(noise[interior], FS, nperseg=2048)
    band = ((freqs >= 40) & (freqs <= 60)) | ((freqs >= 100) & (freqs <= 140))
    assert np.sqrt(p_diff[band] / p_noise[band]).max() < 1e-3


def test_online_with_a_plain_cleaner_and_bad_frames() -> None:
    online = OnlineCleaner(OracleCleaner(), frame=1.0, lookahead=0.25)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3 * int(FS)))
    out = []
    for i in range(3):
        sl = slice(i * int(FS), (i + 1) * int(FS))
        out += online.push(x[0, sl] + 1.0, x[:, sl])
    out += online.flush()
    # (x + 1) - x in float64 for |x| < 6: <= 2 u64 * 7 = 2e-15
    np.testing.assert_allclose(np.concatenate(out), 1.0, atol=1e-12)
    from twins.errors import DataError

    with pytest.raises(DataError, match="expected witnesses"):
        online.push(np.zeros(10), np.zeros((3, 10)))
