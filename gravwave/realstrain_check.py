"""How a cleaner does on real strain with witnessed noise added: the checks of issue 12, item 4.

:func:`check_real_strain` measures, for a :class:`gravwave.realstrain.CoupledStrain` and its
cleaned strain: the in-band ASD ratio against the oracle (the untouched real strain: 1 when
the added noise is gone), the worst 5-Hz sub-band outside the cleaner's bands
(:func:`gravwave.metrics.out_of_band`, cleaned / raw: 1 when nothing is added; median- and
mean-averaged ASDs, beside the untouched strain's own figure, see
:meth:`RealStrainCheck.bars`), and a known
signal's matched-filter SNR and peak time in the real, raw and cleaned strain
(:func:`gravwave.eventcheck.check_event`) with the SNR change the cleaning residual explains
(:func:`gravwave.eventcheck.snr_factor`).

Run as a script, it fits a cascade on synthetic data coloured with GW150914-H1's ASD (the
acceptance budget by default) and checks it on H1 with the couplings drawn from several seeds::

    OMP_WAIT_POLICY=PASSIVE python -m gravwave.realstrain_check --workdir runs/gw150914
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from gwpy.timeseries import TimeSeries
from pydantic import BaseModel, ConfigDict

from gravwave.eventcheck import EventCheck, check_event, snr_factor
from gravwave.io import read_gwosc_hdf5
from gravwave.metrics import asd, asd_ratio, out_of_band
from gravwave.quality import band_label
from gravwave.realstrain import (
    GW150914_GPS,
    GW150914_H1,
    GW150914_TEMPLATE,
    CoupledStrain,
    couple,
    training_span,
)
from gravwave.training import CascadeParams, fit_cascade
from twins.atomic import write_json_atomic

__all__ = ["SNR_BAR", "OOB_BAR", "PEAK_BAR_S", "RealStrainCheck", "check_real_strain"]

log = logging.getLogger(__name__)

SNR_BAR = 0.01
"""Largest relative change of the signal's SNR against the untouched strain (issue 12)."""

PEAK_BAR_S = 1e-3
"""Largest shift of the SNR peak [s] (issue 12)."""

OOB_BAR = 0.01
"""Largest excess of the worst out-of-band sub-band's ASD ratio over 1 (issue 12)."""


