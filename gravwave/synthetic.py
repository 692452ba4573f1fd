"""Seeded Virgo-like strain with witness channels whose couplings are known (issue 6, part 2).

The strain is coloured Gaussian noise drawn exactly from a sensitivity curve chosen by
``SyntheticParams.asd``: ``"o3-virgo"`` (the default) the measured Virgo O3a ASD shipped in
``data/gravwave/`` (:data:`O3_VIRGO_ASD`, LVK release LIGO-P2000251, BNS range about 48 Mpc,
with the detector's own lines, e.g. at 50 and 100 Hz, as unwitnessed noise); ``"design"`` the
LALSimulation curve named by ``SyntheticParams.psd`` (through :func:`pycbc.psd.from_string`,
default ``AdVO3LowT1800545``, the O3 "low" curve of LIGO-T1800545, about 61 Mpc); a path any
ASD text file :func:`gravwave.io.read_asd` reads. A file's ASD is interpolated linearly in log
ASD onto the segment's frequency grid. Whatever the curve, the witnessed noise added on top is
known sample by sample (the oracle below). Witness-explained noise:

* **Linear, band-limited** (``noise_linear``): the magnetometer ``V1:ENV_CEB_MAG_X`` (white,
  broadband) passes through a causal 6-pole Butterworth band-pass ``linear_band`` (default
  142-162 Hz, a Virgo DeepClean band) before it enters the strain. In the pass band the coupled
  noise has ``linear_gain`` times the Virgo ASD at the band centre (default 3, so the strain ASD
  there is about ``sqrt(1 + 3**2) = 3.2`` times the curve and the oracle ASD ratio about 0.32).
  The 50 Hz mains line also couples linearly: its RMS is ``mains_line_gain`` times
  ``sqrt(S(50 Hz) * 1 Hz)``.
* **Bilinear** (``noise_bilinear``): the mains monitor ``V1:ENV_MAINS_50Hz`` multiplied by the
  slow angular motion ``V1:ASC_SR_TX`` (band ``angular_band``, default 0.1-1 Hz). This makes
  sidebands at ``50 ± f_ang`` Hz (default 49-51 Hz, the 50 Hz bin itself excluded) whose ASD is
  ``bilinear_gain`` times the Virgo ASD at 50 Hz (default 2, oracle ratio about 0.45). Neither
  witness alone is coherent with the strain there, so no linear filter removes it.
* **Distractors**: ``n_distractors`` uncoupled witnesses (white, in-band, slow, lines, red).
* **Drift**: every coupling gain is multiplied by ``1 + drift * (t - t0) / 3600`` (clipped at 0),
  ``t`` being absolute GPS time, so the drift continues across streamed segments.
* **Glitches**: sine-Gaussians (not witnessed) with Poisson times at ``glitch_rate``.
* **Injections**: BNS waveforms (``TaylorT4`` by default) projected on V1 with
  :meth:`pycbc.detector.Detector.antenna_pattern` at a given optimal SNR or distance.

The ground truth is returned: ``oracle = strain - noise_linear - noise_bilinear`` is the strain
the perfect cleaning would give (Virgo-curve noise + glitches + injections).

Channel names follow Virgo conventions. The strain keeps the name of Virgo's online h(t)
channel, ``V1:Hrec_hoft_16384Hz``, even though it is generated at ``sample_rate`` (4096 Hz by
default), as Virgo's DeepClean reads that channel and resamples it. Witnesses are generated at
the same rate, in the units listed in :data:`WITNESS_UNITS`.

Segments: ``generate(params, segment=k)`` returns the segment starting at
``t0 + k * duration`` GPS s. Segments are independent realisations (the random streams are keyed
by ``(seed, k, component)``), reproducible, and share the continuous drift; the noise is not
continuous across segment boundaries.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import scipy.fft
from gwpy.timeseries import TimeSeries, TimeSeriesDict
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import signal as sps

from gravwave.io import read_asd
from twins.errors import DataError

logger = logging.getLogger(__name__)

O3_VIRGO_ASD = (
    Path(__file__).resolve().parents[1] / "data" / "gravwave" / "O3-V1_sensitivity_strain_asd.txt"
)
"""Measured Virgo O3a ASD [strain/sqrt(Hz)], 0.5-8192 Hz (LIGO-P2000251), ``asd="o3-virgo"``."""

NAMED_ASDS: dict[str, Path] = {"o3-virgo": O3_VIRGO_ASD}
"""Curves shipped in ``data/gravwave/`` that ``SyntheticParams.asd`` names."""

STRAIN_CHANNEL = "V1:Hrec_hoft_16384Hz"
"""Name of the strain channel (Virgo online h(t); the data are at ``sample_rate``)."""

MAG_CHANNEL = "V1:ENV_CEB_MAG_X"
"""Magnetometer in the central building: linear coupling through ``linear_band``."""

MAINS_CHANNEL = "V1:ENV_MAINS_50Hz"
"""Mains voltage monitor: 50 Hz line (linear) and bilinear coupling with the angular motion."""

ANGULAR_CHANNEL = "V1:ASC_SR_TX"
"""Signal-recycling mirror pitch (slow angular motion, ``angular_band``)."""

DISTRACTOR_CHANNELS: tuple[str, ...] = (
    "V1:ENV_NEB_ACC_Z",
    "V1:ENV_WEB_MAG_Y",
    "V1:SBE_SNEB_GEO_GRWE_500Hz",
    "V1:ENV_CEB_UPS_CURR_R",
    "V1:ENV_MCB_SEIS_N",
    "V1:ENV_TCS_CO2_WI_POW",
)
"""Uncoupled witnesses; kinds in order: white, in the linear band, slow, 100 Hz line, red,
45-55 Hz. Beyond six, ``V1:ENV_AUX_<k>`` white channels follow."""

WITNESS_UNITS: dict[str, str] = {
    MAG_CHANNEL: "nT",
    MAINS_CHANNEL: "V",
    ANGULAR_CHANNEL: "urad",
    "V1:ENV_NEB_ACC_Z": "m/s^2",
    "V1:ENV_WEB_MAG_Y": "nT",
    "V1:SBE_SNEB_GEO_GRWE_500Hz": "um/s",
    "V1:ENV_CEB_UPS_CURR_R": "A",
    "V1:ENV_MCB_SEIS_N": "um/s",
    "V1:ENV_TCS_CO2_WI_POW": "W",
}
"""Units of the witness channels (arbitrary but physical-looking scales)."""

_MAINS_AMPLITUDE = 325.0  # V, peak of 230 V rms
_WITNESS_SCALE = {MAG_CHANNEL: 2.0, ANGULAR_CHANNEL: 0.5}  # rms in WITNESS_UNITS
_DISTRACTOR_SCALE = (0.05, 1.5, 3.0, 4.0, 10.0, 20.0)
_MAINS_WANDER_HZ = 0.02  # rms frequency wander of the mains, Hz
_MAINS_AM = 0.02  # rms relative amplitude modulation of the mains
_PREROLL_S = 2.0  # s of witness generated before the segment so causal filters are settled
_INJ_MARGIN_S = 4.0  # s kept free after an injection's merger and before the segment end

# Component keys of the random streams: changing one component's settings leaves the others.
_C_FLOOR, _C_MAG, _C_MAINS, _C_ANG, _C_SENSOR, _C_DISTRACT, _C_GLITCH, _C_INJ = range(8)


class Glitch(NamedTuple):
    """One sine-Gaussian glitch: peak GPS time [s], SNR vs the Virgo curve, f0 [Hz], Q."""

    gps: float
    snr: float
    f0: float
    q: float


def _check_range(
    value: tuple[float, float] | None, name: str, low: float = 0.0, strict: bool = False
) -> None:
    if value is None:
        return
    ok = low <= value[0] < value[1] if strict else low <= value[0] <= value[1]
    if not ok:
        raise ValueError(f"{name} must be an ordered pair (lo, hi) with lo >= {low}, got {value}")


class SyntheticParams(BaseModel):
    """Settings of the synthetic Virgo-like data.

    Attributes:
        duration: Segment length [s]; ``duration * sample_rate`` must be an integer.
        sample_rate: Sampling rate of strain and witnesses [Hz].
        psd: Name of a LALSimulation PSD known to :func:`pycbc.psd.from_string`; used when
            ``asd`` is ``"design"``.
        asd: The strain noise curve: ``"o3-virgo"`` (the default: the measured Virgo O3a
            ASD, :data:`O3_VIRGO_ASD`), ``"design"`` (the LALSimulation curve ``psd``) or the
            path of an ASD text file (frequency [Hz], ASD [strain/sqrt(Hz)]) covering
            ``flow`` to ``sample_rate / 2``.
        flow: The strain noise is zero below this frequency [Hz].
        seed: Seed of all random streams.
        t0: GPS start of segment 0 [s]; also the reference time of the drift.
        linear_gain: ASD of the linear coupling / Virgo ASD at the centre of ``linear_band``.
        linear_band: Pass band of the linear transfer function (Butterworth, 6 poles) [Hz].
        bilinear_gain: ASD of the bilinear sidebands / Virgo ASD at ``mains_frequency``.
        mains_frequency: Mains frequency [Hz].
        mains_line_gain: RMS of the coupled mains line / ``sqrt(S(mains_frequency) * 1 Hz)``.
        angular_band: Band of the slow angular motion [Hz]; sidebands at mains +/- this band.
        n_distractors: Number of uncoupled witness channels.
        witness_noise: Sensor noise of every witness, relative to its RMS.
        drift: Fractional change of all coupling gains per hour [1/h].
        glitch_rate: Mean rate of sine-Gaussian glitches [1/s].
        glitch_snr: Range of glitch SNR (log-uniform).
        glitch_f0: Range of glitch central frequency (log-uniform) [Hz].
        glitch_q: Range of glitch quality factor (uniform).
        injections: Number of BNS injections per segment.
        injection_snr: Range of optimal SNR (uniform); exclusive with ``injection_distance``.
        injection_distance: Range of luminosity distance (uniform) [Mpc].
        injection_masses: Range of both component masses (uniform) [solar masses].
        injection_flow: Starting frequency of the injected waveforms [Hz].
        injection_approximant: Time-domain approximant of :func:`pycbc.waveform.get_td_waveform`.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    duration: float = Field(64.0, gt=0)
    sample_rate: int = Field(4096, gt=0)
    psd: str = "AdVO3LowT1800545"
    asd: Literal["design", "o3-virgo"] | Path = "o3-virgo"
    flow: float = Field(10.0, gt=0)
    seed: int = 0
    t0: float = 1262304018.0
    linear_gain: float = Field(3.0, ge=0)
    linear_band: tuple[float, float] = (142.0, 162.0)
    bilinear_gain: float = Field(2.0, ge=0)
    mains_frequency: float = Field(50.0, gt=0)
    mains_line_gain: float = Field(5.0, ge=0)
    angular_band: tuple[float, float] = (0.1, 1.0)
    n_distractors: int = Field(4, ge=0)
    witness_noise: float = Field(0.01, ge=0)
    drift: float = 0.0
    glitch_rate: float = Field(0.0, ge=0)
    glitch_snr: tuple[float, float] = (8.0, 50.0)
    glitch_f0: tuple[float, float] = (30.0, 500.0)
    glitch_q: tuple[float, float] = (4.0, 20.0)
    injections: int = Field(0, ge=0)
    injection_snr: tuple[float, float] | None = (15.0, 25.0)
    injection_distance: tuple[float, float] | None = None
    injection_masses: tuple[float, float] = (1.2, 1.6)
    injection_flow: float = Field(40.0, gt=0)
    injection_approximant: str = "TaylorT4"

    @model_validator(mode="after")
    def _consistent(self) -> SyntheticParams:
        n = self.duration * self.sample_rate
        if abs(n - round(n)) > 1e-6:
            raise ValueError(f"duration * sample_rate = {n} is not an integer number of samples")
        nyq = self.sample_rate / 2
        _check_range(self.linear_band, "linear_band", low=self.flow, strict=True)
        _check_range(self.angular_band, "angular_band", strict=True)
        _check_range(self.glitch_snr, "glitch_snr")
        _check_range(self.glitch_f0, "glitch_f0", low=self.flow)
        _check_range(self.glitch_q, "glitch_q", low=1.0)
        _check_range(self.injection_masses, "injection_masses", low=0.5)
        if self.linear_band[1] >= nyq or self.glitch_f0[1] >= nyq:
            raise ValueError(f"linear_band and glitch_f0 must stay below Nyquist ({nyq} Hz)")
        if self.mains_frequency + self.angular_band[1] >= nyq:
            raise ValueError("mains_frequency + angular_band must stay below Nyquist")
        if self.angular_band[1] >= self.mains_frequency:
            raise ValueError("angular_band must end below mains_frequency")
        if self.injections and (self.injection_snr is None) == (self.injection_distance is None):
            raise ValueError("give exactly one of injection_snr and injection_distance")
        _check_range(self.injection_snr, "injection_snr")
        _check_range(self.injection_distance, "injection_distance")
        return self

    @property
    def n_samples(self) -> int:
        """Samples per segment."""
        return round(self.duration * self.sample_rate)

    @property
    def bands(self) -> dict[str, tuple[float, float]]:
        """Frequency bands [Hz] holding the coupled noise: ``linear`` and ``bilinear``."""
        f_m, (_, a_hi) = self.mains_frequency, self.angular_band
        return {"linear": tuple(self.linear_band), "bilinear": (f_m - a_hi, f_m + a_hi)}

    def gain_factor(self, gps: np.ndarray | float) -> np.ndarray:
        """Drift multiplier of the coupling gains at GPS time(s) ``gps`` [s] (>= 0)."""
        t = np.asarray(gps, dtype=float) - self.t0
        return np.maximum(0.0, 1.0 + self.drift * t / 3600.0)


