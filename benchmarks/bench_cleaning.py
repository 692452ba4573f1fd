"""Cleaning speed: offline throughput beside the raw network forward pass and the Wiener
stage alone, what each speed change bought, and online per-frame latency.

21 witnesses (3 coupled + 18 distractors) at 4096 Hz. The cleaner is a cascade (Wiener
stage + DeepClean with the training's layout at the training's default rate, derived from its
band: a quarter of 4096 Hz, or ``--decimation``); by default its network is untrained
(the speed does not depend on the weights) and its Wiener stage fitted on 64 s (the
training's 384 taps, or ``--taps``) on every witness: the worst case, as if all 21 coupled
(the training keeps only the witnesses that lower a held-out residual, one of the 21 on the
acceptance recipe, and its Wiener stage then transforms that one alone); or pass a saved
cascade with ``--cleaner``. Every
offline variant runs on the same data, interleaved round by round (``--repeats``), so that a
load that comes and goes hits them alike; the load average is logged before and after
(absolute speeds on a shared machine are noise, ratios within one run are not):

* ``cascade``: offline cleaning as shipped (the Wiener FIR in one pass of cache-sized FFT
  blocks over the span, in a thread beside the network; the network through its fast
  inference copy, stitched from windows overlapping by its own reach, the span standardised
  once into the channel-minor layout the copy computes in);
* ``cascade_previous``: where it started (Hann overlap-add at 50 % of both stages' raw
  output, the module's own forward pass at the full rate, the FIR by one FFT per window);
* each change undone alone: ``cascade_hann`` (Hann overlap-add of the stages' joint raw
  output), ``cascade_module`` (the module's forward pass instead of the fast copy, the
  witnesses standardised per window), ``cascade_whole_fir`` (the FIR by one FFT per
  stitched window), ``cascade_q<q>`` (the same layout at the other rate: the derived one,
  ``--decimation 0``, for a full-rate cascade, else the full rate),
  ``cascade_joint`` (both stages on the same windows, the witnesses standardised per window:
  the cascade's raw output stitched), ``cascade_sequential`` (the stages one after the other
  instead of the Wiener stage in a thread beside the network);
* ``network_forward`` / ``network_forward_q<q>`` / ``module_forward``: the fast copy (at the
  cascade's / the other rate) and the full-rate module alone over the same stitched windows
  of pre-standardised float32 witnesses (no Wiener stage, no filters);
* ``wiener``: the Wiener stage alone (one block-FIR pass over the span and its finishing
  filter); ``wiener_windows``: the block FIR on stitched windows; ``wiener_whole_fir``: the
  FIR by one FFT per stitched window.

``--profile`` also logs where the shipped cascade's time goes (cProfile, top functions).

Measured (``--span 128 --repeats 5 --frames 0 --profile``, 2 threads, 384 taps, load average
about 1 beside it; 2026-12-06): the cascade as shipped (the network at a quarter of the rate
with the training's three-stage encoder there, the Wiener stage in a thread beside it) 581 x
real time (596 x in a run just before); at the full rate (``cascade_q1``, the four-stage
encoder) 480 x; the stages one after the other (``cascade_sequential``) 457 x; where it
started (``cascade_previous``) 96 x. The network's fast forward pass alone 1072 x (658 x at
the full rate), the module's own (full rate) 361 x, the Wiener stage alone 1304 x. The
network's forward pass is about half of the shipped cascade's wall time, the Wiener stage
(in its own thread) 45 %; in the main thread the rest is the span's standardisation (about a
sixth: a float64 to channel-minor float32 pass over the span) and window stacking. What each
change buys, undone alone (slowdown of the cascade): exact stitching instead of a 50 % Hann
overlap-add 2.29, the fast inference copy 1.67, the quarter rate 1.21, the Wiener stage
beside the network 1.27, the block FIR in one pass over the span instead of one FFT per
window 1.12, each stage on its own reach and the span standardised once 1.42; all of them
6.0. With the four-stage encoder at the quarter rate (its bottleneck at 64 Hz) the cascade
ran 657-723 x, 12 % faster than with three stages in one interleaved run, but left 5-10 %
more noise in the network's band (:mod:`gravwave.training`).
Online: the cascade per 1-s frame beside the module's forward pass over the same blocks.
A script, not a timed test::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_cleaning.py [--span 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import logging
import os
import pstats
import time
from collections.abc import Callable

import numpy as np
import torch

from gravwave.cleaners import (
    CascadeCleaner,
    Cleaner,
    NetworkCleaner,
    NetworkConfig,
    OnlineCleaner,
    WienerCleaner,
    load_cleaner,
)
from gravwave.cleaners.fir import fir_whole_window
from gravwave.cleaners.network import network_decimation, network_fit_bands
from gravwave.cleaners.stitch import stack_channel_minor, stitch_windows
from gravwave.metrics import latency_summary, realtime_factor
from gravwave.models import DeepClean
from gravwave.models.deepclean import encoder_widths_for
from gravwave.models.deepclean_fast import FastDeepClean
from gravwave.preprocess import Standardizer
from gravwave.synthetic import SyntheticParams, generate
from gravwave.task import NetworkSettings
from gravwave.training import CascadeParams

log = logging.getLogger("gravwave.bench")


class ModuleNetworkCleaner(NetworkCleaner):
    """The network stage as it ran before its fast inference copy: the module's forward on
    windows standardised one by one."""

    def raw(self, witnesses: np.ndarray) -> np.ndarray:
        """Network output ``(batch, 1, time)`` through the trained module itself."""
        x = ((np.asarray(witnesses) - self._mean) * self._inv_std).astype(np.float32)
        with torch.inference_mode():
            y = self.model(torch.from_numpy(x))
        return y.numpy().astype(np.float64)[:, None]

    def predict(
        self, witnesses: np.ndarray, window: int, overlap: float | None = None, batch: int = 4
    ) -> np.ndarray:
        """Stitched or overlap-added :meth:`raw` (no span-wide standardisation)."""
        return Cleaner.predict(self, witnesses, window, overlap, batch)


class WindowedWienerCleaner(WienerCleaner):
    """The Wiener stage stitched from windows (before its one block-FIR pass over the
    span)."""

    def predict(
        self, witnesses: np.ndarray, window: int, overlap: float | None = None, batch: int = 4
    ) -> np.ndarray:
        """:meth:`Cleaner.predict`: :meth:`raw` on stitched or overlap-added windows."""
        return Cleaner.predict(self, witnesses, window, overlap, batch)


class WholeFIRWienerCleaner(WindowedWienerCleaner):
    """The Wiener stage with its FIR by one FFT per stitched window (before the block FIR
    and its one pass over the span)."""

    def raw(self, witnesses: np.ndarray) -> np.ndarray:
        """FIR output ``(batch, 1, time)``, equal to the block FIR's up to float64 rounding."""
        f = self.filter
        assert f.taps is not None and f.witness_mean is not None
        return fir_whole_window(witnesses, f.taps, f.witness_mean, f.lag0)


