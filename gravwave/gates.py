"""Plausibility gates at ingest: every channel finite, alive, and within a robust bound.

A segment that gets into the noise twin (or any :func:`gravwave.io.prepare` caller) passes,
channel by channel, four checks in this order, each refused with a one-line
:class:`~twins.errors.DataError` that names the channel, the file, the offending sample's GPS
time, its value and the bound:

1. every sample is finite;
2. the channel is not constant (a dead or disconnected sensor: all samples equal);
3. every sample lies within ``|x - median| <= K x sigma_r`` where ``sigma_r`` is the
   segment's robust standard deviation ``1.4826 x MAD`` (:data:`MAD_TO_SIGMA`) and ``K`` is
   :attr:`IngestBounds.max_robust_sigma`;
4. every sample satisfies ``|x| <= max_abs`` (:attr:`IngestBounds.max_abs`), so that the
   sums of squares of spectral estimates downstream cannot overflow float64 even when a
   whole channel is absurdly scaled (which the scale-free check 3 cannot see).

**The default bound K = 13, derived.** For Gaussian noise the probability that one sample is
more than ``K`` standard deviations from the mean is ``erfc(K / sqrt(2))``. By the union
bound (valid whatever the correlation between samples, so for coloured noise too) a segment
of ``N`` samples trips the gate with probability at most ``N x erfc(K / sqrt(2))``. Asking
for at most ``1e-6`` for the longest segment we allow, ``N = 2**32`` samples (3 days at
16384 Hz, 12 days at 4096 Hz), gives ``erfc(K / sqrt(2)) <= 2.3e-16``, i.e.
``K_gauss = 8.2``. The scale is estimated from the segment itself: the MAD estimate of a
Gaussian sigma from ``n`` independent samples has a relative standard error of
``1.166 / sqrt(n)`` (asymptotic efficiency 0.37). Coloured strain is dominated by a band some
8 Hz wide, so a 16-s segment (the twin's shortest) holds only about ``n = 2 x 8 Hz x 16 s =
256`` independent samples; five standard errors low gives ``sigma_r >= 0.636 sigma``, hence
``K = 8.2 / 0.636 = 12.9``, rounded up to 13. The public GW150914 GWOSC files (H1, L1,
32 s at 4096 Hz) reach 3.7 and 4.5 robust sigma. A user whose data are real but heavier
tailed widens it with the policy key ``ingest.max_robust_sigma`` (or per channel with
``ingest.channel_max_robust_sigma``).

:func:`robust_standardize` is the overflow-free scaling that the glitch search of the twin
uses, so a huge but finite glitch that a widened bound lets through is flagged, not
overflowed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Annotated

import numpy as np
from gwpy.timeseries import TimeSeries
from pydantic import BaseModel, ConfigDict, Field

from twins.errors import DataError

__all__ = [
    "CLIP_SIGMA",
    "DEFAULT_MAX_ABS",
    "DEFAULT_MAX_ROBUST_SIGMA",
    "MAD_TO_SIGMA",
    "IngestBounds",
    "check_channel",
    "check_segment",
    "robust_location_scale",
    "robust_standardize",
]

log = logging.getLogger(__name__)

#: ``1 / Phi^-1(3/4)``: the MAD of Gaussian noise times this is its standard deviation.
MAD_TO_SIGMA = 1.4826
#: ``sqrt(pi / 2)``: the mean absolute deviation of Gaussian noise times this is its standard
#: deviation; the robust scale falls back to it when more than half the samples are equal.
MEAN_ABS_TO_SIGMA = math.sqrt(math.pi / 2)
#: Default ``K`` of the robust bound [robust standard deviations]; derived in the module doc.
DEFAULT_MAX_ROBUST_SIGMA = 13.0
#: Default largest accepted ``|sample|`` [channel units]: Welch sums ``n x max**2`` over up to
#: ``n = 2**32`` samples stay below float64's 1.8e308 for ``max < 2e149``; 1e100 leaves room
#: for the FFT gains. Physical strain is ~1e-21, witnesses in SI units far below 1e100.
DEFAULT_MAX_ABS = 1e100
#: :func:`robust_standardize` clips at this many robust sigmas. Beyond it the float64
#: spectrum of unit-variance noise would drown in the rounding error of the clipped sample
#: (2.2e-16 x 1e8 = 2e-8 relative, still negligible here); any glitch search threshold
#: (~6) lies far below, so a clipped sample is flagged either way.
CLIP_SIGMA = 1e8

_PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class IngestBounds(BaseModel):
    """The plausibility bounds of ingested strain and witness channels, in one place.

    Attributes:
        max_robust_sigma: ``K``: largest accepted ``|x - median|`` in robust standard
            deviations (``1.4826 x MAD`` of the segment's channel). Default 13, derived in
            the module docstring (Gaussian noise of up to 2**32 samples trips it with
            probability below 1e-6).
        channel_max_robust_sigma: Per-channel ``K`` overriding ``max_robust_sigma``, e.g.
            ``{"V1:ENV_SEIS_X": 40}`` for a heavy-tailed witness.
        max_abs: Largest accepted ``|x|`` [channel units], whatever the segment's scale.
    """

    model_config = ConfigDict(extra="forbid")

    max_robust_sigma: _PositiveFinite = DEFAULT_MAX_ROBUST_SIGMA
    channel_max_robust_sigma: dict[str, _PositiveFinite] = Field(default_factory=dict)
    max_abs: _PositiveFinite = DEFAULT_MAX_ABS

    def k_for(self, channel: str) -> float:
        """``K`` of ``channel`` [robust sigma]: its override, else ``max_robust_sigma``."""
        return float(self.channel_max_robust_sigma.get(channel, self.max_robust_sigma))


def _unit_scaled(x: np.ndarray) -> tuple[np.ndarray, int]:
    """``(x * 2**-e, e)`` with ``max |x * 2**-e| < 1``; exact (a power of two) for finite x.

    Used only when samples approach float64's largest value; values below ~1e-290 of the
    largest then become subnormal and keep fewer significant bits.
    """
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if not peak > 0:
        return x, 0
    e = math.frexp(peak)[1]
    with np.errstate(under="ignore"):
        return np.ldexp(x, -e), e


def _median_scale(x: np.ndarray) -> tuple[float, float]:
    """Median and robust sigma of ``x``; non-finite only for samples near float64's limit."""
    with np.errstate(over="ignore", invalid="ignore"):
        med = float(np.median(x))
        dev = np.abs(x - med)
        s = MAD_TO_SIGMA * float(np.median(dev))
        if s == 0.0:
            s = MEAN_ABS_TO_SIGMA * float(np.mean(dev))
    return med, s


def _robust(x: np.ndarray) -> tuple[np.ndarray, float, float, int]:
    """``(y, median(y), sigma_r(y), e)`` with ``y = x * 2**-e``, all finite for finite ``x``.

    ``e = 0`` (``y`` is ``x``, exact) unless the median or scale of ``x`` overflows (samples
    near 1.8e308); then ``x`` is scaled into ``(-1, 1)`` by :func:`_unit_scaled`.
    """
    med, s = _median_scale(x)
    if math.isfinite(med) and math.isfinite(s):
        return x, med, s, 0
    u, e = _unit_scaled(x)
    med, s = _median_scale(u)
    return u, med, s, e


def robust_location_scale(x: np.ndarray) -> tuple[float, float]:
    """Median and robust standard deviation of a series, without overflow.

    The robust standard deviation is ``1.4826 x MAD``; when more than half the samples are
    equal (MAD 0) it falls back to ``sqrt(pi/2) x mean |x - median|`` (also sigma for
    Gaussian noise), which is 0 only for a constant series.

    Args:
        x: Finite samples ``(time,)``.

    Returns:
        ``(median, sigma_r)`` in the units of ``x`` (``sigma_r`` may read ``inf`` for samples
        within a factor 3 of float64's largest value).
    """
    _, med, s, e = _robust(np.asarray(x, dtype=np.float64).ravel())
    with np.errstate(over="ignore"):
        return float(np.ldexp(med, e)), float(np.ldexp(s, e))


def robust_standardize(x: np.ndarray, clip: float = CLIP_SIGMA) -> np.ndarray:
    """``(x - median) / sigma_r`` in float64, clipped at ``+-clip``; never overflows.

    A huge sample ends at ``+-clip`` instead of ``inf``; a series whose median or scale
    would overflow is first scaled by a power of two (exact), so every finite input gives a
    finite output.

    Args:
        x: Finite samples ``(time,)`` in any units.
        clip: Clip level [robust sigma]; default :data:`CLIP_SIGMA`.

    Returns:
        float64 ``(time,)`` in robust standard deviations; all zeros for a constant series.
    """
    y, med, s, _ = _robust(np.asarray(x, dtype=np.float64).ravel())
    if not s > 0:
        return np.zeros_like(y)
    with np.errstate(over="ignore"):
        z = (y - med) / s
    return np.clip(z, -clip, clip, out=z)


def _gps(t0: float, rate: float, i: int) -> str:
    return f"{t0 + i / rate:.6f}"


def check_channel(
    values: np.ndarray,
    t0: float,
    sample_rate: float,
    channel: str,
    source: str,
    bounds: IngestBounds | None = None,
) -> None:
    """Refuse a channel segment that is non-finite, dead or outside the plausibility bounds.

    Args:
        values: Samples ``(time,)`` in the channel's units.
        t0: GPS time of the first sample [s].
        sample_rate: Rate [Hz].
        channel: Channel name (for messages).
        source: File name or label (for messages).
        bounds: The bounds; default :class:`IngestBounds` ``()``.

    Raises:
        DataError: A NaN/inf sample, a constant channel, a sample beyond ``K`` robust sigma
            from the median, or a sample beyond ``max_abs``; one line naming the channel,
            ``source``, the (worst) sample's GPS time and value, and the bound.
    """
    b = bounds or IngestBounds()
    x = np.asarray(values, dtype=np.float64).ravel()
    where = f"channel {channel} in {source}"
    if x.size == 0:
        raise DataError(f"{where} is empty (0 samples)")
    bad = ~np.isfinite(x)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"{where}: {int(bad.sum())} NaN/inf samples, first {x[i]} at GPS "
            f"{_gps(t0, sample_rate, i)}; expected finite values",
            hint="cut the span to analysis segments",
        )
    lo, hi = float(np.min(x)), float(np.max(x))
    if lo == hi:
        raise DataError(
            f"{where} is constant (dead): all {x.size} samples equal {lo:g}",
            hint="check the sensor, or drop the channel from the channel list",
        )
    k = b.k_for(channel)
    y, med_y, s_y, e = _robust(x)
    with np.errstate(over="ignore"):
        dev = np.abs(y - med_y)
    outside = dev > k * s_y
    if outside.any():
        i = int(np.argmax(dev))
        with np.errstate(over="ignore"):
            med, sigma = float(np.ldexp(med_y, e)), float(np.ldexp(s_y, e))
        raise DataError(
            f"{where}: sample {x[i]:.6g} at GPS {_gps(t0, sample_rate, i)} is outside the "
            f"plausibility bound |x - median| <= {k:g} x robust sigma = {k * sigma:.4g} "
            f"(median {med:.4g}, robust sigma {sigma:.4g}; {int(outside.sum())} of {x.size} "
            "samples outside)",
            hint=f"if the data are real, widen the policy key ingest.max_robust_sigma "
            f"(or ingest.channel_max_robust_sigma for {channel})",
        )
    peak = np.abs(x)
    if float(np.max(peak)) > b.max_abs:
        i = int(np.argmax(peak))
        raise DataError(
            f"{where}: sample {x[i]:.6g} at GPS {_gps(t0, sample_rate, i)} is outside the "
            f"plausibility bound |x| <= {b.max_abs:g}",
            hint="check the channel's units and calibration, or widen ingest.max_abs",
        )


def check_segment(
    data: Mapping[str, TimeSeries], source: str, bounds: IngestBounds | None = None
) -> None:
    """Run :func:`check_channel` on every channel of a segment (strain and witnesses).

    Args:
        data: Channel -> TimeSeries (any rates).
        source: File name or label (for messages).
        bounds: The bounds; default :class:`IngestBounds` ``()``.

    Raises:
        DataError: The first channel that fails, as in :func:`check_channel`.
    """
    for name, ts in data.items():
        check_channel(
            np.asarray(ts.value),
            float(ts.t0.value),
            float(ts.sample_rate.value),
            str(name),
            source,
            bounds,
        )
    log.debug("%s: %d channels pass the plausibility gates", source, len(data))
