"""Cleaning speed: offline throughput and online per-frame latency, each beside a baseline.

21 witnesses (3 coupled + 18 distractors) at 4096 Hz. The cleaner is a cascade (Wiener
stage + DeepClean with the default layout); by default its network is untrained (the
speed does not depend on the weights) and its Wiener stage fitted on 64 s, or pass a
saved cascade with ``--cleaner``. Baselines are measured in the same run on the same
data: the raw model forward pass over the same 8-s windows (offline) and over the same
per-frame blocks (online). A script, not a timed test::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_cleaning.py [--span 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable

import numpy as np
import torch

from gravwave.cleaners import (
    CascadeCleaner,
    NetworkCleaner,
    NetworkConfig,
    OnlineCleaner,
    WienerCleaner,
    load_cleaner,
)
from gravwave.cleaners.windowed import overlap_add
from gravwave.metrics import latency_summary, realtime_factor
from gravwave.models import DeepClean
from gravwave.preprocess import Standardizer
from gravwave.synthetic import SyntheticParams, generate

log = logging.getLogger("gravwave.bench")


def build_cascade(fs: int) -> CascadeCleaner:
    """A cascade with a Wiener stage fitted on 64 s and an untrained default network.

    Args:
        fs: Working rate [Hz].
    """
    seg = generate(SyntheticParams(duration=64, sample_rate=fs, n_distractors=18, seed=1), 0)
    chans = list(seg.witnesses)
    bands = seg.bands
    wiener = WienerCleaner(seg.strain.name, chans, fs, [bands["linear"]], n_taps=192)
    wiener.fit(seg.strain, seg.witnesses)
    config = NetworkConfig(
        strain_channel=seg.strain.name,
        witness_channels=tuple(chans),
        sample_rate=fs,
        bands=(bands["bilinear"],),
        target_scale=1e-22,
    )
    scaler = Standardizer().fit(wiener.witness_array(seg.witnesses))
    net = NetworkCleaner(DeepClean(len(chans)), scaler, config)
    return CascadeCleaner(wiener, net)


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time in s of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--span", type=float, default=256.0, help="offline span in s")
    ap.add_argument("--frames", type=int, default=120, help="online frames")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4, help="offline windows per forward pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--lookahead", type=float, default=0.5)
    ap.add_argument("--cleaner", default=None, help="saved cascade (default: built here)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    fs = 4096
    cascade = load_cleaner(args.cleaner) if args.cleaner else build_cascade(fs)
    if not isinstance(cascade, CascadeCleaner):
        ap.error(f"--cleaner {args.cleaner}: a {type(cascade).__name__}, not a cascade")
    seg = generate(
        SyntheticParams(duration=args.span, sample_rate=fs, n_distractors=18, seed=2), 0
    )
    w = cascade.witness_array(seg.witnesses)  # (channel, time)
    net = cascade.network
    model = net.model
    n = round(cascade.window * fs)
    xs = net.standardizer.transform(w).astype(np.float32)  # the network's input

    def forward(block: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(block)).numpy()[:, None]

    def model_only() -> None:  # same windows, same batches, forward pass only
        overlap_add(forward, xs, n, cascade.overlap, multiple=cascade.multiple, batch=args.batch)

    def full() -> None:
        cascade.clean(seg.strain, seg.witnesses, batch=args.batch)

    full()  # warm-up
    t_full = best_of(full, args.repeats)
    t_model = best_of(model_only, args.repeats)
    offline = {
        "span_s": args.span,
        "channels": len(cascade.witness_channels),
        "threads": args.threads,
        "cascade_wall_s": t_full,
        "cascade_x_realtime": realtime_factor(args.span, t_full),
        "model_forward_wall_s": t_model,
        "model_forward_x_realtime": realtime_factor(args.span, t_model),
        "cascade_over_model_time": t_full / t_model,
    }
    log.info("offline: %s", json.dumps(offline))

    online = OnlineCleaner(cascade, frame=1.0, lookahead=args.lookahead)
    block_n = online.memory_n + online.frame_n + online.lookahead_n
    base_lat = []
    f = online.frame_n
    for i in range(min(args.frames, int(args.span) - 1)):
        sl = slice(i * f, (i + 1) * f)
        online.push(seg.strain.value[sl], w[:, sl])
        start = max(0, (i + 1) * f - block_n)
        block = xs[None, :, start : start + block_n]
        if block.shape[-1] == block_n:
            tic = time.perf_counter()
            forward(block)
            base_lat.append(time.perf_counter() - tic)
    lat = latency_summary(online.latencies[1:])  # the first frame includes warm-up
    base = latency_summary(base_lat[1:])
    result = {
        "frame_s": 1.0,
        "lookahead_s": args.lookahead,
        "memory_s": online.memory_n / fs,
        "block_s": block_n / fs,
        "cascade_ms": {k: v * 1e3 for k, v in lat.items() if k != "count"},
        "model_forward_ms": {k: v * 1e3 for k, v in base.items() if k != "count"},
        "end_to_end_p99_s": 1.0 + args.lookahead + lat["p99"],
        "frames": lat["count"],
    }
    log.info("online: %s", json.dumps(result))
    print(json.dumps({"offline": offline, "online": result}, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
