"""Unwitnessed transients to put through the cleaner: sine-Gaussian glitches at a chosen time,
frequency, Q and SNR, and their band energy (issue 12, item 5).

The synthetic generator draws glitches at Poisson times (``SyntheticParams.glitch_rate``);
here one glitch is placed where a test or a study wants it. No witness sees it, so a cleaner,
whose noise prediction comes from witnesses only, must leave it as it is.

The sine-Gaussian ``g(t) = A exp(-(t - t0)^2 / tau^2) sin(2 pi f0 (t - t0))`` with
``tau = Q / (sqrt(2) pi f0)`` has its energy spectrum centred on ``f0`` with standard deviation
``f0 / (sqrt(2) Q)`` and its squared envelope in time a standard deviation ``tau / 2``: the
glitch's time-frequency tile (:func:`glitch_tile`) spans 5 of those on each side (all but
6e-7 of its energy in each direction).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import scipy.fft
from gwpy.frequencyseries import FrequencySeries
from gwpy.timeseries import TimeSeries

from gravwave.metrics import asd
from twins.errors import DataError

__all__ = [
    "GlitchTile",
    "add_sine_gaussian",
    "band_energy",
    "glitch_tile",
    "optimal_snr",
    "sine_gaussian",
]

#: Half width of the tile in standard deviations of the glitch's energy (time and frequency).
TILE_SIGMAS = 5.0


class GlitchTile(NamedTuple):
    """Time-frequency tile of a sine-Gaussian: GPS span [s] and band [Hz]."""

    start: float
    end: float
    f_low: float
    f_high: float


def _check_glitch(f0: float, q: float, sample_rate: float) -> float:
    if not (math.isfinite(f0) and 0 < f0 < sample_rate / 2):
        raise DataError(f"glitch f0 {f0} Hz; expected 0 < f0 < Nyquist ({sample_rate / 2} Hz)")
    if not (math.isfinite(q) and q >= 1):
        raise DataError(f"glitch Q {q}; expected a finite Q >= 1")
    return q / (math.sqrt(2.0) * math.pi * f0)


def sine_gaussian(f0: float, q: float, sample_rate: float, offset: float = 0.0) -> np.ndarray:
    """Unit-amplitude sine-Gaussian ``(2 half + 1,)`` on ``+-4 tau`` around its peak.

    Args:
        f0: Central frequency [Hz].
        q: Quality factor (>= 1).
        sample_rate: Rate [Hz].
        offset: Time of the peak after the middle sample [s] (sub-sample placement).

    Raises:
        DataError: ``f0`` outside ``(0, Nyquist)`` or ``q < 1``.
    """
    tau = _check_glitch(f0, q, sample_rate)
    half = int(math.ceil(4.0 * tau * sample_rate))
    t = (np.arange(-half, half + 1) - offset * sample_rate) / sample_rate
    return np.exp(-((t / tau) ** 2)) * np.sin(2.0 * math.pi * f0 * t)


def glitch_tile(gps: float, f0: float, q: float) -> GlitchTile:
    """The tile holding a sine-Gaussian's energy: ``gps +- 2.5 tau``, ``f0 +- 5 f0 / (sqrt2 Q)``.

    The band is cut at 0 Hz from below for ``Q < 5 / sqrt(2)``.
    """
    tau = q / (math.sqrt(2.0) * math.pi * f0)
    dt = TILE_SIGMAS * tau / 2.0
    df = TILE_SIGMAS * f0 / (math.sqrt(2.0) * q)
    return GlitchTile(gps - dt, gps + dt, max(f0 - df, 0.0), f0 + df)


def _psd_on_grid(psd: FrequencySeries, freqs: np.ndarray) -> np.ndarray:
    f = np.asarray(psd.frequencies.value)
    v = np.asarray(psd.value, dtype=np.float64)
    if freqs[-1] > f[-1] * (1 + 1e-9):
        raise DataError(f"the PSD ends at {f[-1]:g} Hz, below Nyquist ({freqs[-1]:g} Hz)")
    return np.interp(freqs, f, v)


def optimal_snr(h: np.ndarray, sample_rate: float, psd: FrequencySeries) -> float:
    """Optimal SNR ``sqrt(4 df sum |h(f)|^2 / S(f))`` of a waveform against a one-sided PSD.

    Args:
        h: Waveform [strain], zero-padded to a power of two of at least 1 s.
        sample_rate: Rate [Hz].
        psd: One-sided PSD [strain^2/Hz] to Nyquist; bins where it is 0 are left out.
    """
    n = max(int(2 ** math.ceil(math.log2(max(len(h), 2)))), int(sample_rate))
    freqs = scipy.fft.rfftfreq(n, 1.0 / sample_rate)
    s = _psd_on_grid(psd, freqs)
    ht = scipy.fft.rfft(h, n) / sample_rate
    ok = s > 0
    return float(math.sqrt(4.0 * (sample_rate / n) * np.sum(np.abs(ht[ok]) ** 2 / s[ok])))


def add_sine_gaussian(
    strain: TimeSeries, gps: float, f0: float, q: float, snr: float, psd: FrequencySeries
) -> tuple[TimeSeries, TimeSeries]:
    """Add a sine-Gaussian glitch of optimal SNR ``snr`` (against ``psd``) peaking at ``gps``.

    Args:
        strain: Strain [strain].
        gps: GPS time of the glitch's peak [s]; its ``+-4 tau`` must lie inside the strain.
        f0: Central frequency [Hz].
        q: Quality factor.
        snr: Optimal SNR against ``psd`` (> 0).
        psd: One-sided PSD [strain^2/Hz] the SNR refers to (e.g. the generator's curve).

    Returns:
        ``(strain + glitch, glitch)`` [strain], same epoch and rate as ``strain``.

    Raises:
        DataError: A bad ``f0``, ``q`` or ``snr``, or a glitch that does not fit inside.
    """
    fs = float(strain.sample_rate.value)
    t0 = float(strain.t0.value)
    if not (math.isfinite(snr) and snr > 0):
        raise DataError(f"glitch SNR {snr}; expected a finite SNR > 0")
    centre = int(math.floor((gps - t0) * fs))
    wave = sine_gaussian(f0, q, fs, (gps - t0) - centre / fs)
    wave *= snr / optimal_snr(wave, fs, psd)
    half = (len(wave) - 1) // 2
    lo, hi = centre - half, centre + half + 1
    if lo < 0 or hi > len(strain):
        raise DataError(
            f"glitch at GPS {gps} (+-{half / fs:.3f} s) does not fit in {strain.name or 'strain'} "
            f"[{t0}, {t0 + len(strain) / fs}) s"
        )
    glitch = np.zeros(len(strain))
    glitch[lo:hi] = wave
    name = strain.name or "strain"
    added = TimeSeries(
        np.asarray(strain.value, dtype=np.float64) + glitch,
        t0=strain.t0, sample_rate=strain.sample_rate, unit=strain.unit, name=name, channel=name,
    )  # fmt: skip
    alone = TimeSeries(glitch, t0=strain.t0, sample_rate=strain.sample_rate, name="glitch")
    return added, alone


def band_energy(data: TimeSeries, tile: GlitchTile, fftlength: float = 4.0) -> float:
    """Excess energy of a series in a time-frequency tile [strain^2 s].

    The series is band-passed to the tile's band (zero-phase: its FFT masked, so the band's
    content is not delayed), its square integrated over the tile's span, and the noise's
    expected share ``duration x integral of the PSD over the band`` subtracted, the PSD being
    the series' own median Welch estimate (``fftlength``-s FFTs, robust to the transient).
    For a transient inside the tile this is its energy ``integral g(t)^2 dt`` plus noise.

    Args:
        data: Strain [strain].
        tile: The tile (:func:`glitch_tile`); its span must lie inside the series.
        fftlength: FFT length of the PSD estimate [s].

    Raises:
        DataError: The tile's span is not inside the series, or its band holds no bin.
    """
    fs = float(data.sample_rate.value)
    t0 = float(data.t0.value)
    x = np.asarray(data.value, dtype=np.float64)
    i0, i1 = math.floor((tile.start - t0) * fs), math.ceil((tile.end - t0) * fs) + 1
    if i0 < 0 or i1 > len(x):
        raise DataError(
            f"tile [{tile.start}, {tile.end}] s is not inside {data.name or 'the series'} "
            f"[{t0}, {t0 + len(x) / fs}) s"
        )
    freqs = scipy.fft.rfftfreq(len(x), 1.0 / fs)
    band = (freqs >= tile.f_low) & (freqs <= tile.f_high)
    if not band.any():
        raise DataError(f"band {tile.f_low:g}-{tile.f_high:g} Hz holds no frequency bin")
    spec = scipy.fft.rfft(x - x.mean())
    spec[~band] = 0.0
    y = scipy.fft.irfft(spec, len(x))[i0:i1]
    energy = float(np.sum(y**2) / fs)
    est = asd(data, fftlength) ** 2
    f_est = np.asarray(est.frequencies.value)
    in_band = (f_est >= tile.f_low) & (f_est <= tile.f_high)
    noise_power = float(np.sum(np.asarray(est.value)[in_band]) * float(est.df.value))
    return energy - noise_power * (i1 - i0) / fs