class SequentialCascadeCleaner(CascadeCleaner):
    """The cascade with its stages one after the other in this thread (before the Wiener
    stage ran beside the network)."""

    def predict(
        self, witnesses: np.ndarray, window: int, overlap: float | None = None, batch: int = 4
    ) -> np.ndarray:
        """Each stage's stitched noise in turn (exact stitching), else as the cascade."""
        if overlap is not None:
            return super().predict(witnesses, window, overlap, batch)
        linear = self.wiener.predict(witnesses, window, None, batch)
        return linear + self.network.predict(witnesses, window, None, batch)


class JointCascadeCleaner(CascadeCleaner):
    """The cascade stitching both stages' joint raw output on the same windows (before each
    stage was stitched on its own)."""

    def predict(
        self, witnesses: np.ndarray, window: int, overlap: float | None = None, batch: int = 4
    ) -> np.ndarray:
        """:meth:`Cleaner.predict` of the joint :meth:`raw` output."""
        return Cleaner.predict(self, witnesses, window, overlap, batch)


def with_network(
    cascade: CascadeCleaner, wiener: WienerCleaner, decimation: int, module: bool = False
) -> CascadeCleaner:
    """``cascade``'s network layout and scaler at ``decimation`` (untrained: same cost)
    behind ``wiener``; through the module's own forward pass if ``module``. At another rate
    than the cascade's the encoder is the training's for that rate (the default widths,
    their first stages dropped where the bottleneck would alias the band:
    :func:`~gravwave.models.deepclean.encoder_widths_for`)."""
    net = cascade.network
    m = net.model
    widths = m.widths
    if decimation != m.decimation:
        top = max(hi for _, hi in network_fit_bands(net.bands, net.sample_rate))
        widths = encoder_widths_for(NetworkSettings().widths, net.sample_rate / decimation, top)
    model = DeepClean(
        m.in_channels, widths, m.kernel_size, m.dilations, m.res_kernel_size, decimation
    )
    config = net.config.model_copy(update={"decimation": decimation})
    cls = ModuleNetworkCleaner if module else NetworkCleaner
    return CascadeCleaner(wiener, cls(model, net.standardizer, config))


