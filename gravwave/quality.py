"""What the noise twin measures on every segment: in-band and out-of-band ASD ratios, the BNS
inspiral range, glitch flags, and the segment's idempotency key.

All pure functions of gwpy series returning typed, frozen records (:class:`Quality`,
:class:`GlitchFlag`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

import numpy as np
from gwpy.timeseries import TimeSeries
from pydantic import BaseModel, ConfigDict
from scipy import fft as sfft
from scipy import signal as sps

from gravwave.gates import robust_location_scale, robust_standardize
from gravwave.metrics import asd, asd_ratio, inspiral_range, out_of_band

__all__ = ["GlitchFlag", "Quality", "band_label", "glitch_flags", "quality_of", "segment_key"]


def band_label(band: Sequence[float]) -> str:
    """``"142-162"`` for the band (142.0, 162.0) Hz."""
    return f"{float(band[0]):g}-{float(band[1]):g}"


class Quality(BaseModel):
    """How well a segment was cleaned.

    Attributes:
        asd_ratio: In-band ASD ratio (cleaned / raw) per band, by :func:`band_label`.
        asd_ratio_mean: Their mean.
        out_of_band_ratio: The worst (highest) ASD ratio of the 5-Hz sub-bands of 20-1000 Hz
            outside the bands (1 = nothing added; :func:`gravwave.metrics.out_of_band`).
        out_of_band_hz: Its sub-band [Hz] (``None`` in records written before it was kept).
        near_band_ratio: The worst of the sub-bands within 25 Hz of a band (``None``: as
            above).
        near_band_hz: Its sub-band [Hz].
        range_raw_mpc: BNS inspiral range of the raw strain [Mpc].
        range_cleaned_mpc: The same, cleaned [Mpc].
        range_gain_mpc: ``range_cleaned_mpc - range_raw_mpc`` [Mpc].
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    asd_ratio: dict[str, float]
    asd_ratio_mean: float
    out_of_band_ratio: float
    out_of_band_hz: tuple[float, float] | None = None
    near_band_ratio: float | None = None
    near_band_hz: tuple[float, float] | None = None
    range_raw_mpc: float
    range_cleaned_mpc: float
    range_gain_mpc: float

    def ratio(self, band: Sequence[float]) -> float:
        """In-band ASD ratio of ``band`` [Hz] (one of the cleaner's bands)."""
        return self.asd_ratio[band_label(band)]

    def worst_rise(self, reference: Mapping[str, float]) -> float:
        """Largest relative rise of a band's ratio over ``reference`` (0.1 = 10 % worse)."""
        return max(self.asd_ratio[b] / reference[b] - 1 for b in reference)


