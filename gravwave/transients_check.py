"""Do unwitnessed transients pass through a cleaner? The checks of issue 12, item 5.

:func:`check_transients` generates a synthetic segment with one BNS injection, adds a loud
sine-Gaussian glitch (:mod:`gravwave.transients`) to its raw strain and its oracle, cleans the
raw strain and measures: the glitch's excess band energy in its tile (oracle, raw, cleaned),
the cleaning residual's power in that band relative to the oracle's (``rho``: the energy ratio
cleaned / oracle then has a standard deviation ``2 sqrt(rho) / SNR``), whether
:func:`gravwave.quality.glitch_flags` flags the glitch at its GPS time, and the BNS's
matched-filter SNR (oracle, raw, cleaned).

Run as a script, it fits a cascade on the generator's design curve (the acceptance budget by
default) and checks it on several test segments::

    OMP_WAIT_POLICY=PASSIVE python -m gravwave.transients_check --workdir runs/transients
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gwpy.frequencyseries import FrequencySeries
from gwpy.timeseries import TimeSeries
from pydantic import BaseModel, ConfigDict

from gravwave.cleaners import Cleaner
from gravwave.metrics import asd, matched_filter_snr
from gravwave.quality import glitch_flags
from gravwave.synthetic import SyntheticParams, generate, strain_psd
from gravwave.training import CascadeParams, fit_cascade
from gravwave.transients import add_sine_gaussian, band_energy, glitch_tile
from twins.atomic import write_json_atomic
from twins.errors import ConfigError, DataError

__all__ = ["ENERGY_BAR", "SNR_BAR", "TransientCheck", "check_transients", "curve_psd"]

log = logging.getLogger(__name__)

ENERGY_BAR = 0.01
"""Largest relative change of the glitch's band energy against the oracle's (issue 12)."""

SNR_BAR = 0.01
"""Largest loss of the BNS's SNR against the raw strain's (issue 12)."""


class TransientCheck(BaseModel):
    """One segment's transients through a cleaner.

    Attributes:
        glitch_gps: GPS time of the glitch's peak [s].
        glitch_energy: Excess band energy in the glitch's tile over the glitch's own energy,
            for ``oracle``, ``raw`` and ``cleaned``.
        rho: Residual (cleaned - oracle) power over the oracle's in the tile's band.
        energy_spread: Standard deviation of the energy ratio cleaned / oracle that the
            residual explains, ``2 sqrt(rho) / SNR``.
        flag_offset: Flagged peak minus the glitch's GPS time [s] (``None``: not flagged).
        bns_gps: Merger GPS time of the BNS [s].
        bns_snr: Its matched-filter SNR (PSD from each series) for ``oracle``, ``raw`` and
            ``cleaned``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    glitch_gps: float
    glitch_energy: dict[str, float]
    rho: float
    energy_spread: float
    flag_offset: float | None
    bns_gps: float
    bns_snr: dict[str, float]

    @property
    def energy_change(self) -> float:
        """Band energy cleaned / oracle - 1."""
        return self.glitch_energy["cleaned"] / self.glitch_energy["oracle"] - 1.0

    def bars(self) -> dict[str, bool]:
        """Issue 12's bars: band energy within 1 %, flagged, BNS SNR not 1 % below raw."""
        return {
            "glitch_energy": abs(self.energy_change) < ENERGY_BAR,
            "glitch_flagged": self.flag_offset is not None,
            "bns_snr": self.bns_snr["cleaned"] >= (1 - SNR_BAR) * self.bns_snr["raw"],
        }


def curve_psd(params: SyntheticParams) -> FrequencySeries:
    """The generator's noise curve as a one-sided PSD on ``0 .. Nyquist`` [strain^2/Hz]."""
    df = 1.0 / params.duration
    return FrequencySeries(strain_psd(params, df), f0=0.0, df=df)