def build_cascade(fs: int, taps: int, decimation: int | None) -> CascadeCleaner:
    """A cascade with a Wiener stage fitted on 64 s and an untrained default network.

    Args:
        fs: Working rate [Hz].
        taps: Wiener FIR taps per witness.
        decimation: The network's; ``None``: derived from its band as the training would.
    """
    seg = generate(SyntheticParams(duration=64, sample_rate=fs, n_distractors=18, seed=1), 0)
    chans = list(seg.witnesses)
    bands = seg.bands
    wiener = WienerCleaner(seg.strain.name, chans, fs, [bands["linear"]], n_taps=taps)
    wiener.fit(seg.strain, seg.witnesses)
    q = decimation or network_decimation([bands["bilinear"]], fs, 8.0)
    config = NetworkConfig(
        strain_channel=seg.strain.name,
        witness_channels=tuple(chans),
        sample_rate=fs,
        bands=(bands["bilinear"],),
        target_scale=1e-22,
        decimation=q,
    )
    scaler = Standardizer().fit(wiener.witness_array(seg.witnesses))
    # the training's layout at that rate (gravwave.training.fit_cascade)
    top = max(hi for _, hi in network_fit_bands([bands["bilinear"]], fs))
    widths = encoder_widths_for(NetworkSettings().widths, fs / q, top)
    net = NetworkCleaner(DeepClean(len(chans), widths, decimation=q), scaler, config)
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
    wiener = cascade.wiener
    whole_fir = WholeFIRWienerCleaner.from_state(wiener.state())
    # the same layout at the other rate: the derived one if the cascade runs at the full rate
    q_other = network_decimation(net.bands, fs, cascade.window) if net.decimation == 1 else 1
    other = with_network(cascade, wiener, q_other)
    full_rate = other if q_other == 1 else with_network(cascade, wiener, 1)
    previous = with_network(cascade, whole_fir, 1, module=True)
    variants_of = {
        "cascade_previous": JointCascadeCleaner(previous.wiener, previous.network),
        "cascade_hann": cascade,  # with overlap=0.5 below
        "cascade_module": with_network(cascade, wiener, net.decimation, module=True),
        "cascade_whole_fir": CascadeCleaner(whole_fir, net),
        f"cascade_q{q_other}": other,
        "cascade_joint": JointCascadeCleaner(wiener, net),
        "cascade_sequential": SequentialCascadeCleaner(wiener, net),
    }
    w = cascade.witness_array(seg.witnesses)
    xs = net.standardise(w)  # the network's input (channel-minor)
    n = round(cascade.window * fs)

    def forward(cleaner: NetworkCleaner, fast: bool) -> Callable[[], object]:
        model = FastDeepClean(cleaner.model) if fast else cleaner.model

        def predict(block: np.ndarray) -> np.ndarray:  # (batch, time, channel)
            with torch.inference_mode():
                return model(torch.from_numpy(block).permute(0, 2, 1)).numpy()[:, None]

        reach, multiple = cleaner.reach, cleaner.multiple
        return lambda: stitch_windows(
            predict, xs, n, reach, multiple=multiple, batch=batch, stack=stack_channel_minor
        )

    s, wit = seg.strain, seg.witnesses

    def run(c: Cleaner, overlap: float | None = None) -> Callable[[], object]:
        return lambda: c.clean(s, wit, overlap=overlap, batch=batch)

    variants: dict[str, Callable[[], object]] = {
        "cascade": run(cascade),
        "cascade_previous": run(variants_of["cascade_previous"], 0.5),
        "cascade_hann": run(cascade, 0.5),
        **{
            k: run(c)
            for k, c in variants_of.items()
            if k not in ("cascade_previous", "cascade_hann")
        },
        "network_forward": forward(net, True),
        f"network_forward_q{q_other}": forward(other.network, True),
        "module_forward": forward(full_rate.network, False),
        "wiener": run(wiener),
        "wiener_windows": run(WindowedWienerCleaner.from_state(wiener.state())),
        "wiener_whole_fir": run(whole_fir),
    }
    load_before = os.getloadavg()
    walls, cpus = interleaved(variants, repeats)
    xrt = {k: realtime_factor(span, t) for k, t in walls.items()}
    cpu_xrt = {k: realtime_factor(span, t) for k, t in cpus.items()}
    undone = [k for k in variants if k.startswith("cascade_")]
    return {
        "span_s": span,
        "channels": len(cascade.witness_channels),
        "wiener_taps": wiener.filter.n_taps,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "decimation": net.decimation,
        "other_decimation": q_other,
        "reach": {"cascade": cascade.reach, "wiener": wiener.reach, "network": net.reach},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "x_realtime": xrt,
        "cpu_x_realtime": cpu_xrt,
        "wall_s": walls,
        # what undoing each change alone costs (> 1: the change bought that much)
        "slowdown_undone": {k: walls[k] / walls["cascade"] for k in undone},
        "speedup_forward_fast_copy": walls["module_forward"]
        / walls["network_forward" if net.decimation == 1 else "network_forward_q1"],
        "speedup_forward_decimation": (
            walls["network_forward"] / walls[f"network_forward_q{q_other}"]
            if net.decimation == 1
            else walls["network_forward_q1"] / walls["network_forward"]
        ),
        "speedup_wiener_block_fir": walls["wiener_whole_fir"] / walls["wiener_windows"],
        "speedup_wiener_one_pass": walls["wiener_windows"] / walls["wiener"],
        "network_forward_share_of_cascade": walls["network_forward"] / walls["cascade"],
        "wiener_share_of_cascade": walls["wiener"] / walls["cascade"],
    }