class GlitchFlag(BaseModel):
    """One flagged excursion of the whitened, band-limited residual.

    Attributes:
        gps_start: GPS time of its first sample above threshold [s].
        gps_end: GPS time just after its last one [s].
        gps_peak: GPS time of its peak [s].
        peak: Peak value [robust standard deviations].
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    gps_start: float
    gps_end: float
    gps_peak: float
    peak: float


def quality_of(
    cleaned: TimeSeries,
    raw: TimeSeries,
    bands: Sequence[tuple[float, float]],
    fftlength: float = 4.0,
    range_fftlength: float = 8.0,
) -> Quality:
    """In-band ASD ratio per band, worst out-of-band sub-bands and BNS range raw and cleaned.

    Args:
        cleaned: Cleaned strain [strain].
        raw: Raw strain over the same samples [strain].
        bands: The cleaner's bands [Hz].
        fftlength: FFT length of the ASD ratios [s].
        range_fftlength: FFT length of the inspiral range [s].
    """
    # each ASD once (median Welch, 50 % overlap), shared by every band and the out-of-band ratio
    a_cln, a_raw = asd(cleaned, fftlength), asd(raw, fftlength)
    ratios = {band_label(b): asd_ratio(a_cln, a_raw, [b]) for b in bands}
    oob = out_of_band(a_cln, a_raw, bands)
    r_raw = inspiral_range(raw, fftlength=range_fftlength)
    r_cln = inspiral_range(cleaned, fftlength=range_fftlength)
    return Quality(
        asd_ratio=ratios,
        asd_ratio_mean=float(np.mean(list(ratios.values()))),
        out_of_band_ratio=oob.worst,
        out_of_band_hz=oob.worst_band,
        near_band_ratio=oob.near_worst,
        near_band_hz=None if np.isnan(oob.near_band[0]) else oob.near_band,
        range_raw_mpc=r_raw,
        range_cleaned_mpc=r_cln,
        range_gain_mpc=r_cln - r_raw,
    )


def segment_key(data: Mapping[str, TimeSeries]) -> str:
    """Idempotency key of a validated segment: GPS span plus a SHA-256 of its content.

    Args:
        data: Channel -> TimeSeries, all at one rate over one span (as from ``prepare``).

    Returns:
        ``"gw:<t0>-<t1>:<first 24 hex digits>"``.
    """
    h = hashlib.sha256()
    first = next(iter(data.values()))
    t0, fs = float(first.t0.value), float(first.sample_rate.value)
    t1 = t0 + len(first) / fs
    h.update(f"{t0!r}|{fs!r}".encode())
    for name, ts in data.items():
        h.update(str(name).encode() + b"\0")
        h.update(np.ascontiguousarray(ts.value, dtype=np.float64).tobytes())
    return f"gw:{t0:.6f}-{t1:.6f}:{h.hexdigest()[:24]}"


def glitch_flags(
    residual: np.ndarray,
    sample_rate: float,
    t0: float,
    band: tuple[float, float] = (30.0, 1000.0),
    threshold: float = 6.0,
    merge: float = 0.1,
    edge: float = 0.5,
) -> list[GlitchFlag]:
    """Times where the whitened, band-limited residual exceeds a threshold.

    The residual is robustly standardised without overflow
    (:func:`gravwave.gates.robust_standardize`: float64, samples beyond 1e8 robust sigma
    clipped there), tapered, whitened by its own Welch ASD (2-s FFTs),
    band-limited to ``band`` and normalised by its robust standard deviation
    (:func:`gravwave.gates.robust_location_scale`),
    so a huge finite glitch is flagged instead of overflowing. Samples above
    ``threshold`` (edges of ``edge`` s excluded) are merged into flags when closer than
    ``merge`` s.

    Args:
        residual: Cleaned strain ``(time,)`` [strain].
        sample_rate: Rate [Hz].
        t0: GPS time of the first sample [s].
        band: Search band [Hz]; the top is capped at 0.95 x Nyquist.
        threshold: Threshold [robust sigma].
        merge: Flags closer than this are merged [s].
        edge: Ignored span at both ends [s].

    Returns:
        One flag per excursion, in time order.
    """
    x = robust_standardize(residual)
    n = x.size
    x = x - x.mean()
    nper = min(n, int(2 * sample_rate))
    f, p = sps.welch(x, fs=sample_rate, nperseg=nper)
    taper = sps.windows.tukey(n, alpha=min(1.0, 2 * edge * sample_rate / n))
    spec = sfft.rfft(x * taper)
    freqs = sfft.rfftfreq(n, 1.0 / sample_rate)
    asd = np.sqrt(np.interp(freqs, f, p))
    hi = min(band[1], 0.95 * sample_rate / 2)
    keep = (freqs >= band[0]) & (freqs <= hi) & (asd > 0)
    white = np.zeros_like(spec)
    white[keep] = spec[keep] / asd[keep]
    z = sfft.irfft(white, n)
    cut = int(edge * sample_rate)
    core = z[cut : n - cut] if n > 2 * cut else z
    _, sigma = robust_location_scale(core)
    if not sigma > 0:
        return []
    z = np.abs(z) / sigma
    z[:cut] = 0.0
    z[n - cut :] = 0.0
    idx = np.flatnonzero(z > threshold)
    if idx.size == 0:
        return []
    gap = int(merge * sample_rate)
    splits = np.flatnonzero(np.diff(idx) > gap) + 1
    flags = []
    for group in np.split(idx, splits):
        peak_i = int(group[np.argmax(z[group])])
        flags.append(
            GlitchFlag(
                gps_start=t0 + int(group[0]) / sample_rate,
                gps_end=t0 + (int(group[-1]) + 1) / sample_rate,
                gps_peak=t0 + peak_i / sample_rate,
                peak=float(z[peak_i]),
            )
        )
    return flags
