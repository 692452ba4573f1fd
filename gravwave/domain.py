"""The gravitational-wave domain for the ``twins`` command line: the demo and the noise twin.

The noise twin is :class:`gravwave.twin.NoiseTwin`; the core builds
``twins twin init|update|simulate|status|history|rollback`` from its models:

* ``twins twin init DIR --kind gravwave --cleaner FILE [--policy JSON]`` creates a twin around
  a saved cleaner;
* ``twins twin update DIR --data FILE [--channels A,B,...] [--wait]`` consumes one segment
  file (multi-channel HDF5 or GWF);
* ``twins twin simulate DIR [--data FILE] [--cleaner FILE] [--gain-scale F]`` is the what-if:
  it cleans a segment (default: the newest buffered one) with the current cleaner and, if
  given, a candidate cleaner, optionally with the witnessed coupling scaled by ``F``, and
  reports the quality and whether the twin would count as degraded. The twin is not changed.

Its own command, ``twins gravwave clean INPUT... --cleaner FILE --out DIR [--workers N]``,
cleans a stretch of segment files in a batch (:mod:`gravwave.batch_cli`).
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
from gwpy.timeseries import TimeSeries, TimeSeriesDict

from gravwave import batch_cli, metrics
from gravwave import synthetic as syn
from gravwave.cleaners import Cleaner, OnlineCleaner, WienerCleaner
from gravwave.policy import TwinPolicy
from gravwave.training import CascadeParams, fit_cascade
from gravwave.twin import KIND, NoiseTwin
from gravwave.twin_state import NoiseScenario
from twins.domains import Domain, DomainCommand
from twins.errors import ConfigError

__all__ = ["DEMO_DEFAULTS", "DOMAIN", "demo"]

log = logging.getLogger(__name__)

#: Demo settings, overridable as ``gravwave.<key>=<value>``.
DEMO_DEFAULTS: dict[str, Any] = {
    "cleaner": "cascade",  # "cascade" (Wiener + short network training) or "wiener"
    "segment": 32.0,  # s per segment
    "train_segments": 4,  # training span = train_segments x segment
    "steps": 12,  # network training steps (cascade)
    "twin_segments": 6,  # segments streamed through the twin
    "drift": 10.0,  # coupling-gain drift during the twin stream [1/h]
    "seed": 7,
}


def _options(overrides: list[str]) -> dict[str, Any]:
    opts = dict(DEMO_DEFAULTS)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not key.startswith("gravwave."):
            continue
        name = key.removeprefix("gravwave.")
        if not sep or name not in opts:
            raise ConfigError(
                f"unknown demo override {item!r}; known: "
                + ", ".join(f"gravwave.{k}" for k in DEMO_DEFAULTS)
            )
        opts[name] = type(DEMO_DEFAULTS[name])(value)
    return opts


def _concat(segments: list[syn.SyntheticSegment]) -> tuple[TimeSeries, TimeSeriesDict]:
    """Strain TimeSeries and witness TimeSeriesDict of contiguous synthetic segments."""
    first = segments[0]

    def join(values: list[np.ndarray], name: str) -> TimeSeries:
        return TimeSeries(
            np.concatenate(values), t0=first.strain.t0, sample_rate=first.strain.sample_rate,
            name=name, channel=name,
        )  # fmt: skip

    strain = join([s.strain.value for s in segments], first.strain.name)
    wit = TimeSeriesDict(
        (c, join([s.witnesses[c].value for s in segments], c)) for c in first.witnesses
    )
    return strain, wit


def _fit_cleaner(
    opts: dict[str, Any],
    strain: TimeSeries,
    wit: TimeSeriesDict,
    params: syn.SyntheticParams,
    workdir: Path,
) -> Cleaner:
    bands = [tuple(params.linear_band)]
    if opts["cleaner"] == "cascade":
        steps = int(opts["steps"])
        cp = CascadeParams(
            linear_bands=bands,
            network_band=tuple(params.bands["bilinear"]),
            n_taps=128,
            epochs=2,
            max_steps_per_epoch=max(1, steps // 2),
            name="demo-cascade",
        )
        log.info("fitting the Wiener + DeepClean cascade (%d network steps)", steps)
        return fit_cascade(strain, wit, cp, workdir=workdir / "cascade")
    log.info("fitting the Wiener cleaner (linear stage only)")
    rate = float(strain.sample_rate.value)
    return WienerCleaner(strain.name, list(wit), rate, bands, n_taps=128).fit(strain, wit)


def demo(workdir: Path, overrides: list[str]) -> int:
    """Synthetic span -> cleaner -> offline and online cleaning -> noise twin with a drift.

    Prints the in-band ASD ratio per band, the out-of-band ratio, the BNS range raw /
    cleaned / oracle [Mpc] and the share of the oracle gain, the matched-filter SNR of the
    injections before and after, online agreement and latency, and the twin's drift episode.
    """
    tic = time.perf_counter()
    opts = _options(overrides)
    workdir = Path(workdir) / "gravwave"
    workdir.mkdir(parents=True, exist_ok=True)
    dur = float(opts["segment"])
    n_train = int(opts["train_segments"])
    p = syn.SyntheticParams(duration=dur, seed=int(opts["seed"]))
    train = [syn.generate(p, k) for k in range(n_train)]
    strain, wit = _concat(train)
    cleaner = _fit_cleaner(opts, strain, wit, p, workdir)
    kind = type(cleaner).__name__
    print(f"gravwave: {kind} fitted on {n_train * dur:g} s ({time.perf_counter() - tic:.0f} s)")

    # Offline cleaning of an unseen segment with injections.
    pt = p.model_copy(update={"injections": 2, "injection_snr": (15.0, 18.0)})
    test = syn.generate(pt, n_train)
    cleaned = cleaner.clean(test.strain, test.witnesses)
    bands = dict(p.bands)
    for name, band in bands.items():
        r = metrics.asd_ratio(cleaned, test.strain, [band])
        o = metrics.asd_ratio(test.oracle, test.strain, [band])
        print(f"gravwave: ASD ratio {name} {band[0]:g}-{band[1]:g} Hz: {r:.3f} (oracle {o:.3f})")
    oob = metrics.out_of_band_ratio(cleaned, test.strain, list(bands.values()))
    print(f"gravwave: out-of-band ASD ratio {oob:.4f}")
    r_raw, r_cln, r_orc = (metrics.inspiral_range(x) for x in (test.strain, cleaned, test.oracle))
    share = (r_cln - r_raw) / (r_orc - r_raw)
    print(
        f"gravwave: BNS range raw {r_raw:.2f} -> cleaned {r_cln:.2f} Mpc (oracle {r_orc:.2f}): "
        f"{100 * share:.0f} % of the oracle gain"
    )
    for inj in test.injections:
        before = metrics.matched_filter_snr(test.strain, inj, inj["gps"])
        after = metrics.matched_filter_snr(cleaned, inj, inj["gps"])
        print(
            f"gravwave: injection at GPS {inj['gps']:.2f}: matched-filter SNR {before:.2f} -> "
            f"{after:.2f} (x{after / before:.3f})"
        )

    # The same segment as a stream of 1-s frames.
    online = OnlineCleaner(cleaner, frame=1.0)  # look-ahead: the cleaner's own reach
    fs = int(p.sample_rate)
    w = cleaner.witness_array(test.witnesses)
    frames: list[np.ndarray] = []
    for i in range(0, len(test.strain), fs):
        frames += online.push(test.strain.value[i : i + fs], w[:, i : i + fs])
    frames += online.flush()
    stream = np.concatenate(frames)
    inner = slice(4 * fs, len(stream) - 4 * fs)
    diff = np.max(np.abs(stream[inner] - cleaned.value[inner])) / np.std(cleaned.value)
    lat = metrics.latency_summary(online.latencies)
    print(
        f"gravwave: online (1-s frames, {online.delay:.3f}-s look-ahead): "
        f"max |online - offline| = "
        f"{diff:.1e} std in the interior; latency p99 {1e3 * lat['p99']:.1f} ms"
    )

    # The noise twin: a drifting coupling, degradation, refit.
    twin_dir = workdir / "twin"
    if twin_dir.exists():
        shutil.rmtree(twin_dir)
    policy = TwinPolicy(min_refit_seconds=dur, buffer_seconds=4 * dur)
    twin = NoiseTwin.init(twin_dir, cleaner, policy)
    pd = p.model_copy(update={"t0": p.t0 + (n_train + 1) * dur, "drift": float(opts["drift"])})
    for k, seg in enumerate(syn.stream(pd, 0, int(opts["twin_segments"]))):
        r = twin.update(seg.strain, witnesses=seg.witnesses)
        ratios = ", ".join(f"{b} Hz {v:.3f}" for b, v in r.asd_ratio.items())
        print(
            f"gravwave: twin segment {k} (coupling x{seg.gains['linear'][0] / p.linear_gain:.2f}"
            f"): in-band {ratios}; range gain {r.range_gain_mpc:+.2f} Mpc; "
            f"{', '.join(r.events) or '-'}"
        )
    what_if = twin.simulate(NoiseScenario(gain_scale=1.5))
    in_band = {k: round(v, 3) for k, v in what_if.current.asd_ratio.items()}
    print(
        f"gravwave: what-if coupling x1.5 on the newest segment: in-band {in_band}, "
        f"degraded={what_if.degraded}"
    )
    print(twin.status().text)
    print(f"gravwave: demo part took {time.perf_counter() - tic:.0f} s")
    return 0


DOMAIN = Domain(
    name=KIND,
    description="Virgo noise twin: Wiener + DeepClean cleaning, quality watch, refit, rollback",
    demo=demo,
    twin=NoiseTwin,
    commands={
        "clean": DomainCommand(
            help="clean a directory of GWF/HDF5 segments with a fitted cleaner (serial or Ray)",
            configure=batch_cli.configure,
            run=batch_cli.run,
        )
    },
)