def profile(cascade: CascadeCleaner, span: float, batch: int, top: int = 20) -> str:
    """cProfile of the shipped cascade cleaning ``span`` s (after one warm-up): the top
    functions by own time."""
    fs = cascade.sample_rate
    seg = generate(SyntheticParams(duration=span, sample_rate=fs, n_distractors=18, seed=2), 0)
    cascade.clean(seg.strain, seg.witnesses, batch=batch)
    prof = cProfile.Profile()
    prof.enable()
    cascade.clean(seg.strain, seg.witnesses, batch=batch)
    prof.disable()
    out = io.StringIO()
    pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


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
    ap.add_argument(
        "--taps",
        type=int,
        default=CascadeParams.model_fields["n_taps"].default,
        help="Wiener taps of the built cascade (default: the training's)",
    )
    ap.add_argument(
        "--decimation",
        type=int,
        default=CascadeParams.model_fields["decimation"].default or 0,
        help="the built network's (0: derived from its band; default the training's)",
    )
    ap.add_argument("--profile", action="store_true", help="log cProfile of the cascade")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.cleaner:
        cascade = load_cleaner(args.cleaner)
    else:
        cascade = build_cascade(4096, args.taps, args.decimation or None)
    if not isinstance(cascade, CascadeCleaner):
        ap.error(f"--cleaner {args.cleaner}: a {type(cascade).__name__}, not a cascade")
    if args.profile:
        log.info("cascade profile:\n%s", profile(cascade, args.span, args.batch))
    off = offline(cascade, args.span, args.batch, args.repeats)
    log.info("offline: %s", json.dumps(off))
    on = online(cascade, args.frames, args.lookahead) if args.frames > 0 else None
    log.info("online: %s", json.dumps(on))
    print(json.dumps({"offline": off, "online": on}, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
