"""Does a known signal survive cleaning? Matched-filter SNR time series and peak, before and
after (issue 12, items 4 and 5).

:func:`snr_series` filters a strain series with a frequency-domain template (pycbc), the PSD
estimated from the same series exactly as :func:`gravwave.metrics.matched_filter_snr` does it
(median Welch, inverse-spectrum truncation to the FFT length), so its peak equals that
function's value; it also gives the time of the peak and the whole series to plot.
:func:`check_event` compares the SNR peak and its time in a reference series (the untouched
strain, or the oracle), the raw and the cleaned strain.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from gwpy.timeseries import TimeSeries
from pydantic import BaseModel, ConfigDict

from twins.errors import DataError

__all__ = ["EventCheck", "SnrPeak", "check_event", "snr_peak", "snr_factor", "snr_series"]

log = logging.getLogger(__name__)

_WAVEFORM_KEYS = {
    "approximant",
    "mass1",
    "mass2",
    "spin1z",
    "spin2z",
    "distance",
    "inclination",
    "coa_phase",
    "f_lower",
}


class SnrPeak(BaseModel):
    """The loudest matched-filter SNR in a window.

    Attributes:
        gps: GPS time of the peak sample [s].
        snr: Its modulus.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    gps: float
    snr: float


class EventCheck(BaseModel):
    """A signal's SNR peak in a reference, the raw and the cleaned strain.

    Attributes:
        reference: Peak in the reference (untouched strain or oracle).
        raw: Peak in the raw strain (reference plus witnessed noise).
        cleaned: Peak in the cleaned strain.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    reference: SnrPeak
    raw: SnrPeak
    cleaned: SnrPeak

    @property
    def snr_change(self) -> float:
        """``cleaned.snr / reference.snr - 1`` (0.01 = 1 % louder after cleaning)."""
        return self.cleaned.snr / self.reference.snr - 1.0

    @property
    def peak_shift(self) -> float:
        """``cleaned.gps - reference.gps`` [s]."""
        return self.cleaned.gps - self.reference.gps


def _template(template: Mapping[str, Any], delta_f: float, length: int, f_lower: float):
    from pycbc.waveform import fd_approximants, get_fd_waveform

    kw = {k: v for k, v in template.items() if k in _WAVEFORM_KEYS}
    kw.setdefault("f_lower", f_lower)
    approximant = kw.get("approximant")
    if approximant not in fd_approximants():
        raise DataError(
            f"template approximant {approximant!r} is not a frequency-domain approximant of "
            "the installed lalsuite",
            hint="use e.g. IMRPhenomD or IMRPhenomXAS",
        )
    try:
        tmpl, _ = get_fd_waveform(delta_f=delta_f, **kw)
    except Exception as exc:  # lal raises many types for bad parameters
        raise DataError(f"template {kw} cannot be generated: {exc}") from exc
    tmpl.resize(length)
    return tmpl


def _data_psd(strain: Any, fftlength: float, f_lower: float, truncate: bool) -> Any:
    """Median-Welch PSD of a pycbc series on its own frequency grid (as metrics does it)."""
    import pycbc.psd

    psd = pycbc.psd.interpolate(strain.psd(fftlength), strain.delta_f)
    if not truncate:
        return psd
    fs = 1.0 / strain.delta_t
    return pycbc.psd.inverse_spectrum_truncation(
        psd, int(fftlength * fs), low_frequency_cutoff=f_lower
    )


def _checked(data: Any, what: str) -> str:
    if not isinstance(data, TimeSeries):
        raise DataError(f"{what} must be a gwpy TimeSeries, got {type(data).__name__}")
    name = str(data.name or what)
    if not np.all(np.isfinite(data.value)):
        raise DataError(f"{name} holds NaN or infinite samples", hint="fill or cut the gaps")
    return name


def snr_series(
    data: TimeSeries,
    template: Mapping[str, Any],
    *,
    f_lower: float = 20.0,
    fftlength: float = 4.0,
    crop: float | None = None,
) -> TimeSeries:
    """Complex matched-filter SNR of a frequency-domain template along a strain series.

    Args:
        data: Strain [strain], finite.
        template: Waveform parameters of :func:`pycbc.waveform.get_fd_waveform`
            (``approximant``, ``mass1``, ``mass2`` [solar masses], ``spin1z``, ``spin2z``,
            ``f_lower`` [Hz], ...), e.g. :data:`gravwave.realstrain.GW150914_TEMPLATE`.
        f_lower: Low-frequency cutoff of the filter [Hz] (and of the template unless given).
        fftlength: Welch FFT length of the PSD estimate and its truncation length [s].
        crop: Span cut at each end [s], where the PSD truncation and the template wrap
            around; default ``fftlength``.

    Returns:
        Complex SNR [dimensionless] at the data's rate, starting ``crop`` s after the data.

    Raises:
        DataError: Non-finite data, data shorter than two FFTs plus the crops, or a template
            that is not a frequency-domain waveform of the installed lalsuite.
    """
    from pycbc.filter import matched_filter

    name = _checked(data, "data")
    crop = fftlength if crop is None else float(crop)
    duration = float(data.duration.value)
    if duration < 2 * fftlength + 2 * crop:
        raise DataError(
            f"{name}: {duration:g} s is too short for {fftlength:g}-s PSD FFTs and {crop:g}-s "
            "crops at both ends",
            hint="use longer data or a shorter fftlength",
        )
    strain = data.to_pycbc()
    psd = _data_psd(strain, fftlength, f_lower, truncate=True)
    tmpl = _template(template, strain.delta_f, len(strain) // 2 + 1, f_lower)
    snr = matched_filter(tmpl, strain, psd=psd, low_frequency_cutoff=f_lower)
    out = TimeSeries.from_pycbc(snr.crop(crop, crop))
    out.name = f"{name} SNR"
    return out


def snr_factor(
    cleaned: TimeSeries,
    reference: TimeSeries,
    template: Mapping[str, Any],
    *,
    f_lower: float = 20.0,
    fftlength: float = 4.0,
) -> float:
    """Expected SNR ratio cleaned / reference of a signal, from the two series' PSDs.

    Each series is filtered with its own PSD ``S`` (as :func:`snr_series` estimates it), so a
    signal ``h``'s SNR is ``sigma(h; S) = sqrt(4 df sum |h(f)|^2 / S(f))`` plus unit-variance
    noise. The cleaned strain is the reference plus a residual ``r`` independent of it, its
    PSD ``S_c = S + S_r``: the signal part of its SNR is ``f = sigma(h; S_c) / sigma(h; S)``
    times the reference's, and the two noise terms, correlated by ``f`` (the covariance of
    ``<n, h>_{S_c} / sigma(h; S_c)`` and ``<n, h>_S / sigma(h; S)`` is ``sigma(h; S_c) /
    sigma(h; S)``), differ by a standard deviation ``sqrt(2 (1 - f))``. So the cleaned SNR is
    ``f x`` the reference's give or take ``sqrt(2 |1 - f|)``; ``f = 1`` for a perfect cleaning.

    Args:
        cleaned: Cleaned strain [strain].
        reference: The strain without witnessed noise (untouched strain or oracle), over the
            same samples [strain].
        template: Waveform parameters (see :func:`snr_series`).
        f_lower: Filter cutoff [Hz].
        fftlength: Welch FFT length and truncation length of the PSDs [s].

    Raises:
        DataError: Non-finite series, different lengths or rates, or a bad template.
    """
    from pycbc.filter import sigma

    _checked(cleaned, "cleaned")
    _checked(reference, "reference")
    c, s = cleaned.to_pycbc(), reference.to_pycbc()
    if len(c) != len(s) or abs(c.delta_t - s.delta_t) > 1e-12 * s.delta_t:
        raise DataError(
            f"cleaned ({len(c)} samples at {1 / c.delta_t:g} Hz) and reference ({len(s)} at "
            f"{1 / s.delta_t:g} Hz) differ; expected the same samples"
        )
    tmpl = _template(template, s.delta_f, len(s) // 2 + 1, f_lower)
    sig = [
        sigma(
            tmpl, psd=_data_psd(x, fftlength, f_lower, truncate=True), low_frequency_cutoff=f_lower
        )
        for x in (c, s)
    ]
    return float(sig[0] / sig[1])


def snr_peak(snr: TimeSeries, gps: float, window: float = 0.1) -> SnrPeak:
    """Largest ``|snr|`` within ``gps +- window`` s.

    Raises:
        DataError: The window is outside the series.
    """
    t = snr.times.value
    inside = np.flatnonzero(np.abs(t - gps) <= window)
    if inside.size == 0:
        raise DataError(
            f"GPS {gps} +- {window} s is outside the SNR series [{t[0]}, {t[-1]}] s",
            hint="the data must cover the signal plus the crops",
        )
    mag = np.abs(np.asarray(snr.value)[inside])
    i = int(inside[int(np.argmax(mag))])
    return SnrPeak(gps=float(t[i]), snr=float(abs(snr.value[i])))


def check_event(
    reference: TimeSeries,
    raw: TimeSeries,
    cleaned: TimeSeries,
    template: Mapping[str, Any],
    gps: float,
    *,
    window: float = 0.1,
    f_lower: float = 20.0,
    fftlength: float = 4.0,
) -> EventCheck:
    """SNR peak of a signal near ``gps`` in the reference, raw and cleaned strain.

    Each series is filtered with the PSD estimated from itself (:func:`snr_series`).

    Args:
        reference: Strain without the witnessed noise (the untouched real strain, or the
            oracle) [strain].
        raw: Strain with it [strain].
        cleaned: Cleaned strain [strain].
        template: Waveform parameters (see :func:`snr_series`).
        gps: Expected GPS time of the signal's peak [s].
        window: Half width of the search window [s].
        f_lower: Filter cutoff [Hz].
        fftlength: PSD FFT length [s].
    """
    peaks = {
        key: snr_peak(snr_series(x, template, f_lower=f_lower, fftlength=fftlength), gps, window)
        for key, x in (("reference", reference), ("raw", raw), ("cleaned", cleaned))
    }
    check = EventCheck(**peaks)
    log.info(
        "SNR %.3f (reference) %.3f (raw) %.3f (cleaned), change %+.2f %%, peak shift %.2f ms",
        check.reference.snr,
        check.raw.snr,
        check.cleaned.snr,
        100 * check.snr_change,
        1e3 * check.peak_shift,
    )
    if not math.isfinite(check.snr_change):
        raise DataError("the reference SNR is zero: no signal near the given GPS time")
    return check