class RealStrainCheck(BaseModel):
    """The checks of a cleaning of real strain with witnessed noise added.

    Attributes:
        channel: Strain channel.
        cleaned_vs_oracle: In-band ASD ratio cleaned / untouched strain per coupling band
            (``band_label``); 1 when the added noise is removed.
        raw_vs_oracle: The same for the raw strain (how much noise was added).
        out_of_band: Worst (highest) 5-Hz sub-band ASD ratio cleaned / raw of 20-1000 Hz
            outside the cleaner's bands, median-averaged ASDs.
        out_of_band_hz: Its sub-band [Hz].
        near_band: Worst sub-band within 25 Hz of the cleaner's bands (median).
        near_band_hz: Its sub-band [Hz].
        out_of_band_mean: The worst sub-band with mean-averaged ASDs (what the bar reads).
        out_of_band_mean_hz: Its sub-band [Hz].
        oracle_out_of_band: The untouched strain's own worst sub-band ratio against the raw
            one (the perfect cleaning's figure), median-averaged ASDs.
        oracle_out_of_band_mean: The same, mean-averaged ASDs.
        event: The signal's SNR peak in the untouched, raw and cleaned strain.
        snr_factor: Expected SNR ratio cleaned / untouched from their PSDs (1 when the
            cleaning leaves no residual; :func:`gravwave.eventcheck.snr_factor`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: str
    cleaned_vs_oracle: dict[str, float]
    raw_vs_oracle: dict[str, float]
    out_of_band: float
    out_of_band_hz: tuple[float, float]
    near_band: float
    near_band_hz: tuple[float, float]
    out_of_band_mean: float
    out_of_band_mean_hz: tuple[float, float]
    oracle_out_of_band: float
    oracle_out_of_band_mean: float
    event: EventCheck
    snr_factor: float

    @property
    def snr_spread(self) -> float:
        """Standard deviation [SNR units] of the cleaned SNR around ``snr_factor`` x the
        untouched one: ``sqrt(2 |1 - snr_factor|)``."""
        return math.sqrt(2.0 * abs(1.0 - self.snr_factor))

    def bars(self) -> dict[str, bool]:
        """Issue 12's bars: SNR within 1 %, peak within 1 ms, out-of-band within 1 %.

        The out-of-band bar reads the mean-averaged ASDs: on 32 s (15 Welch segments of 4 s)
        a median-averaged ratio scatters 2.4 times as much (:func:`gravwave.metrics.
        out_of_band`), about 1.5 % for what a cleaning changes beside a coupling's skirts,
        so that the perfect cleaning itself reads up to 1.012 there (GW150914-H1 with the
        couplings of seed 101 at 120-125 Hz, :attr:`oracle_out_of_band`): a median bar of
        1 % cannot be resolved on this span; the mean-averaged figure can (0.6 %).
        """
        return {
            "snr": abs(self.event.snr_change) < SNR_BAR,
            "peak": abs(self.event.peak_shift) < PEAK_BAR_S,
            "out_of_band": self.out_of_band_mean - 1.0 < OOB_BAR,
        }


def check_real_strain(
    coupled: CoupledStrain,
    cleaned: TimeSeries,
    cleaner_bands: Sequence[tuple[float, float]],
    template: Mapping[str, Any] = GW150914_TEMPLATE,
    gps: float = GW150914_GPS,
    *,
    fftlength: float = 4.0,
    window: float = 0.1,
) -> RealStrainCheck:
    """In-band ratios against the oracle, out-of-band sub-bands and the signal's SNR.

    Args:
        coupled: The real strain with witnessed noise added.
        cleaned: Its cleaned strain [strain].
        cleaner_bands: The cleaner's bands [Hz] (left out of the out-of-band sub-bands).
        template: Waveform parameters of the signal (frequency-domain approximant).
        gps: Expected GPS time of its peak [s].
        fftlength: Welch FFT length of the ASDs and the SNR's PSD [s].
        window: Half width of the SNR peak search [s].
    """
    oracle, raw = coupled.oracle, coupled.raw
    a_cln, a_raw, a_orc = (asd(x, fftlength) for x in (cleaned, raw, oracle))
    m_cln, m_raw, m_orc = (asd(x, fftlength, method="welch") for x in (cleaned, raw, oracle))
    bands = list(coupled.bands.values())
    outside = list(cleaner_bands)
    ob = out_of_band(a_cln, a_raw, outside, fftlength)
    ob_mean = out_of_band(m_cln, m_raw, outside, fftlength)
    event = check_event(oracle, raw, cleaned, template, gps, window=window, fftlength=fftlength)
    return RealStrainCheck(
        channel=coupled.channel,
        cleaned_vs_oracle={band_label(b): asd_ratio(a_cln, a_orc, [b]) for b in bands},
        raw_vs_oracle={band_label(b): asd_ratio(a_raw, a_orc, [b]) for b in bands},
        out_of_band=ob.worst,
        out_of_band_hz=ob.worst_band,
        near_band=ob.near_worst,
        near_band_hz=ob.near_band,
        out_of_band_mean=ob_mean.worst,
        out_of_band_mean_hz=ob_mean.worst_band,
        oracle_out_of_band=out_of_band(a_orc, a_raw, outside, fftlength).worst,
        oracle_out_of_band_mean=out_of_band(m_orc, m_raw, outside, fftlength).worst,
        event=event,
        snr_factor=snr_factor(cleaned, oracle, template, fftlength=fftlength),
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Fit a cascade on synthetic data coloured with H1's ASD; check it on GW150914-H1.

    Returns:
        The report written to ``<workdir>/gw150914.json`` (the cascade to
        ``<workdir>/cascade.pt``).
    """
    ap = argparse.ArgumentParser(
        description="Fit a cascade on synthetic H1-coloured data; check it on GW150914-H1"
    )
    ap.add_argument("--workdir", default="runs/gw150914")
    ap.add_argument("--train-s", type=float, default=1024.0)
    ap.add_argument("--train-seed", type=int, default=100)
    ap.add_argument("--seeds", type=int, nargs="+", default=[101, 102, 103, 104, 105])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--taps", type=int, default=CascadeParams.model_fields["n_taps"].default)
    ap.add_argument("--linear-band", type=float, nargs=2, default=(125.0, 180.0))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    h1, _ = read_gwosc_hdf5(GW150914_H1)
    first = couple(h1, workdir, {"seed": args.seeds[0]})
    strain, witnesses = training_span(first, args.train_s, args.train_seed)
    tic = time.perf_counter()
    linear = tuple(args.linear_band)
    cascade = fit_cascade(
        strain,
        witnesses,
        CascadeParams(
            linear_bands=[linear],
            network_band=first.bands["bilinear"],
            n_taps=args.taps,
            epochs=args.epochs,
            max_steps_per_epoch=args.steps,
            batch_size=args.batch,
            seed=args.train_seed,
        ),
        workdir,
    )
    cascade.save(workdir / "cascade.pt")
    report: dict[str, Any] = {"fit_wall_s": time.perf_counter() - tic, "args": vars(args)}
    for seed in args.seeds:
        coupled = couple(h1, workdir, {"seed": seed})
        cleaned = cascade.clean(coupled.raw, coupled.witnesses)
        check = check_real_strain(coupled, cleaned, cascade.bands)
        report[f"seed {seed}"] = {
            **check.model_dump(mode="json"),
            "snr_change": check.event.snr_change,
            "peak_shift_s": check.event.peak_shift,
            "snr_spread": check.snr_spread,
            "bars": check.bars(),
        }
        log.info("seed %d: %s", seed, json.dumps(report[f"seed {seed}"]))
    write_json_atomic(workdir / "gw150914.json", report)
    log.info("report in %s", workdir / "gw150914.json")
    return report


if __name__ == "__main__":
    main()
