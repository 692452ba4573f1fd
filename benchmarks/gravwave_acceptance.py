"""Acceptance figures of the Wiener + DeepClean cascade on synthetic O3-like data.

Trains on 1024 s (segment 0, 21 witnesses: 3 coupled + 18 distractors, linear and
bilinear couplings, 4096 Hz) and tests on a separate 256-s span with 6 BNS injections.
Reports, for the Wiener stage alone, the network alone and the cascade: the share of
the oracle BNS range gain, the in-band ASD ratio per band, the out-of-band ratio and
the matched-filter SNR ratio after/before of every injection. A script, not a test::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/gravwave_acceptance.py --workdir runs/accept

The Wiener stage works in 125-180 Hz by default: the linear coupling (a 6-pole
band-pass at 142-162 Hz) has skirts outside its nominal band that carry about a third of
the oracle gain, and a linear filter removes them safely (``--linear-band 142 162``
gives the nominal band; the network's band is always the bilinear 49-51 Hz).

Options: ``--epochs``/``--steps`` bound the CPU training budget (default 10 x 16 steps of
batch 32, about 5-10 min on 2 cores); ``--cleaner FILE`` re-evaluates a saved cascade.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from gravwave.cleaners import CascadeCleaner, Cleaner, load_cleaner
from gravwave.metrics import asd_ratio, inspiral_range, matched_filter_snr, out_of_band_ratio
from gravwave.preprocess import bandpass
from gravwave.synthetic import SyntheticParams, generate
from gravwave.training import CascadeParams, fit_cascade

log = logging.getLogger("gravwave.acceptance")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="runs/accept")
    ap.add_argument("--train-s", type=float, default=1024.0)
    ap.add_argument("--test-s", type=float, default=256.0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--linear-band",
        type=float,
        nargs=2,
        default=(125.0, 180.0),
        help="Wiener band in Hz (default: the coupling's 142-162 Hz plus its skirts)",
    )
    ap.add_argument("--cleaner", default=None, help="evaluate this saved cascade instead")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    base = {"n_distractors": 18, "seed": args.seed}
    test = generate(
        SyntheticParams(duration=args.test_s, injections=6, injection_snr=(15.0, 18.0), **base),
        segment=10,  # starts after the training span; its own random streams
    )
    bands = test.bands
    if args.cleaner:
        loaded = load_cleaner(args.cleaner)
        if not isinstance(loaded, CascadeCleaner):
            ap.error(f"--cleaner {args.cleaner}: a {type(loaded).__name__}, not a cascade")
        cascade = loaded
        fit_s = float("nan")
    else:
        train = generate(SyntheticParams(duration=args.train_s, **base), segment=0)
        tic = time.perf_counter()
        cascade = fit_cascade(
            train.strain,
            train.witnesses,
            CascadeParams(
                linear_bands=[tuple(args.linear_band)],
                network_band=bands["bilinear"],
                epochs=args.epochs,
                max_steps_per_epoch=args.steps,
                batch_size=args.batch,
                seed=args.seed,
            ),
            workdir,
        )
        fit_s = time.perf_counter() - tic
        del train
        cascade.save(workdir / "cascade.pt")

    raw, oracle = test.strain, test.oracle
    r_raw, r_orc = inspiral_range(raw), inspiral_range(oracle)
    snr_before = [matched_filter_snr(raw, inj, inj["gps"]) for inj in test.injections]
    band_oracle = raw.copy()
    band_oracle -= bandpass(test.noise.value, list(bands.values()), raw.sample_rate.value)
    r_band = inspiral_range(band_oracle)
    report: dict[str, object] = {
        "range_band_oracle_mpc": r_band,
        "band_oracle_share": (r_band - r_raw) / (r_orc - r_raw),
        "fit_wall_s": fit_s,
        "range_raw_mpc": r_raw,
        "range_oracle_mpc": r_orc,
        "oracle_asdr": {k: asd_ratio(oracle, raw, [b]) for k, b in bands.items()},
        "snr_before": snr_before,
    }
    cleaners: dict[str, Cleaner] = {**cascade.stages(), "cascade": cascade}
    for name, cl in cleaners.items():
        tic = time.perf_counter()
        cleaned = cl.clean(raw, test.witnesses)
        wall = time.perf_counter() - tic
        r = inspiral_range(cleaned)
        snr = [matched_filter_snr(cleaned, inj, inj["gps"]) for inj in test.injections]
        ratios = [a / b for a, b in zip(snr, snr_before, strict=True)]
        report[name] = {
            "range_mpc": r,
            "share": (r - r_raw) / (r_orc - r_raw),
            "asdr": {k: asd_ratio(cleaned, raw, [b]) for k, b in bands.items()},
            "out_of_band": out_of_band_ratio(cleaned, raw, list(bands.values())),
            "snr_ratio": ratios,
            "snr_ratio_mean": float(np.mean(ratios)),
            "snr_ratio_min": float(np.min(ratios)),
            "clean_wall_s": wall,
        }
        log.info("%s: %s", name, json.dumps(report[name], default=float))
    (workdir / "acceptance.json").write_text(json.dumps(report, indent=2, default=float))
    log.info("report in %s", workdir / "acceptance.json")


if __name__ == "__main__":
    main()