def check_transients(
    cleaner: Cleaner,
    params: SyntheticParams,
    segment: int,
    *,
    f0: float = 152.0,
    q: float = 20.0,
    glitch_snr: float = 200.0,
) -> TransientCheck:
    """Add a glitch to a generated segment (with its BNS), clean it, measure both transients.

    The glitch peaks 0.3 of the way into the segment, or 0.6 if the BNS merges within 2 s
    of that; its SNR is against the generator's curve.

    Args:
        cleaner: A fitted cleaner of the generator's channels.
        params: Generator settings with exactly one injection.
        segment: Segment index (one the cleaner was not fitted on).
        f0: Glitch frequency [Hz] (default: inside the default Wiener band 125-180 Hz).
        q: Glitch quality factor.
        glitch_snr: Glitch optimal SNR.

    Raises:
        DataError: ``params`` without exactly one injection.
    """
    if params.injections != 1:
        raise DataError(f"check_transients needs injections=1, got {params.injections}")
    seg = generate(params, segment)
    inj = seg.injections[0]
    frac = 0.3 if abs(inj["gps"] - seg.t0 - 0.3 * params.duration) > 2 else 0.6
    gps = seg.t0 + round(frac * params.duration) + 0.3
    psd = curve_psd(params)
    raw, _ = add_sine_gaussian(seg.strain, gps, f0, q, glitch_snr, psd)
    oracle, glitch = add_sine_gaussian(seg.oracle, gps, f0, q, glitch_snr, psd)
    cleaned = cleaner.clean(raw, seg.witnesses)
    fs = float(raw.sample_rate.value)

    tile = glitch_tile(gps, f0, q)
    own = float(np.sum(glitch.value**2) / fs)
    series = {"oracle": oracle, "raw": raw, "cleaned": cleaned}
    energy = {k: band_energy(x, tile) / own for k, x in series.items()}
    resid = TimeSeries(cleaned.value - oracle.value, t0=raw.t0, sample_rate=raw.sample_rate)
    a_orc, a_res = asd(oracle), asd(resid)
    f = a_orc.frequencies.value
    band = (f >= tile.f_low) & (f <= tile.f_high)
    rho = float(np.mean((a_res.value[band] / a_orc.value[band]) ** 2))

    tau = q / (math.sqrt(2.0) * math.pi * f0)
    flags = glitch_flags(cleaned.value, fs, float(cleaned.t0.value))
    hits = [fl for fl in flags if fl.gps_start - tau <= gps <= fl.gps_end + tau]
    check = TransientCheck(
        glitch_gps=gps,
        glitch_energy=energy,
        rho=rho,
        energy_spread=2.0 * math.sqrt(rho) / glitch_snr,
        flag_offset=hits[0].gps_peak - gps if hits else None,
        bns_gps=float(inj["gps"]),
        bns_snr={k: matched_filter_snr(x, inj, inj["gps"]) for k, x in series.items()},
    )
    log.info(
        "segment %d: glitch energy cleaned/oracle %+.3f %% (sd %.3f %%), flagged %s; BNS SNR "
        "%.2f oracle, %.2f raw, %.2f cleaned",
        segment,
        100 * check.energy_change,
        100 * check.energy_spread,
        check.flag_offset is not None,
        check.bns_snr["oracle"],
        check.bns_snr["raw"],
        check.bns_snr["cleaned"],
    )
    return check


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Fit a cascade on the design curve; check transients on several segments.

    Returns:
        The report written to ``<workdir>/transients.json`` (the cascade to
        ``<workdir>/cascade.pt``).
    """
    ap = argparse.ArgumentParser(description="Unwitnessed transients through a fitted cascade")
    ap.add_argument("--workdir", default="runs/transients")
    ap.add_argument("--train-s", type=float, default=1024.0)
    ap.add_argument("--test-s", type=float, default=64.0)
    ap.add_argument("--seed", type=int, default=200)
    ap.add_argument("--segments", type=int, nargs="+", default=[20, 21, 22, 23, 24])
    ap.add_argument("--bns-snr", type=float, default=40.0)
    ap.add_argument("--glitch-snr", type=float, default=200.0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    early = [k for k in args.segments if k * args.test_s < args.train_s]
    if early:
        raise ConfigError(
            f"test segments {early} of {args.test_s:g} s start inside the {args.train_s:g}-s "
            "training span",
            hint=f"use segments >= {math.ceil(args.train_s / args.test_s)}",
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    base = SyntheticParams(asd="design", seed=args.seed, duration=args.train_s)
    train = generate(base, 0)
    tic = time.perf_counter()
    cascade = fit_cascade(
        train.strain,
        train.witnesses,
        CascadeParams(
            linear_bands=[(125.0, 180.0)],
            network_band=train.bands["bilinear"],
            epochs=args.epochs,
            max_steps_per_epoch=args.steps,
            batch_size=args.batch,
            seed=args.seed,
        ),
        workdir,
    )
    del train
    cascade.save(workdir / "cascade.pt")
    report: dict[str, Any] = {"fit_wall_s": time.perf_counter() - tic, "args": vars(args)}
    test = SyntheticParams(
        asd="design",
        seed=args.seed,
        duration=args.test_s,
        injections=1,
        injection_snr=(args.bns_snr, args.bns_snr),
    )
    for k in args.segments:
        check = check_transients(cascade, test, k, glitch_snr=args.glitch_snr)
        report[f"segment {k}"] = {
            **check.model_dump(mode="json"),
            "energy_change": check.energy_change,
            "bars": check.bars(),
        }
    write_json_atomic(workdir / "transients.json", report)
    log.info("report in %s: %s", workdir / "transients.json", json.dumps(report, default=str))
    return report


if __name__ == "__main__":
    main()
