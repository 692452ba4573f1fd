"""The gravitational-wave domain for the ``twins`` command line: demo and twin commands.

``twins twin update DIR --data FILE [--channels LIST] [--wait]`` consumes one segment file
(multi-channel HDF5 or GWF) with :meth:`gravwave.twin.NoiseTwin.process_file`.

``twins twin simulate DIR [--data FILE] [--cleaner FILE] [--gain-scale F]`` is the noise twin's
what-if: it cleans a segment (default: the newest buffered one) with the current cleaner and,
if given, a candidate cleaner, optionally with the witnessed coupling scaled by ``F`` ("what
if the coupling gain drifted by this factor"), and reports the quality (in-band ratios,
out-of-band ratio, ranges [Mpc], whether the twin would count as degraded). The twin is not
changed. Both print one JSON object.

This module imports no training code at import time (``twins.train`` is only reached through
:func:`gravwave.cascade.fit_cascade` inside the demo).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from twins.domains import Domain
from twins.errors import ConfigError

log = logging.getLogger(__name__)

KIND = "gravwave"

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


def _concat(segments: list[Any]) -> tuple[Any, Any]:
    """Strain TimeSeries and witness TimeSeriesDict of contiguous synthetic segments."""
    from gwpy.timeseries import TimeSeries, TimeSeriesDict

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


def _fit_cleaner(opts: dict[str, Any], strain: Any, wit: Any, params: Any, workdir: Path) -> Any:
    from gravwave.cleaner import WienerCleaner

    bands = [tuple(params.linear_band)]
    if opts["cleaner"] == "cascade":
        try:
            from gravwave.cascade import CascadeParams, fit_cascade
        except ImportError as exc:
            log.warning("gravwave.cascade unavailable (%s): using the Wiener cleaner", exc)
        else:
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
    chans = list(wit)
    w = np.stack([wit[c].value for c in chans])
    return WienerCleaner(
        strain.name, chans, float(strain.sample_rate.value), bands, n_taps=128
    ).fit(w, strain.value)


def demo(workdir: Path, overrides: list[str]) -> int:
    """Synthetic span -> cleaner -> offline and online cleaning -> noise twin with a drift.

    Prints the in-band ASD ratio per band, the out-of-band ratio, the BNS range raw /
    cleaned / oracle [Mpc] and the share of the oracle gain, the matched-filter SNR of the
    injections before and after, online agreement and latency, and the twin's drift episode.
    """
    from gravwave import metrics
    from gravwave import synthetic as syn
    from gravwave.clean import OnlineCleaner, clean_offline
    from gravwave.twin import NoiseTwin, TwinPolicy
    from twins.twin import format_status

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
    cleaned = clean_offline(cleaner, test.strain, test.witnesses)
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
    online = OnlineCleaner(cleaner, frame=1.0, lookahead=0.5)
    chans = list(cleaner.witness_channels)
    fs = int(p.sample_rate)
    w = np.stack([test.witnesses[c].value for c in chans])
    frames: list[np.ndarray] = []
    for i in range(0, len(test.strain), fs):
        frames += online.push(test.strain.value[i : i + fs], w[:, i : i + fs])
    frames += online.flush()
    stream = np.concatenate(frames)
    inner = slice(4 * fs, len(stream) - 4 * fs)
    diff = np.max(np.abs(stream[inner] - cleaned.value[inner])) / np.std(cleaned.value)
    lat = metrics.latency_summary(online.latencies)
    print(
        f"gravwave: online (1-s frames, 0.5-s look-ahead): max |online - offline| = "
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
        rec = twin.process(seg.strain, seg.witnesses)
        ratios = ", ".join(f"{b} Hz {v:.3f}" for b, v in rec["asd_ratio"].items())
        events = ", ".join(rec["events"]) or "-"
        print(
            f"gravwave: twin segment {k} (coupling x{seg.gains['linear'][0] / p.linear_gain:.2f}"
            f"): in-band {ratios}; range gain {rec['range_gain_mpc']:+.2f} Mpc; {events}"
        )
    what_if = twin.simulate(gain_scale=1.5)
    print(
        "gravwave: what-if coupling x1.5 on the newest segment: in-band "
        + json.dumps({k: round(v, 3) for k, v in what_if["current"]["asd_ratio"].items()})
        + f", degraded={what_if['degraded']}"
    )
    print(format_status(twin.store))
    print(f"gravwave: demo part took {time.perf_counter() - tic:.0f} s")
    return 0


def _channel_option(value: str | None) -> list[str] | None:
    """``--channels "A,B"`` -> ``["A", "B"]``; None when not given.

    Raises:
        ConfigError: An empty name (``"A,,B"``, a trailing comma) or a name given twice.
    """
    if value is None:
        return None
    names = [c.strip() for c in value.split(",")]
    if not all(names):
        raise ConfigError(
            f"--channels {value!r}: an empty channel name; expected comma-separated names, "
            "strain first"
        )
    twice = sorted({c for c in names if names.count(c) > 1})
    if twice:
        raise ConfigError(f"--channels {value!r}: {', '.join(twice)} given twice")
    return names


def twin_command(cmd: str, twin_dir: Path, args: list[str]) -> int:
    """``twins twin update|simulate|status DIR ...`` for a noise twin.

    ``update`` and ``simulate`` print one JSON object; ``status`` prints the twin's state and
    its last quality record. ``update`` returns :data:`twins.twin.EXIT_NOTHING_NEW` when the
    segment was already processed.
    """
    from gravwave.twin import NoiseTwin
    from twins.twin import EXIT_NOTHING_NEW, format_status

    if cmd == "status":
        twin = NoiseTwin.open(twin_dir)
        print(format_status(twin.store))
        last = twin.status().get("last_quality")
        if last:
            print(f"last quality {json.dumps(last, default=str)}")
        return 0

    ap = argparse.ArgumentParser(prog=f"twins twin {cmd} {twin_dir}")
    ap.add_argument("--data", help="segment file: multi-channel HDF5 (.h5) or GWF (.gwf)")
    ap.add_argument("--channels", help="comma-separated channels, strain first")
    ap.add_argument("--wait", action="store_true", help="wait for another writer")
    if cmd == "simulate":
        ap.add_argument("--cleaner", help="candidate cleaner file to compare")
        ap.add_argument("--gain-scale", type=float, default=1.0, help="coupling factor")
    ns = ap.parse_args(args)
    twin = NoiseTwin.open(twin_dir)
    if cmd == "update":
        if not ns.data:
            raise ConfigError("twins twin update needs --data FILE", "give a segment file")
        channels = _channel_option(ns.channels)
        result = twin.process_file(ns.data, channels, wait=ns.wait)
        print(json.dumps(result, default=str))
        return EXIT_NOTHING_NEW if result.get("noop") else 0
    result = twin.simulate(ns.data, ns.cleaner, ns.gain_scale)
    print(json.dumps(result, default=str))
    return 0


DOMAIN = Domain(
    name=KIND,
    description="Virgo noise twin: Wiener + DeepClean cleaning, quality watch, refit, rollback",
    demo=demo,
    twin_command=twin_command,
)