@dataclass
class SyntheticSegment:
    """One generated segment and its ground truth.

    Attributes:
        params: The settings used.
        segment: Index of the segment (start ``params.t0 + segment * duration`` GPS s).
        strain: Total strain [strain], channel :data:`STRAIN_CHANNEL`.
        witnesses: Witness channels (Virgo-style names, units in :data:`WITNESS_UNITS`).
        noise_linear: Added linear coupling noise (band-limited magnetometer + mains line).
        noise_bilinear: Added bilinear coupling noise (mains x angular sidebands).
        glitch_strain: Added glitches (not witnessed, so not part of the oracle cleaning).
        signal: Added injected BNS signals (projected on V1).
        glitches: The glitches as ``(gps, snr, f0, q)``.
        injections: One dict per injection: ``gps`` (merger time at V1) and ``geocent_end_time``
            [s], ``mass1``/``mass2`` [solar masses], ``distance`` [Mpc], ``optimal_snr`` (vs the
            Virgo curve, part inside the segment), ``ra``/``dec``/``polarization``/
            ``inclination`` [rad], ``approximant``, ``f_lower`` [Hz].
        gains: Coupling gains at the segment start and end: ``linear``, ``bilinear``, ``line``.
    """

    params: SyntheticParams
    segment: int
    strain: TimeSeries
    witnesses: TimeSeriesDict
    noise_linear: TimeSeries
    noise_bilinear: TimeSeries
    glitch_strain: TimeSeries
    signal: TimeSeries
    glitches: list[Glitch] = field(default_factory=list)
    injections: list[dict[str, Any]] = field(default_factory=list)
    gains: dict[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def t0(self) -> float:
        """GPS start of the segment [s]."""
        return float(self.strain.t0.value)

    @property
    def bands(self) -> dict[str, tuple[float, float]]:
        """Frequency bands [Hz] of the coupled noise (see :attr:`SyntheticParams.bands`)."""
        return self.params.bands

    @property
    def noise(self) -> TimeSeries:
        """All witnessed noise: ``noise_linear + noise_bilinear`` [strain]."""
        return _series(
            self.noise_linear.value + self.noise_bilinear.value, self.strain, "V1:TRUTH_NOISE"
        )

    @property
    def oracle(self) -> TimeSeries:
        """Strain after a perfect cleaning: ``strain - noise`` [strain]."""
        clean = self.strain.value - self.noise_linear.value - self.noise_bilinear.value
        return _series(clean, self.strain, STRAIN_CHANNEL + "_ORACLE")

    def floor_psd(self, delta_f: float) -> np.ndarray:
        """One-sided PSD of the chosen curve [strain^2/Hz] on ``0, delta_f, ..., fs/2`` [Hz]."""
        return strain_psd(self.params, delta_f)


def _series(values: np.ndarray, like: TimeSeries, channel: str, unit: str = "") -> TimeSeries:
    return TimeSeries(
        values,
        t0=like.t0,
        sample_rate=like.sample_rate,
        channel=channel,
        name=channel,
        unit=unit,
        copy=False,
    )


@functools.lru_cache(maxsize=16)
def _virgo_psd_cached(name: str, sample_rate: int, delta_f: float, flow: float) -> np.ndarray:
    import pycbc.psd

    if name not in pycbc.psd.get_lalsim_psd_list():
        virgo = [n for n in pycbc.psd.get_lalsim_psd_list() if "AdV" in n or n == "Virgo"]
        raise DataError(
            f"unknown PSD {name!r}", hint=f"use a LALSimulation PSD name, e.g. one of {virgo}"
        )
    length = int(round(sample_rate / 2 / delta_f)) + 1
    psd = pycbc.psd.from_string(name, length, delta_f, flow).numpy().copy()
    psd.setflags(write=False)
    return psd


def virgo_psd(name: str, sample_rate: float, delta_f: float, flow: float) -> np.ndarray:
    """One-sided PSD of a LALSimulation noise curve [strain^2/Hz], zero below ``flow``.

    Args:
        name: PSD name for :func:`pycbc.psd.from_string` (e.g. ``"AdVO3LowT1800545"``).
        sample_rate: Sampling rate [Hz]; the grid ends at ``sample_rate / 2``.
        delta_f: Frequency step [Hz].
        flow: Frequency below which the PSD is zero [Hz].

    Returns:
        Read-only array on ``0, delta_f, ..., sample_rate / 2``.

    Raises:
        DataError: If the PSD name is unknown.
    """
    return _virgo_psd_cached(name, int(sample_rate), float(delta_f), float(flow))


@functools.lru_cache(maxsize=16)
def _file_psd_cached(
    path: str, stamp: tuple[int, int], sample_rate: int, delta_f: float, flow: float
) -> np.ndarray:
    p = Path(path)
    curve = read_asd(p, kind="asd")
    f = curve.frequencies.value
    nyq = sample_rate / 2.0
    if flow < f[0] or nyq > f[-1]:
        raise DataError(
            f"{p.name}: ASD covers {f[0]:g}-{f[-1]:g} Hz; the generator needs flow {flow:g} Hz "
            f"to Nyquist {nyq:g} Hz",
            hint="use a curve that covers the band, or raise flow / lower sample_rate",
        )
    grid = np.arange(int(round(nyq / delta_f)) + 1) * delta_f
    log_asd = np.interp(grid, f, np.log(curve.value))
    psd = np.where(grid >= flow, np.exp(2.0 * log_asd), 0.0)
    psd.setflags(write=False)
    return psd


def file_psd(path: Path, sample_rate: float, delta_f: float, flow: float) -> np.ndarray:
    """One-sided PSD [strain^2/Hz] of an ASD text file on ``0, delta_f, ..., sample_rate / 2``.

    The ASD is read with :func:`gravwave.io.read_asd` and interpolated linearly in its
    logarithm between the file's frequencies; the PSD is zero below ``flow``.

    Args:
        path: ASD text file (frequency [Hz], ASD [strain/sqrt(Hz)]).
        sample_rate: Sampling rate [Hz]; the grid ends at ``sample_rate / 2``.
        delta_f: Frequency step [Hz].
        flow: Frequency below which the PSD is zero [Hz].

    Returns:
        Read-only array of shape ``(round(sample_rate / 2 / delta_f) + 1,)``.

    Raises:
        DataError: The file is unreadable (see :func:`gravwave.io.read_asd`) or does not cover
            ``flow`` to ``sample_rate / 2``.
    """
    p = Path(path)
    stat = p.stat() if p.is_file() else None
    stamp = (stat.st_mtime_ns, stat.st_size) if stat else (0, 0)
    return _file_psd_cached(str(p), stamp, int(sample_rate), float(delta_f), float(flow))


def strain_psd(params: SyntheticParams, delta_f: float) -> np.ndarray:
    """One-sided PSD of the curve ``params.asd`` [strain^2/Hz] on ``0, delta_f, ..., fs/2``.

    Args:
        params: Settings (``asd``, ``psd``, ``sample_rate``, ``flow``).
        delta_f: Frequency step [Hz].

    Returns:
        Read-only array, zero below ``params.flow``.

    Raises:
        DataError: Unknown LALSimulation PSD name, or an unreadable / too narrow ASD file.
    """
    if params.asd == "design":
        return virgo_psd(params.psd, params.sample_rate, delta_f, params.flow)
    path = NAMED_ASDS[params.asd] if isinstance(params.asd, str) else params.asd
    return file_psd(path, params.sample_rate, delta_f, params.flow)


def _rng(params: SyntheticParams, segment: int, component: int) -> np.random.Generator:
    seq = np.random.SeedSequence(params.seed, spawn_key=(segment, component))
    return np.random.default_rng(seq)


def colored_noise(rng: np.random.Generator, psd: np.ndarray, sample_rate: float) -> np.ndarray:
    """Stationary Gaussian noise with one-sided PSD ``psd`` drawn in the frequency domain.

    Args:
        rng: Random generator.
        psd: One-sided PSD on the ``rfftfreq(n, 1 / sample_rate)`` grid of the output length
            ``n = 2 * (len(psd) - 1)`` [units^2/Hz].
        sample_rate: Sampling rate [Hz].

    Returns:
        ``n`` samples (periodic over the segment) whose expected periodogram is ``psd``.
    """
    n = 2 * (len(psd) - 1)
    amp = np.sqrt(psd * (sample_rate * n / 4.0))
    spec = rng.standard_normal((len(psd), 2)).view(np.complex128)[:, 0]
    spec *= amp
    spec[0] = 0.0
    spec[-1] = 0.0
    return scipy.fft.irfft(spec, n, overwrite_x=True)


def _band_noise(
    rng: np.random.Generator, n: int, sample_rate: float, band: tuple[float, float]
) -> np.ndarray:
    """Unit-variance noise with a flat one-sided PSD ``1 / width`` in ``band`` [Hz]."""
    freqs = np.fft.rfftfreq(n, 1.0 / sample_rate)
    inband = (freqs >= band[0]) & (freqs <= band[1])
    if not inband.any():
        raise DataError(
            f"band {band} Hz holds no frequency bin of a {n / sample_rate:g}-s segment",
            hint="use a longer duration or a wider band",
        )
    idx = np.flatnonzero(inband)
    width = len(idx) * sample_rate / n
    # Only the in-band bins are drawn: exact flat PSD 1 / width, cheap for narrow bands.
    spec = np.zeros(len(freqs), dtype=np.complex128)
    draws = rng.standard_normal((len(idx), 2)).view(np.complex128)[:, 0]
    spec[idx] = draws * math.sqrt(sample_rate * n / 4.0 / width)
    spec[0] = 0.0
    if n % 2 == 0:
        spec[-1] = 0.0
    return scipy.fft.irfft(spec, n, overwrite_x=True)


def _sine_gaussian(f0: float, q: float, sample_rate: float, offset: float) -> np.ndarray:
    """Unit-amplitude sine-Gaussian on ``+-4 tau`` around its peak (``offset`` [s] into a bin)."""
    tau = q / (math.sqrt(2.0) * math.pi * f0)
    half = int(math.ceil(4.0 * tau * sample_rate))
    t = (np.arange(-half, half + 1) - offset * sample_rate) / sample_rate
    return np.exp(-((t / tau) ** 2)) * np.sin(2.0 * math.pi * f0 * t)


def _optimal_snr(h: np.ndarray, params: SyntheticParams) -> float:
    """Optimal SNR of ``h`` [strain] against the chosen curve (zero-padded to a power of 2)."""
    fs = params.sample_rate
    n = max(int(2 ** math.ceil(math.log2(max(len(h), 2)))), fs)
    psd = strain_psd(params, fs / n)
    htilde = np.fft.rfft(h, n) / fs
    ok = psd > 0
    return float(math.sqrt(4.0 * (fs / n) * np.sum(np.abs(htilde[ok]) ** 2 / psd[ok])))


def _glitches(params: SyntheticParams, segment: int, t0: float) -> tuple[np.ndarray, list[Glitch]]:
    n, fs = params.n_samples, params.sample_rate
    out = np.zeros(n)
    if params.glitch_rate <= 0:
        return out, []
    rng = _rng(params, segment, _C_GLITCH)
    count = int(rng.poisson(params.glitch_rate * params.duration))
    margin = min(0.5, params.duration / 4)
    glitches = []
    for _ in range(count):
        t_rel = rng.uniform(margin, params.duration - margin)
        f0 = float(np.exp(rng.uniform(*np.log(params.glitch_f0))))
        q = float(rng.uniform(*params.glitch_q))
        snr = float(np.exp(rng.uniform(*np.log(params.glitch_snr))))
        centre = int(math.floor(t_rel * fs))
        wave = _sine_gaussian(f0, q, fs, t_rel - centre / fs)
        wave *= snr / _optimal_snr(wave, params)
        half = (len(wave) - 1) // 2
        lo, hi = centre - half, centre + half + 1
        out[max(lo, 0) : min(hi, n)] += wave[max(0, -lo) : len(wave) - max(0, hi - n)]
        glitches.append(Glitch(t0 + t_rel, snr, f0, q))
    glitches.sort()
    return out, glitches


def _injections(
    params: SyntheticParams, segment: int, t0: float
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    n, fs = params.n_samples, params.sample_rate
    out = np.zeros(n)
    if params.injections == 0:
        return out, []
    from pycbc.detector import Detector
    from pycbc.waveform import get_td_waveform

    rng = _rng(params, segment, _C_INJ)
    det = Detector("V1")
    records = []
    for _ in range(params.injections):
        m1, m2 = sorted(rng.uniform(*params.injection_masses, size=2), reverse=True)
        ra, dec = rng.uniform(0, 2 * math.pi), math.asin(rng.uniform(-1, 1))
        pol, inc = rng.uniform(0, 2 * math.pi), math.acos(rng.uniform(-1, 1))
        ref_dist = 100.0
        try:
            hp, hc = get_td_waveform(
                approximant=params.injection_approximant,
                mass1=m1,
                mass2=m2,
                distance=ref_dist,
                inclination=inc,
                delta_t=1.0 / fs,
                f_lower=params.injection_flow,
            )
        except Exception as exc:  # pycbc/lal raise many types for bad waveform settings
            raise DataError(
                f"waveform generation failed: {exc}",
                hint="check injection_approximant (a time-domain one) and injection_flow",
            ) from exc
        hp_v, hc_v = hp.numpy(), hc.numpy()
        start = float(hp.start_time)  # s before the merger (negative)
        # Merger sample: leave the waveform inside the segment when it fits.
        latest = n - int(min(_INJ_MARGIN_S, params.duration / 4) * fs)
        earliest = min(len(hp_v), latest)
        end_idx = int(rng.integers(earliest, latest + 1)) if latest > earliest else latest
        first = end_idx - len(hp_v)  # data index of the waveform's first sample
        gps = t0 + first / fs - start
        fp, fc = det.antenna_pattern(ra, dec, pol, gps)
        h = fp * hp_v + fc * hc_v
        ramp = min(len(h), int(0.1 * fs))  # half-Hann taper of the abrupt start
        h[:ramp] *= 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        lo, hi = max(first, 0), min(first + len(h), n)
        piece = np.zeros(n)
        piece[lo:hi] = h[lo - first : hi - first]
        snr_ref = _optimal_snr(piece, params)
        if params.injection_snr is not None:
            target = float(rng.uniform(*params.injection_snr))
            distance = ref_dist * snr_ref / target if snr_ref > 0 else float("inf")
        else:
            distance = float(rng.uniform(*params.injection_distance))
        scale = ref_dist / distance
        out += piece * scale
        records.append(
            {
                "gps": gps,
                "geocent_end_time": gps - det.time_delay_from_earth_center(ra, dec, gps),
                "mass1": float(m1),
                "mass2": float(m2),
                "distance": float(distance),
                "optimal_snr": float(snr_ref * scale),
                "ra": float(ra),
                "dec": float(dec),
                "polarization": float(pol),
                "inclination": float(inc),
                "approximant": params.injection_approximant,
                "f_lower": params.injection_flow,
            }
        )
    records.sort(key=lambda r: r["gps"])
    return out, records


def _distractor(
    kind: int, rng: np.random.Generator, n: int, params: SyntheticParams
) -> np.ndarray:
    fs = params.sample_rate
    t = np.arange(n) / fs
    if kind == 1:  # uncoupled, but in the linear band
        return _band_noise(rng, n, fs, params.linear_band)
    if kind == 2:  # slow motion
        return _band_noise(rng, n, fs, (0.1, 3.0))
    if kind == 3:  # 100 Hz harmonic that is not in the strain
        phase = rng.uniform(0, 2 * math.pi)
        return math.sqrt(2) * np.sin(2 * math.pi * 2 * params.mains_frequency * t + phase) + (
            0.3 * rng.standard_normal(n)
        )
    if kind == 4:  # red noise (1/f^2 above 0.1 Hz)
        freqs = np.fft.rfftfreq(n, 1.0 / fs)
        psd = 1.0 / np.maximum(freqs, 0.1) ** 2
        x = colored_noise(rng, psd, fs)
        return x / np.sqrt(np.sum(psd[1:-1]) * fs / n)
    if kind == 5:  # uncoupled noise around the mains sidebands
        m = params.mains_frequency
        return _band_noise(rng, n, fs, (max(m - 5.0, 0.5), m + 5.0))
    return rng.standard_normal(n)  # white


def _witness(values: np.ndarray, name: str, like: TimeSeries) -> TimeSeries:
    unit = WITNESS_UNITS.get(name, "")
    return TimeSeries(
        values,
        t0=like.t0,
        sample_rate=like.sample_rate,
        channel=name,
        name=name,
        unit=unit,
        copy=False,
    )


def generate(params: SyntheticParams, segment: int = 0) -> SyntheticSegment:
    """Generate one segment of synthetic Virgo-like data with its ground truth.

    Args:
        params: Settings.
        segment: Segment index >= 0; the segment starts at ``params.t0 + segment *
            params.duration`` GPS s. Same ``(seed, segment)`` gives the same data; different
            segments are independent realisations sharing the drift of the coupling gains.

    Returns:
        The segment: strain, witnesses, ground-truth noise, glitches and injections.

    Raises:
        DataError: If ``segment`` is negative, the PSD name is unknown, the ASD file is
            unreadable or does not cover ``flow`` to Nyquist, a band holds no
            frequency bin of the segment, or the injection waveform cannot be generated.
    """
    if segment < 0:
        raise DataError(f"segment index must be >= 0, got {segment}")
    tic = time.perf_counter()
    p = params
    n, fs = p.n_samples, p.sample_rate
    t0 = p.t0 + segment * p.duration
    times = t0 + np.arange(n) / fs
    gain = p.gain_factor(times)
    df = fs / n

    # Base strain: Gaussian noise from the chosen curve.
    psd = strain_psd(p, df)
    floor = colored_noise(_rng(p, segment, _C_FLOOR), psd, fs)
    like = TimeSeries(np.empty(0), t0=t0, sample_rate=fs)

    def floor_at(freq: float) -> float:
        return float(psd[int(round(freq / df))])

    # Linear coupling: white magnetometer through a causal 6-pole Butterworth band-pass.
    rng = _rng(p, segment, _C_MAG)
    pre = int(_PREROLL_S * fs)
    mag = rng.standard_normal(n + pre)
    sos = sps.butter(3, p.linear_band, btype="bandpass", fs=fs, output="sos")
    centre = math.sqrt(p.linear_band[0] * p.linear_band[1])
    k_lin = p.linear_gain * math.sqrt(floor_at(centre) * fs / 2.0)
    noise_lin = k_lin * gain * sps.sosfilt(sos, mag)[pre:]
    mag = mag[pre:]

    # Mains: 50 Hz with slow frequency wander and amplitude modulation (unit amplitude).
    rng = _rng(p, segment, _C_MAINS)
    slow_band = (1.0 / p.duration, max(0.05, 1.0 / p.duration))
    wander = _MAINS_WANDER_HZ * _band_noise(rng, n, fs, slow_band)
    phase = 2 * math.pi * (p.mains_frequency * (times - t0) + np.cumsum(wander) / fs)
    phase += rng.uniform(0, 2 * math.pi)
    am = 1.0 + _MAINS_AM * _band_noise(rng, n, fs, slow_band)
    mains = am * np.cos(phase)
    k_line = p.mains_line_gain * math.sqrt(2.0 * floor_at(p.mains_frequency))
    noise_lin += k_line * gain * mains

    # Bilinear coupling: mains x slow angular motion -> sidebands at mains +- angular band.
    ang = _band_noise(_rng(p, segment, _C_ANG), n, fs, p.angular_band)
    width = p.angular_band[1] - p.angular_band[0]
    k_bil = p.bilinear_gain * math.sqrt(floor_at(p.mains_frequency) * 4.0 * width)
    noise_bil = k_bil * gain * mains * ang

    glitch, glitch_list = _glitches(p, segment, t0)
    sig, inj_list = _injections(p, segment, t0)
    strain = floor + noise_lin + noise_bil + glitch + sig

    # Witnesses as measured (with sensor noise), Virgo-style names.
    sensor = _rng(p, segment, _C_SENSOR)
    wn = p.witness_noise
    wit: dict[str, np.ndarray] = {
        MAG_CHANNEL: _WITNESS_SCALE[MAG_CHANNEL] * (mag + wn * sensor.standard_normal(n)),
        MAINS_CHANNEL: _MAINS_AMPLITUDE * (mains + wn / math.sqrt(2) * sensor.standard_normal(n)),
        ANGULAR_CHANNEL: _WITNESS_SCALE[ANGULAR_CHANNEL] * (ang + wn * sensor.standard_normal(n)),
    }
    drng = _rng(p, segment, _C_DISTRACT)
    for k in range(p.n_distractors):
        if k < len(DISTRACTOR_CHANNELS):
            name, scale = DISTRACTOR_CHANNELS[k], _DISTRACTOR_SCALE[k]
        else:
            name, scale = f"V1:ENV_AUX_{k:02d}", 1.0
        x = _distractor(k if k < len(DISTRACTOR_CHANNELS) else 0, drng, n, p)
        wit[name] = scale * (x + wn * sensor.standard_normal(n))

    witnesses = TimeSeriesDict((name, _witness(x, name, like)) for name, x in wit.items())
    g0, g1 = float(gain[0]), float(gain[-1])
    out = SyntheticSegment(
        params=p,
        segment=segment,
        strain=_series(strain, like, STRAIN_CHANNEL),
        witnesses=witnesses,
        noise_linear=_series(noise_lin, like, "V1:TRUTH_NOISE_LINEAR"),
        noise_bilinear=_series(noise_bil, like, "V1:TRUTH_NOISE_BILINEAR"),
        glitch_strain=_series(glitch, like, "V1:TRUTH_GLITCHES"),
        signal=_series(sig, like, "V1:TRUTH_INJECTIONS"),
        glitches=glitch_list,
        injections=inj_list,
        gains={
            "linear": (p.linear_gain * g0, p.linear_gain * g1),
            "bilinear": (p.bilinear_gain * g0, p.bilinear_gain * g1),
            "line": (p.mains_line_gain * g0, p.mains_line_gain * g1),
        },
    )
    logger.debug(
        "synthetic segment %d (%g s at %d Hz, %d glitches, %d injections) in %.2f s",
        segment,
        p.duration,
        fs,
        len(glitch_list),
        len(inj_list),
        time.perf_counter() - tic,
    )
    return out


def stream(
    params: SyntheticParams, start: int = 0, count: int | None = None
) -> Iterator[SyntheticSegment]:
    """Yield consecutive segments ``start, start + 1, ...`` (``count`` of them, or forever).

    Args:
        params: Settings.
        start: First segment index.
        count: Number of segments; ``None`` for an endless stream.

    Yields:
        :class:`SyntheticSegment` objects, contiguous in GPS time.
    """
    k = start
    while count is None or k < start + count:
        yield generate(params, k)
        k += 1
