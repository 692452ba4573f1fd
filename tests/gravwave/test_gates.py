"""The plausibility gates at ingest (gravwave.gates) and the overflow-free glitch whitening."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from gwpy.timeseries import TimeSeries, TimeSeriesDict
from pydantic import ValidationError
from scipy import optimize, special

from gravwave import io
from gravwave.gates import (
    DEFAULT_MAX_ROBUST_SIGMA,
    MAD_TO_SIGMA,
    IngestBounds,
    check_channel,
    check_segment,
    robust_location_scale,
    robust_standardize,
)
from gravwave.policy import TwinPolicy, load_policy
from gravwave.quality import glitch_flags
from twins.errors import ConfigError, DataError

FS = 4096.0
T0 = 1_262_304_018.0


def _noise(n: int, seed: int = 0, scale: float = 1e-21) -> np.ndarray:
    return scale * np.random.default_rng(seed).standard_normal(n)


def test_default_k_follows_its_derivation() -> None:
    """K = 13 is the module docstring's derivation, recomputed here."""
    n_max, alpha = 2**32, 1e-6  # longest segment [samples], allowed trip probability
    k_gauss = optimize.brentq(lambda k: n_max * special.erfc(k / math.sqrt(2)) - alpha, 1, 40)
    assert k_gauss == pytest.approx(8.2, abs=0.01)
    n_eff = 2 * 8 * 16  # independent samples of a 16-s segment in an 8-Hz-wide band
    low = 1 - 5 * 1.166 / math.sqrt(n_eff)  # MAD sigma five standard errors low
    assert math.ceil(k_gauss / low) == DEFAULT_MAX_ROBUST_SIGMA == IngestBounds().k_for("x")
    # Gaussian white noise: 64 segments of 32 s at 4096 Hz (8.4e6 samples) all pass; by the
    # union bound they would trip with probability 8.4e6 x erfc(13 / sqrt 2) ~ 1e-31.
    for seed in range(64):
        check_channel(_noise(int(32 * FS), seed), T0, FS, "V1:STRAIN", "white.h5")


def test_bound_is_where_it_says() -> None:
    """A sample 1 % inside the stated bound passes, 1 % outside is refused.

    With 2**20 samples the MAD sigma has a relative standard error of 1.166 / 2**10 = 0.11 %,
    so the median and scale are the same (to 1e-5) with the sample at either position and a
    1 % margin is nine standard errors of the estimate.
    """
    x = _noise(2**20)
    med, sigma = robust_location_scale(x)
    k = DEFAULT_MAX_ROBUST_SIGMA
    i = 123_457
    inside, outside = x.copy(), x.copy()
    inside[i] = med + 0.99 * k * sigma
    outside[i] = med - 1.01 * k * sigma
    check_channel(inside, T0, FS, "V1:STRAIN", "seg.h5")
    gps = f"{T0 + i / FS:.6f}"
    with pytest.raises(DataError) as err:
        check_channel(outside, T0, FS, "V1:STRAIN", "seg.h5")
    msg = str(err.value)
    assert msg.startswith(f"channel V1:STRAIN in seg.h5: sample {outside[i]:.6g} at GPS {gps}")
    assert f"|x - median| <= 13 x robust sigma = {k * sigma:.4g}" in msg
    assert f"1 of {2**20} samples outside" in msg and "\n" not in msg
    assert "ingest.max_robust_sigma" in err.value.hint


def test_huge_dead_nan_and_absurd_scale_refused() -> None:
    x = _noise(int(16 * FS))
    x[9 * 4096] = 1e300
    with pytest.raises(DataError, match=rf"sample 1e\+300 at GPS {T0 + 9:.6f} is outside"):
        check_channel(x, T0, FS, "V1:STRAIN", "seg.h5")
    with pytest.raises(DataError, match=r"^channel V1:MAG in seg\.h5 is constant \(dead\)"):
        check_channel(np.zeros(4096), T0, FS, "V1:MAG", "seg.h5")
    with pytest.raises(DataError, match=r"is constant \(dead\): all 4096 samples equal 2\.5"):
        check_channel(np.full(4096, 2.5), T0, FS, "V1:MAG", "seg.h5")
    y = _noise(4096)
    y[10] = np.nan
    gps = f"{T0 + 10 / FS:.6f}"
    with pytest.raises(DataError, match=rf"1 NaN/inf samples, first nan at GPS {gps}"):
        check_channel(y, T0, FS, "V1:MAG", "seg.h5")
    # Scale-free check 3 cannot see a whole channel scaled absurdly; max_abs does.
    with pytest.raises(DataError, match=r"outside the plausibility bound \|x\| <= 1e\+100"):
        check_channel(_noise(4096, scale=1e200), T0, FS, "V1:MAG", "seg.h5")
    with pytest.raises(DataError, match="is empty"):
        check_channel(np.zeros(0), T0, FS, "V1:MAG", "seg.h5")


