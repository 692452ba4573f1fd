"""One segment through the noise twin, inside its update transaction: clean, measure, judge
against the reference, keep the buffer, refit when degraded, write the products.

:func:`consume` is the work of :meth:`gravwave.twin.NoiseTwin.update` between validation and
commit; it reads the twin's state from the transaction and hands the new one back to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
from gwpy.timeseries import TimeSeries, TimeSeriesDict

from gravwave.cleaners import Cleaner, load_cleaner
from gravwave.io import read_multichannel_hdf5, write_multichannel_hdf5
from gravwave.policy import TwinPolicy
from gravwave.quality import Quality, glitch_flags, quality_of
from gravwave.twin_state import (
    BufferEntry,
    Event,
    LastQuality,
    NoiseTwinState,
    Probation,
    RefitOutcome,
    SegmentRecord,
)
from twins.track import ModelVersion, TrackingError, register_file, resolve_tracking_uri
from twins.twin import Transaction

__all__ = [
    "CLEANER_FILE",
    "INPUT_FILE",
    "QUALITY_FILE",
    "Candidate",
    "clean_segment",
    "consume",
    "measure",
    "register_cleaner_version",
]

log = logging.getLogger(__name__)

CLEANER_FILE = "cleaner.pt"
QUALITY_FILE = "quality.json"
INPUT_FILE = "input.h5"
CLEANED_SUFFIX = "_CLEANED"

#: ``candidate(current, strain, witnesses) -> new cleaner`` (``current`` unchanged).
Candidate = Callable[[Cleaner, TimeSeries, TimeSeriesDict], Cleaner]


def clean_segment(cleaner: Cleaner, data: Mapping[str, TimeSeries]) -> TimeSeries:
    """The cleaned strain of a validated segment, channel ``<strain>_CLEANED`` [strain]."""
    strain = data[cleaner.strain_channel]
    return cleaner.clean(strain, data, name=f"{cleaner.strain_channel}{CLEANED_SUFFIX}")


def measure(cleaned: TimeSeries, raw: TimeSeries, state: NoiseTwinState) -> Quality:
    """The quality of a cleaning in the twin's bands, with the policy's FFT lengths."""
    p = state.policy
    return quality_of(cleaned, raw, state.bands, p.fftlength, p.range_fftlength)


def register_cleaner_version(
    policy: TwinPolicy, twin_dir: Path, cleaner_file: Path, tags: Mapping[str, object]
) -> tuple[ModelVersion | None, str | None]:
    """Register a cleaner file as a new model version, as the policy says; never raises.

    Args:
        policy: Gives the URI (default beside the twin directory), experiment and model name.
        twin_dir: The twin directory.
        cleaner_file: The cleaner file.
        tags: Tags of the run and the version (twin version, segment key, metrics).

    Returns:
        ``(version, None)``, ``(None, error)`` after a tracking outage (logged), or
        ``(None, None)`` when the policy does not register models.
    """
    if not policy.register_models:
        return None, None
    uri = resolve_tracking_uri(policy.tracking_uri, twin_dir.parent)
    try:
        mv = register_file(
            uri,
            policy.experiment,
            policy.model_name,
            cleaner_file,
            run_name=f"twin-{twin_dir.name}",
            tags=tags,
            artifact_path="cleaner",
        )
    except TrackingError as exc:
        log.warning("MLflow registration of %s failed (%s); the twin goes on", cleaner_file, exc)
        return None, str(exc)
    return mv, None


def _joined(pieces: list[TimeSeriesDict], state: NoiseTwinState) -> TimeSeriesDict:
    """Buffered segments end to end (one series per channel, from the first one's start)."""
    first = pieces[0][state.strain_channel]
    return TimeSeriesDict(
        (
            c,
            TimeSeries(
                np.concatenate([np.asarray(p[c].value) for p in pieces]),
                t0=first.t0,
                sample_rate=first.sample_rate,
                name=c,
                channel=c,
            ),
        )  # fmt: skip
        for c in state.channels
    )


class _Segment:
    """The state of one segment's update while it is worked out (see :func:`consume`)."""

    def __init__(self, txn: Transaction, twin_dir: Path, data: TimeSeriesDict) -> None:
        self.txn, self.twin_dir, self.data = txn, twin_dir, data
        self.state = NoiseTwinState.model_validate(txn.state.extra)
        self.policy = self.state.policy
        self.raw = data[self.state.strain_channel]
        fs = float(self.raw.sample_rate.value)
        self.fs, self.t0 = fs, float(self.raw.t0.value)
        self.t1 = self.t0 + len(self.raw) / fs
        self.products = txn.products_dir
        self.vprefix = f"versions/v{txn.version:06d}/products"
        self.events: list[Event] = []
        assert txn.state.model_ref is not None  # every noise twin has a cleaner
        self.model_ref = self.cleaned_with = txn.state.model_ref
        self.cleaner = load_cleaner(twin_dir / self.model_ref)
        self.cleaned = clean_segment(self.cleaner, data)
        self.quality = measure(self.cleaned, self.raw, self.state)
        self.rolled_back_from: str | None = None

    def update(self, **changes: object) -> None:
        self.state = self.state.model_copy(update=changes)

    def probation(self) -> None:
        """On probation: compare with the previous cleaner, roll back if it does better."""
        prob = self.state.probation
        if prob is None:
            return
        prev_cleaned = clean_segment(load_cleaner(self.twin_dir / prob.model_ref), self.data)
        pq = measure(prev_cleaned, self.raw, self.state)
        q = self.quality
        if pq.asd_ratio_mean < q.asd_ratio_mean * (1 - self.policy.improve_margin):
            log.warning(
                "twin %s: the refitted cleaner does worse than the previous one on GPS "
                "%.3f-%.3f (in-band ratio %.4f vs %.4f): rolled back",
                self.twin_dir,
                self.t0,
                self.t1,
                q.asd_ratio_mean,
                pq.asd_ratio_mean,
            )
            self.events.append("rolled_back")
            self.rolled_back_from = self.model_ref
            self.model_ref = self.cleaned_with = prob.model_ref
            self.cleaned, self.quality = prev_cleaned, pq
            self.update(reference=prob.reference, probation=None)
        else:
            left = prob.remaining - 1
            self.update(probation=prob.model_copy(update={"remaining": left}) if left else None)

    def judge(self) -> tuple[dict[str, float], float, bool]:
        """``(reference, degradation, degraded)`` against the current cleaner's reference."""
        if self.state.reference is None:
            self.update(reference=dict(self.quality.asd_ratio))
            self.events.append("reference_set")
        reference = self.state.reference
        assert reference is not None
        worst = self.quality.worst_rise(reference)
        degraded = worst > self.policy.degrade_threshold
        if degraded and self.state.degraded_since is None:
            self.update(degraded_since=self.t0)
            self.events.append("degraded")
        elif not degraded:
            self.update(degraded_since=None)
        return reference, worst, degraded

    def buffer(self) -> None:
        """This segment's input becomes a product; the buffer keeps ``buffer_seconds``."""
        write_multichannel_hdf5(self.products / INPUT_FILE, self.data)
        entry = BufferEntry(file=f"{self.vprefix}/{INPUT_FILE}", t0=self.t0, t1=self.t1)
        buffer = [*self.state.buffer, entry]
        while len(buffer) > 1 and sum(e.t1 - e.t0 for e in buffer) > self.policy.buffer_seconds:
            buffer.pop(0)
        self.update(buffer=tuple(buffer))

    def refit(self, candidate: Candidate) -> RefitOutcome:
        """Refit on the data recorded since the degradation began; keep it only if better."""
        since = self.state.degraded_since
        assert since is not None
        train = [e for e in self.state.buffer[:-1] if e.t0 >= since - 1e-6]
        have = float(sum(e.t1 - e.t0 for e in train))
        need = self.policy.min_refit_seconds
        if have < need:
            log.info(
                "twin %s: degraded since GPS %.3f; %.0f s of new data, %.0f s needed to refit",
                self.twin_dir,
                since,
                have,
                need,
            )
            return RefitOutcome(status="pending", have_s=have, need_s=need)
        chans = self.state.channels
        span = _joined(
            [read_multichannel_hdf5(self.twin_dir / e.file, chans) for e in train], self.state
        )
        tic = time.perf_counter()
        new = candidate(self.cleaner, span[self.state.strain_channel], span)
        fit_s = time.perf_counter() - tic
        q, cq = self.quality, measure(clean_segment(new, self.data), self.raw, self.state)
        better = cq.asd_ratio_mean < q.asd_ratio_mean * (1 - self.policy.improve_margin)
        oob_ok = abs(cq.out_of_band_ratio - 1) <= self.policy.oob_tolerance
        measured = {
            "train_gps": (train[0].t0, train[-1].t1),
            "train_seconds": have,
            "fit_seconds": fit_s,
            "current_ratio": q.asd_ratio,
            "candidate_ratio": cq.asd_ratio,
            "candidate_out_of_band_ratio": cq.out_of_band_ratio,
            "candidate_range_mpc": cq.range_cleaned_mpc,
        }
        if not (better and oob_ok):
            why = "no improvement" if not better else "out-of-band ratio off"
            log.warning(
                "twin %s: refit candidate rejected (%s: in-band %.4f vs current %.4f, "
                "out-of-band %.4f); the current cleaner stays",
                self.twin_dir,
                why,
                cq.asd_ratio_mean,
                q.asd_ratio_mean,
                cq.out_of_band_ratio,
            )
            return RefitOutcome(status="rejected", reason=why, **measured)  # type: ignore[arg-type]
        file = new.save(self.products / CLEANER_FILE)
        tags = {
            "twin_version": self.txn.version,
            "twin_dir": self.twin_dir,
            "segment_key": self.txn.key,
            "asd_ratio_mean": cq.asd_ratio_mean,
            "train_gps": f"{train[0].t0}-{train[-1].t1}",
        }
        mv, error = register_cleaner_version(self.policy, self.twin_dir, file, tags)
        log.info(
            "twin %s: refit accepted (in-band %.4f -> %.4f on the newest segment, %.1f s of "
            "data, fit %.1f s)",
            self.twin_dir,
            q.asd_ratio_mean,
            cq.asd_ratio_mean,
            have,
            fit_s,
        )
        return RefitOutcome(
            status="accepted",
            model_ref=f"{self.vprefix}/{CLEANER_FILE}",
            registered=mv,
            registration_error=error,
            **measured,  # type: ignore[arg-type]
        )


def consume(
    txn: Transaction, twin_dir: Path, data: TimeSeriesDict, candidate: Candidate
) -> SegmentRecord:
    """Clean, measure and judge one validated segment; refit when degraded; write products.

    Args:
        txn: The open update transaction (its state is the twin's before the segment).
        twin_dir: The twin directory.
        data: The validated segment (strain and witnesses at the cleaner's rate).
        candidate: How a refit builds a candidate cleaner.

    Returns:
        The segment's record (also written as ``quality.json``); the new state is set on
        ``txn`` with the cursor at the segment's end.
    """
    tic = time.perf_counter()
    seg = _Segment(txn, twin_dir, data)
    seg.probation()
    reference, worst, degraded = seg.judge()
    seg.buffer()
    refit: RefitOutcome | None = None
    if degraded and "rolled_back" not in seg.events:
        refit = seg.refit(candidate)
        seg.events.append(f"refit_{refit.status}")  # type: ignore[arg-type]
        if refit.status == "accepted":
            assert refit.model_ref is not None and refit.candidate_ratio is not None
            remaining = seg.policy.probation_segments
            prob = seg.state.reference
            assert prob is not None
            seg.update(
                probation=Probation(model_ref=seg.model_ref, reference=prob, remaining=remaining)
                if remaining
                else None,
                reference=refit.candidate_ratio,
                degraded_since=None,
            )
            seg.model_ref = refit.model_ref
    p = seg.policy
    glitches = glitch_flags(
        seg.cleaned.value, seg.fs, seg.t0, band=p.glitch_band, threshold=p.glitch_threshold
    )
    q = seg.quality
    record = SegmentRecord(
        **q.model_dump(),
        gps_start=seg.t0,
        gps_end=seg.t1,
        duration=seg.t1 - seg.t0,
        sample_rate=seg.fs,
        cleaned_with=seg.cleaned_with,
        model_ref=seg.model_ref,
        reference=reference,
        degradation=worst,
        degraded=degraded,
        glitches=tuple(glitches),
        events=tuple(seg.events),
        refit=refit,
        rolled_back_from=seg.rolled_back_from,
    )
    if p.output_format == "gwf":
        seg.cleaned.write(str(seg.products / "cleaned.gwf"), format="gwf")
    else:
        write_multichannel_hdf5(
            seg.products / "cleaned.h5", TimeSeriesDict({seg.cleaned.name: seg.cleaned})
        )
    (seg.products / QUALITY_FILE).write_text(record.model_dump_json(indent=1))
    seg.update(
        last_quality=LastQuality(
            gps_start=seg.t0,
            gps_end=seg.t1,
            asd_ratio=q.asd_ratio,
            range_gain_mpc=q.range_gain_mpc,
            events=record.events,
        )
    )
    txn.summary.update(
        {
            "gps_start": seg.t0,
            "gps_end": seg.t1,
            "asd_ratio": q.asd_ratio,
            "out_of_band_ratio": q.out_of_band_ratio,
            "events": list(record.events),
            "range_mpc": [q.range_raw_mpc, q.range_cleaned_mpc],
            "glitches": len(glitches),
        }
    )
    txn.update_state(
        cursor=f"{seg.t1:.6f}", model_ref=seg.model_ref, extra=seg.state.model_dump(mode="json")
    )
    log.info(
        "twin %s v%d: GPS %.3f-%.3f in-band %s, range %.2f -> %.2f Mpc, %d glitch flags%s "
        "(%.1f s)",
        twin_dir,
        txn.version,
        seg.t0,
        seg.t1,
        {k: round(v, 4) for k, v in q.asd_ratio.items()},
        q.range_raw_mpc,
        q.range_cleaned_mpc,
        len(glitches),
        f", {', '.join(seg.events)}" if seg.events else "",
        time.perf_counter() - tic,
    )
    return record
