"""Cleaning speed: offline throughput beside the raw network forward pass and the Wiener
stage alone, what each speed change bought, and online per-frame latency.

21 witnesses (3 coupled + 18 distractors) at 4096 Hz. The cleaner is a cascade (Wiener
stage + DeepClean with the default layout); by default its network is untrained (the
speed does not depend on the weights) and its Wiener stage fitted on 64 s, or pass a
saved cascade with ``--cleaner``. Every offline variant runs on the same data, interleaved
round by round (``--repeats``), so that a load that comes and goes hits them alike; the
load average is logged before and after (absolute speeds on a shared machine are noise,
ratios within one run are not):

* ``cascade``: offline cleaning as shipped (windows overlapping by the reach and stitched
  exactly, the network's fast inference copy);
* ``cascade_previous``: the path it replaced (Hann overlap-add at 50 %, the trained
  module's own forward pass); ``cascade_hann_fast`` and ``cascade_stitch_module`` change
  one of the two, so each change's gain is measured alone;
* ``network_forward`` / ``module_forward``: the fast copy / the module alone over the same
  stitched windows of pre-standardised float32 witnesses (no Wiener stage, no filters);
* ``wiener``: the Wiener stage alone (its FIR and finishing filter); ``wiener_blockfir``:
  the same with its FIR by cache-sized FFT blocks (:class:`gravwave.cleaners.fir.BlockFIR`,
  equal up to float64 rounding; not yet what ``WienerCleaner.raw`` calls);
* ``cascade_decimated``: the cascade with its network at the reduced rate that
  :func:`gravwave.models.deepclean.decimation_for` derives from its band (``decimation_q``;
  untrained like the others: training does not use it yet), ``network_forward_decimated``
  its fast forward pass alone, and ``cascade_projected`` with both the decimated network and
  the block FIR: what offline cleaning would run at once training and the Wiener stage use
  them.

Online: the cascade per 1-s frame beside the module's forward pass over the same blocks.
A script, not a timed test::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_cleaning.py [--span 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
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
from gravwave.cleaners.fir import BlockFIR
from gravwave.cleaners.network import network_fit_bands
from gravwave.cleaners.stitch import stitch_windows
from gravwave.metrics import latency_summary, realtime_factor
from gravwave.models import DeepClean
from gravwave.models.deepclean import decimation_for
from gravwave.models.deepclean_fast import FastDeepClean
from gravwave.preprocess import Standardizer
from gravwave.synthetic import SyntheticParams, generate

log = logging.getLogger("gravwave.bench")


class ModuleNetworkCleaner(NetworkCleaner):
    """The network stage as it ran before its fast inference copy: the module's forward."""

    def raw(self, witnesses: np.ndarray) -> np.ndarray:
        """Network output ``(batch, 1, time)`` through the trained module itself."""
        x = ((np.asarray(witnesses) - self._mean) * self._inv_std).astype(np.float32)
        with torch.inference_mode():
            y = self.model(torch.from_numpy(x))
        return y.numpy().astype(np.float64)[:, None]


class BlockWienerCleaner(WienerCleaner):
    """The Wiener stage with its FIR by FFT blocks (:class:`BlockFIR`)."""

    _block: BlockFIR | None = None

    def raw(self, witnesses: np.ndarray) -> np.ndarray:
        """FIR output ``(batch, 1, time)``, equal to the parent's up to float64 rounding."""
        if self._block is None:
            f = self.filter
            assert f.taps is not None and f.witness_mean is not None
            self._block = BlockFIR(f.taps, f.witness_mean, f.lag0)
        return self._block(witnesses)


def decimated(cascade: CascadeCleaner, wiener: WienerCleaner) -> tuple[CascadeCleaner, int]:
    """``cascade`` with an untrained network at the reduced rate derived from its band,
    behind ``wiener``; and that decimation."""
    net = cascade.network
    top = max(hi for _, hi in network_fit_bands(net.bands, net.sample_rate))
    q = decimation_for(top, net.sample_rate)
    model = DeepClean(len(net.witness_channels), decimation=q)
    return CascadeCleaner(wiener, NetworkCleaner(model, net.standardizer, net.config)), q


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