def test_mad_zero_falls_back_to_mean_deviation() -> None:
    """Over half the samples equal (MAD 0) but not constant: sqrt(pi/2) x mean |x - median|."""
    x = np.zeros(4000)
    x[::4] = 1.0  # 25 % ones: median 0, MAD 0, mean |dev| 0.25
    med, sigma = robust_location_scale(x)
    assert med == 0.0 and sigma == pytest.approx(math.sqrt(math.pi / 2) * 0.25, rel=1e-15)
    check_channel(x, T0, FS, "V1:DIGITAL", "seg.h5")  # 1 / 0.31 = 3.2 robust sigma


def test_bounds_model_is_strict_and_per_channel() -> None:
    for bad in ({"max_robust_sigmaa": 20}, {"max_robust_sigma": 0}, {"max_robust_sigma": "inf"}):
        with pytest.raises(ValidationError):
            IngestBounds.model_validate(bad)
    with pytest.raises(ValidationError):
        IngestBounds(channel_max_robust_sigma={"V1:X": float("nan")})
    # The twin's policy holds the bounds in one field: a typo there is a config error.
    assert TwinPolicy(ingest={"max_robust_sigma": 20}).ingest.max_robust_sigma == 20
    with pytest.raises(ConfigError, match=r"ingest\.max_robust_sigmaa"):
        load_policy({"ingest": {"max_robust_sigmaa": 20}})
    # A per-channel K widens one channel only.
    spiky = _noise(int(16 * FS), seed=1)
    spiky[5000] = 30 * MAD_TO_SIGMA * np.median(np.abs(spiky))
    data = TimeSeriesDict(
        {
            "V1:STRAIN": TimeSeries(_noise(int(16 * FS)), t0=T0, sample_rate=FS),
            "V1:SEIS": TimeSeries(spiky, t0=T0, sample_rate=FS),
        }
    )
    with pytest.raises(DataError, match="channel V1:SEIS in seg.h5: sample"):
        check_segment(data, "seg.h5")
    wide = IngestBounds(channel_max_robust_sigma={"V1:SEIS": 40})
    check_segment(data, "seg.h5", wide)
    assert wide.k_for("V1:SEIS") == 40 and wide.k_for("V1:STRAIN") == 13
    # prepare() applies the same gates, with the bounds passed to it.
    with pytest.raises(DataError, match="channel V1:SEIS in seg.h5: sample"):
        io.prepare(data, sample_rate=None, min_duration=8.0, source="seg.h5")
    ready = io.prepare(data, sample_rate=None, min_duration=8.0, source="seg.h5", bounds=wide)
    assert list(ready) == ["V1:STRAIN", "V1:SEIS"]


def test_robust_standardize_exact_and_overflow_free() -> None:
    x = _noise(2**16, scale=3e-21) + 1e-22
    med = np.median(x)
    sigma = MAD_TO_SIGMA * np.median(np.abs(x - med))
    # Scaling by a power of two is exact, so the result is bit for bit the direct formula.
    np.testing.assert_array_equal(robust_standardize(x), (x - med) / sigma)
    extreme = _noise(4096, scale=1.0)
    extreme[[5, 6]] = [1.7e308, -1.7e308]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        z = robust_standardize(extreme)
    assert np.all(np.isfinite(z)) and z[5] == 1e8 and z[6] == -1e8
    # Samples near float64's limit: np.median's mean of the two middle values would overflow;
    # the scale-by-2**-e fallback keeps median and sigma finite (and the sample count even).
    near_max = 1.5e308 + _noise(4096, scale=1e304)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        med, sigma = robust_location_scale(near_max)
        z = robust_standardize(near_max)
    # The noise is 1e-4 of the level, so the median is 1.5e308 to ~1e-6; the MAD sigma of
    # 4096 samples has a relative standard error of 1.166 / 64 = 1.8 %: 10 % is 5.5 of them.
    assert med == pytest.approx(1.5e308, rel=1e-3) and sigma == pytest.approx(1e304, rel=0.1)
    assert np.all(np.isfinite(z)) and 0.5 < np.std(z) < 2
    assert not np.any(robust_standardize(np.full(10, 3.0)))


def test_glitch_whitening_flags_huge_glitch_without_overflow() -> None:
    """A 1e300 sample over 1e-21 noise used to overflow the Welch ASD and flag nothing."""
    x = _noise(int(16 * FS))
    x[9 * 4096] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        flags = glitch_flags(x, FS, 100.0)
    assert len(flags) == 1 and flags[0].gps_peak == 109.0
    assert math.isfinite(flags[0].peak) and flags[0].peak > 6
