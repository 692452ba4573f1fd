"""Real detector strain with the generator's witnessed couplings added (issue 12, item 4).

A real strain series (e.g. GW150914 in LIGO Hanford, shipped in ``data/gravwave/``) holds real
noise and a real signal but no witness channel. :func:`couple` adds the synthetic generator's
witness-coupled noise to it, with its witnesses: the linear band-limited magnetometer coupling
plus the 50 Hz mains line, and the bilinear mains x angular-motion sidebands
(:mod:`gravwave.synthetic`, by import: the same code, the same gains). The gains are relative to
the ASD of the real strain itself, estimated from the series (median Welch) and written as an
ASD text file that the generator reads (``SyntheticParams.asd``). The oracle, the strain a
perfect cleaning returns, is the real strain as given.

:func:`training_span` generates synthetic data with the same couplings, coloured with the same
estimated ASD, on an independent random stream and the span just before: a cleaner is fitted
there and then cleans the real strain it has never seen (as a detector's cleaner is trained on
earlier data and then applied to an event).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gwpy.frequencyseries import FrequencySeries
from gwpy.timeseries import TimeSeries, TimeSeriesDict
from pydantic import ValidationError

from gravwave.metrics import asd
from gravwave.synthetic import SyntheticParams, generate
from twins.atomic import atomic_write
from twins.errors import ConfigError, DataError

__all__ = [
    "GW150914_GPS",
    "GW150914_H1",
    "GW150914_L1",
    "GW150914_TEMPLATE",
    "CoupledStrain",
    "couple",
    "training_span",
    "write_asd",
]

log = logging.getLogger(__name__)

_DATA = Path(__file__).resolve().parents[1] / "data" / "gravwave"

GW150914_H1 = _DATA / "H-H1_LOSC_4_V2-1126259446-32.hdf5"
"""LIGO Hanford strain around GW150914: 32 s at 4096 Hz from GPS 1126259446 (GWOSC)."""

GW150914_L1 = _DATA / "L-L1_LOSC_4_V2-1126259446-32.hdf5"
"""LIGO Livingston strain around GW150914, same span (GWOSC)."""

GW150914_GPS = 1126259462.4
"""GPS time of GW150914's merger [s] (GWOSC event time, geocentre)."""

GW150914_TEMPLATE: dict[str, Any] = {
    "approximant": "IMRPhenomD",
    "mass1": 38.8,
    "mass2": 33.4,
    "spin1z": 0.0,
    "spin2z": 0.0,
    "f_lower": 20.0,
}
"""Template of GW150914 from its published source parameters: GWTC-1 (Abbott et al., Phys.
Rev. X 9, 031040, 2019) source-frame medians m1 = 35.6, m2 = 30.6 solar masses at redshift
z = 0.09, taken to the detector frame as (1 + z) m = 38.8 and 33.4 (chirp mass 31.3);
aligned spins 0 (chi_eff = -0.01); IMRPhenomD (lalsuite, frequency domain, inspiral-merger-
ringdown of aligned-spin binaries); from 20 Hz."""

#: Generator settings fixed by the real strain, not by the caller.
_FROM_STRAIN = ("duration", "sample_rate", "t0", "asd", "psd")
#: Generator settings that would add synthetic content the coupled strain does not take.
_NOT_TAKEN = {"injections": 0, "glitch_rate": 0.0}


@dataclass(frozen=True)
class CoupledStrain:
    """A real strain series with witness-coupled noise added, and its ground truth.

    Attributes:
        params: Generator settings of the couplings (duration, rate, GPS start and ASD file
            those of the real strain).
        oracle: The real strain as given [strain]: what a perfect cleaning returns.
        raw: ``oracle + noise_linear + noise_bilinear`` [strain], the oracle's channel name.
        witnesses: The generator's witness channels over the same samples.
        noise_linear: Added linear coupling noise (band-limited magnetometer + mains line).
        noise_bilinear: Added bilinear coupling noise (mains x angular sidebands).
        asd: ASD of the real strain the gains refer to [strain/sqrt(Hz)].
    """

    params: SyntheticParams
    oracle: TimeSeries
    raw: TimeSeries
    witnesses: TimeSeriesDict
    noise_linear: TimeSeries
    noise_bilinear: TimeSeries
    asd: FrequencySeries

    @property
    def t0(self) -> float:
        """GPS start [s]."""
        return float(self.oracle.t0.value)

    @property
    def bands(self) -> dict[str, tuple[float, float]]:
        """Bands [Hz] of the added noise: ``linear`` and ``bilinear``."""
        return self.params.bands

    @property
    def channel(self) -> str:
        """Channel name of the strain (raw and oracle)."""
        return str(self.oracle.name)