def interleaved(
    variants: dict[str, Callable[[], object]], repeats: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall time and median process CPU time [s] of each variant over ``repeats``
    rounds, one call of each per round in turn (after one warm-up round). On a shared
    machine the CPU time (all threads of this process) is the steadier measure of work."""
    for fn in variants.values():
        fn()
    wall: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            tic, cpu_tic = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - tic)
            cpu[name].append(time.process_time() - cpu_tic)
    med = {k: float(np.median(v)) for k, v in wall.items()}
    return med, {k: float(np.median(v)) for k, v in cpu.items()}


def offline(cascade: CascadeCleaner, span: float, batch: int, repeats: int) -> dict:
    """Offline x real time of every variant (module doc) on ``span`` s of new data."""
    fs = cascade.sample_rate
    seg = generate(SyntheticParams(duration=span, sample_rate=fs, n_distractors=18, seed=2), 0)
    net = cascade.network
    previous = CascadeCleaner(
        cascade.wiener, ModuleNetworkCleaner(net.model, net.standardizer, net.config)
    )
    blockfir = BlockWienerCleaner.from_state(cascade.wiener.state())
    dec, q = decimated(cascade, cascade.wiener)
    projected, _ = decimated(cascade, blockfir)
    w = cascade.witness_array(seg.witnesses)
    xs = net.standardizer.transform(w).astype(np.float32)  # the network's input
    n = round(cascade.window * fs)

    def forward(cleaner: NetworkCleaner, fast: bool) -> Callable[[], object]:
        model = FastDeepClean(cleaner.model) if fast else cleaner.model

        def predict(block: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(block)).numpy()[:, None]

        reach, multiple = cleaner.reach, cleaner.multiple
        return lambda: stitch_windows(predict, xs, n, reach, multiple=multiple, batch=batch)

    s, wit = seg.strain, seg.witnesses
    variants: dict[str, Callable[[], object]] = {
        "cascade": lambda: cascade.clean(s, wit, batch=batch),
        "cascade_previous": lambda: previous.clean(s, wit, overlap=0.5, batch=batch),
        "cascade_hann_fast": lambda: cascade.clean(s, wit, overlap=0.5, batch=batch),
        "cascade_stitch_module": lambda: previous.clean(s, wit, batch=batch),
        "network_forward": forward(net, True),
        "module_forward": forward(net, False),
        "wiener": lambda: cascade.wiener.clean(s, wit, batch=batch),
        "wiener_blockfir": lambda: blockfir.clean(s, wit, batch=batch),
        "cascade_decimated": lambda: dec.clean(s, wit, batch=batch),
        "network_forward_decimated": forward(dec.network, True),
        "cascade_projected": lambda: projected.clean(s, wit, batch=batch),
    }
    load_before = os.getloadavg()
    walls, cpus = interleaved(variants, repeats)
    xrt = {k: realtime_factor(span, t) for k, t in walls.items()}
    cpu_xrt = {k: realtime_factor(span, t) for k, t in cpus.items()}
    gain = {
        "stitching": walls["cascade_hann_fast"] / walls["cascade"],
        "fast_network_copy": walls["cascade_stitch_module"] / walls["cascade"],
        "both": walls["cascade_previous"] / walls["cascade"],
        "fast_copy_forward_only": walls["module_forward"] / walls["network_forward"],
        "block_fir_wiener_alone": walls["wiener"] / walls["wiener_blockfir"],
        "decimated_network": walls["cascade"] / walls["cascade_decimated"],
        "projected_over_shipped": walls["cascade"] / walls["cascade_projected"],
        "projected_over_previous": walls["cascade_previous"] / walls["cascade_projected"],
    }
    # what the shipped cascade spends outside the network's forward pass
    return {
        "span_s": span,
        "channels": len(cascade.witness_channels),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "decimation_q": q,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "x_realtime": xrt,
        "cpu_x_realtime": cpu_xrt,
        "wall_s": walls,
        "speedup": gain,
        "network_forward_share_of_cascade": walls["network_forward"] / walls["cascade"],
        "wiener_share_of_cascade": walls["wiener"] / walls["cascade"],
    }


def online(cascade: CascadeCleaner, frames: int, lookahead: float) -> dict:
    """Per-frame latency of the cascade beside the module's forward pass on each block."""
    fs = cascade.sample_rate
    span = frames + 2
    seg = generate(SyntheticParams(duration=span, sample_rate=fs, n_distractors=18, seed=3), 0)
    w = cascade.witness_array(seg.witnesses)
    net = cascade.network
    xs = net.standardizer.transform(w).astype(np.float32)
    cleaner = OnlineCleaner(cascade, frame=1.0, lookahead=lookahead)
    block_n = cleaner.memory_n + cleaner.frame_n + cleaner.lookahead_n
    base_lat = []
    f = cleaner.frame_n
    for i in range(frames):
        sl = slice(i * f, (i + 1) * f)
        cleaner.push(seg.strain.value[sl], w[:, sl])
        start = max(0, (i + 1) * f - block_n)
        block = xs[None, :, start : start + block_n]
        if block.shape[-1] == block_n:
            tic = time.perf_counter()
            with torch.inference_mode():
                net.model(torch.from_numpy(block))
            base_lat.append(time.perf_counter() - tic)
    lat = latency_summary(cleaner.latencies[1:])  # the first frame includes warm-up
    base = latency_summary(base_lat[1:])
    return {
        "frame_s": 1.0,
        "lookahead_s": lookahead,
        "memory_s": cleaner.memory_n / fs,
        "block_s": block_n / fs,
        "cascade_ms": {k: v * 1e3 for k, v in lat.items() if k != "count"},
        "module_forward_ms": {k: v * 1e3 for k, v in base.items() if k != "count"},
        "end_to_end_p99_s": 1.0 + lookahead + lat["p99"],
        "frames": lat["count"],
    }


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
    cascade = load_cleaner(args.cleaner) if args.cleaner else build_cascade(4096)
    if not isinstance(cascade, CascadeCleaner):
        ap.error(f"--cleaner {args.cleaner}: a {type(cascade).__name__}, not a cascade")
    off = offline(cascade, args.span, args.batch, args.repeats)
    log.info("offline: %s", json.dumps(off))
    on = online(cascade, args.frames, args.lookahead) if args.frames > 0 else None
    log.info("online: %s", json.dumps(on))
    print(json.dumps({"offline": off, "online": on}, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