def write_asd(curve: FrequencySeries, path: str | Path) -> Path:
    """Write an ASD as a two-column text file (frequency [Hz], ASD), atomically.

    Rows at 0 Hz are left out; the file reads back with :func:`gravwave.io.read_asd`.

    Args:
        curve: ASD [strain/sqrt(Hz)] on increasing frequencies.
        path: Destination file (its directory must exist).

    Returns:
        The path.

    Raises:
        DataError: A value at a positive frequency is not positive and finite.
    """
    f, a = np.asarray(curve.frequencies.value), np.asarray(curve.value)
    keep = f > 0
    bad = keep & ~(np.isfinite(a) & (a > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(
            f"ASD {curve.name or ''} is {a[i]:g} at {f[i]:g} Hz ({int(bad.sum())} such bins); "
            "expected positive finite values above 0 Hz",
            hint="estimate the ASD from a span without gaps or zeros",
        )
    lines = [f"# frequency [Hz]  ASD [1/sqrt(Hz)] of {curve.name or 'strain'}"]
    lines += [f"{x:.10g} {y:.10g}" for x, y in zip(f[keep], a[keep], strict=True)]
    return atomic_write(path, "\n".join(lines) + "\n")


def _check_strain(strain: Any, fftlength: float) -> tuple[str, float, int]:
    if not isinstance(strain, TimeSeries):
        raise DataError(f"strain must be a gwpy TimeSeries, got {type(strain).__name__}")
    name = str(strain.name or "strain")
    fs = float(strain.sample_rate.value)
    if abs(fs - round(fs)) > 1e-9 or fs <= 0:
        raise DataError(f"strain {name}: sample rate {fs} Hz; expected a positive whole number")
    x = np.asarray(strain.value)
    bad = ~np.isfinite(x)
    if bad.any():
        t_bad = float(strain.t0.value) + int(np.argmax(bad)) / fs
        raise DataError(
            f"strain {name}: {int(bad.sum())} NaN/inf samples, first at GPS {t_bad}",
            hint="crop to an analysis segment first (gravwave.io.read_gwosc_hdf5 gives them)",
        )
    if len(x) < 2 * fftlength * fs:
        raise DataError(
            f"strain {name}: {len(x) / fs:g} s; the ASD estimate needs at least "
            f"{2 * fftlength:g} s (two {fftlength:g}-s FFTs)"
        )
    return name, fs, len(x)


def _coupling_params(
    settings: Mapping[str, Any], strain: TimeSeries, fs: float, n: int, asd_file: Path
) -> SyntheticParams:
    fixed = [k for k in _FROM_STRAIN if k in settings]
    if fixed:
        raise ConfigError(
            f"coupling settings {fixed} are set by the real strain {strain.name}",
            hint=f"leave out {', '.join(_FROM_STRAIN)}",
        )
    extra = [k for k, off in _NOT_TAKEN.items() if settings.get(k, off) != off]
    if extra:
        raise ConfigError(
            f"coupling settings {extra} would add synthetic transients that the coupled "
            "strain does not take",
            hint="add transients with gravwave.transients instead",
        )
    try:
        return SyntheticParams(
            **settings,
            duration=n / fs,
            sample_rate=round(fs),
            t0=float(strain.t0.value),
            asd=asd_file,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"coupling setting {where}: {first['msg']}") from exc


def couple(
    strain: TimeSeries,
    workdir: str | Path,
    settings: Mapping[str, Any] | None = None,
    *,
    fftlength: float = 4.0,
) -> CoupledStrain:
    """Add the generator's witnessed linear and bilinear couplings to a real strain series.

    The strain's ASD is estimated (median Welch, ``fftlength``-s Hann FFTs, 50 % overlap) and
    written to ``<workdir>/<channel>-asd.txt``; the generator, coloured with that file, draws
    the couplings and their witnesses over the strain's samples (segment 0 of its settings
    with the strain's duration, rate and GPS start), so each coupling has the gain it has in
    synthetic data relative to the strain's own noise floor.

    Args:
        strain: Real strain [strain], finite, at a whole-number rate in Hz.
        workdir: Directory for the ASD file (created if missing); coupling another strain of
            the same channel there replaces the file that earlier results' ``params`` name.
        settings: Generator settings of :class:`gravwave.synthetic.SyntheticParams` (seed,
            gains, bands, distractors...); not ``duration``, ``sample_rate``, ``t0``, ``asd``
            or ``psd`` (the strain sets them) and no injections or glitches.
        fftlength: FFT length of the ASD estimate [s].

    Returns:
        The coupled strain, with the untouched strain as its oracle.

    Raises:
        DataError: Not a finite TimeSeries, a fractional rate, or shorter than two FFTs.
        ConfigError: A setting the strain fixes, a transient, or an invalid setting.
    """
    name, fs, n = _check_strain(strain, fftlength)
    settings = dict(settings or {})
    curve = asd(strain, fftlength)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    asd_file = write_asd(curve, workdir / f"{safe}-asd.txt")
    params = _coupling_params(settings, strain, fs, n, asd_file)
    seg = generate(params, 0)
    raw = TimeSeries(
        np.asarray(strain.value, dtype=np.float64) + seg.noise_linear.value
        + seg.noise_bilinear.value,
        t0=strain.t0, sample_rate=strain.sample_rate, unit=strain.unit, name=name, channel=name,
    )  # fmt: skip
    log.info(
        "%s: added linear (gain %g) and bilinear (gain %g) couplings, %d witnesses, seed %d",
        name,
        params.linear_gain,
        params.bilinear_gain,
        len(seg.witnesses),
        params.seed,
    )
    return CoupledStrain(
        params=params,
        oracle=strain,
        raw=raw,
        witnesses=seg.witnesses,
        noise_linear=seg.noise_linear,
        noise_bilinear=seg.noise_bilinear,
        asd=curve,
    )


def training_span(
    coupled: CoupledStrain, duration: float, seed: int
) -> tuple[TimeSeries, TimeSeriesDict]:
    """Synthetic training data with the coupled strain's couplings, before its span.

    The generator with the same settings and ASD file, but ``duration`` s ending where the
    real strain starts and its own seed: the couplings (transfer functions, gains) are the
    same, the noise and witness realisations independent of the coupled strain's.

    Args:
        coupled: The coupled real strain.
        duration: Training span [s].
        seed: Seed of the training data; must differ from ``coupled.params.seed``.

    Returns:
        ``(strain, witnesses)``: strain named like the real strain's channel.

    Raises:
        ConfigError: The seed of the coupled strain (same random streams: the witnesses would
            repeat), or an invalid duration.
    """
    if seed == coupled.params.seed:
        raise ConfigError(
            f"training seed {seed} is the coupled strain's seed: the training witnesses would "
            "repeat the ones that clean the real strain",
            hint="pick another seed",
        )
    try:
        params = SyntheticParams(
            **{
                **coupled.params.model_dump(),
                "duration": duration,
                "t0": coupled.t0 - duration,
                "seed": seed,
            }
        )
    except ValidationError as exc:
        raise ConfigError(f"training span of {duration} s: {exc.errors()[0]['msg']}") from exc
    seg = generate(params, 0)
    name = coupled.channel
    strain = TimeSeries(
        seg.strain.value, t0=seg.strain.t0, sample_rate=seg.strain.sample_rate, name=name,
        channel=name,
    )  # fmt: skip
    return strain, seg.witnesses
