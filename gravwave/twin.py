"""The Virgo noise twin: stream segments through a cleaner, watch its quality, refit, revert.

A :class:`NoiseTwin` lives in a twin directory managed by :class:`twins.twin.TwinStore`
(``kind="gravwave"``) and implements the core twin contract (:class:`twins.twin.Twin`), so
``twins twin init|update|simulate|status|history|rollback`` drive it. Each
:meth:`NoiseTwin.update` consumes one segment that starts exactly at the cursor (the GPS end
[s] of the last consumed segment) and, as **one** transaction:

1. validates it (:func:`gravwave.io.prepare` without resampling: missing channel, NaN/inf,
   length or sample-rate mismatch, too short a span, a dead channel or a sample outside the
   policy's plausibility bounds ``ingest`` are :class:`~twins.errors.DataError`);
2. cleans it with the current cleaner (:meth:`gravwave.cleaners.Cleaner.clean`) and writes the
   cleaned strain (multi-channel HDF5 or GWF) as the product ``cleaned.h5`` / ``cleaned.gwf``;
3. writes its :class:`~gravwave.twin_state.SegmentRecord` as ``quality.json``: in-band ASD
   ratio per band, out-of-band ratio, BNS inspiral range [Mpc] raw and cleaned, glitch flags
   (:func:`gravwave.quality.glitch_flags`) and the GPS span;
4. keeps a rolling buffer: the validated input is stored as the product ``input.h5`` of the
   version, and the state lists the newest ones covering at most ``buffer_seconds``;
5. checks the quality against the model's reference (the in-band ratios measured when the
   model was accepted). When a band's ratio exceeds its reference by more than
   ``degrade_threshold`` (relative), the twin is *degraded*; once the buffer holds at least
   ``min_refit_seconds`` of data recorded since the degradation began (not counting the newest
   segment), it refits a candidate cleaner on that data (:meth:`Cleaner.refit
   <gravwave.cleaners.Cleaner.refit>`, or the whole cascade with ``refit="cascade"``) and
   evaluates it on the newest segment against the current model. The candidate is kept only if
   it lowers the mean in-band ratio (and leaves the out-of-band ratio within
   ``oob_tolerance``), else it is *rejected*. An accepted candidate is saved as the product
   ``cleaner.pt``, becomes ``model_ref`` and is registered in MLflow through
   :func:`twins.track.register_file` (an outage is logged, never fatal);
6. on probation (the ``probation_segments`` segments after an accepted refit) the previous
   cleaner is evaluated too; if it does better on new data, the twin *rolls back* to it
   automatically (the segment's cleaned output is then the previous cleaner's).

The idempotency key is a hash of the segment's content (channels, GPS start, rate, samples), so
consuming the same segment twice is a no-op that leaves the directory unchanged; a segment that
starts before the cursor is an overlap, one that starts after it a gap (both rejected). A SIGKILL
at any instant leaves the twin as before the segment or fully updated, and the retry gives the
same output (the computation is deterministic).

Model references are paths relative to the twin directory
(``versions/vNNNNNN/products/cleaner.pt``). :meth:`NoiseTwin.rollback` (the core's) restores
an earlier version whole (cursor, buffer, cleaner, products); :meth:`NoiseTwin.revert_cleaner`
only makes an earlier cleaner current again and keeps the data cursor.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gwpy.timeseries import TimeSeries, TimeSeriesDict
from pydantic import BaseModel

from gravwave.cleaners import Cleaner, load_cleaner
from gravwave.io import prepare, read_gwf, read_multichannel_hdf5
from gravwave.policy import TwinPolicy, load_policy, policy_hash
from gravwave.quality import segment_key
from gravwave.training import retrain_cascade
from gravwave.twin_segment import (
    CLEANER_FILE,
    QUALITY_FILE,
    Candidate,
    clean_segment,
    consume,
    measure,
    register_cleaner_version,
)
from gravwave.twin_state import (
    CleanerRevert,
    NoiseInit,
    NoiseScenario,
    NoiseSimulation,
    NoiseTwinState,
    NoiseTwinStatus,
    NoiseUpdateOptions,
    SegmentRecord,
    SegmentResult,
)
from twins.errors import ConfigError, DataError, TwinsError
from twins.twin import Twin, TwinStatus, TwinStore, UpdateResult, visible_products

__all__ = ["KIND", "NoiseTwin", "RefitFn"]

log = logging.getLogger(__name__)

KIND = "gravwave"

#: ``refit_fn(current, strain, witnesses) -> new cleaner``: overrides the policy's refit; must
#: not modify ``current``. The series are at the cleaner's rate.
RefitFn = Candidate


def _fmt_gps(t: float) -> str:
    return f"{float(t):.6f}"


class NoiseTwin(Twin):
    """A Virgo noise twin in a directory (see the module docstring).

    Args:
        store: The opened store (use :meth:`open`, :meth:`init` or :meth:`create`).
        refit_fn: Overrides the policy's refit (see :data:`RefitFn`).
    """

    kind = KIND
    InitOptions = NoiseInit
    UpdateOptions = NoiseUpdateOptions
    Scenario = NoiseScenario

    def __init__(self, store: TwinStore, refit_fn: RefitFn | None = None) -> None:
        super().__init__(store)
        self.refit_fn = refit_fn

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], refit_fn: RefitFn | None = None) -> NoiseTwin:
        """Open an existing noise twin (raises ``TwinNotFoundError``/``TwinKindError``)."""
        return cls(TwinStore.open(path, kind=KIND), refit_fn)

    @classmethod
    def create(cls, path: str | os.PathLike[str], options: BaseModel) -> NoiseTwin:
        """``twins twin init DIR --kind gravwave --cleaner FILE [--policy JSON]``.

        Raises:
            DataError: The cleaner file is missing or unreadable.
            TwinExistsError: ``path`` is not free.
        """
        opts = NoiseInit.model_validate(options.model_dump())
        return cls.init(path, load_cleaner(opts.cleaner), opts.policy, cursor=opts.cursor)

    @classmethod
    def init(
        cls,
        path: str | os.PathLike[str],
        cleaner: Cleaner,
        policy: TwinPolicy | Mapping[str, Any] | None = None,
        *,
        cursor: float | None = None,
        refit_fn: RefitFn | None = None,
    ) -> NoiseTwin:
        """Create a noise twin around a fitted cleaner.

        Args:
            path: New (or empty) directory.
            cleaner: The initial cleaner (any :class:`~gravwave.cleaners.Cleaner`).
            policy: The policy (a :class:`TwinPolicy` or its dict); default settings if None.
            cursor: GPS time [s] the first segment must start at; None accepts any start.
            refit_fn: See :class:`NoiseTwin`.

        Raises:
            ConfigError: Invalid policy, or not a cleaner.
            TwinExistsError: ``path`` is already a twin or not empty.
        """
        pol = load_policy(policy)
        if not isinstance(cleaner, Cleaner):
            raise ConfigError(f"{type(cleaner).__name__} is not a gravwave.cleaners.Cleaner")
        state = NoiseTwinState(
            policy=pol,
            strain_channel=cleaner.strain_channel,
            witness_channels=cleaner.witness_channels,
            sample_rate=cleaner.sample_rate,
            bands=cleaner.bands,
        )
        ref = f"versions/v000000/products/{CLEANER_FILE}"

        def products(d: Path) -> None:
            cleaner.save(d / CLEANER_FILE)

        store = TwinStore.init(
            path,
            KIND,
            model_ref=ref,
            cursor=None if cursor is None else _fmt_gps(cursor),
            config_hash=policy_hash(pol),
            extra=state.model_dump(mode="json"),
            products=products,
            summary={"cleaner": type(cleaner).__name__},
        )
        tags = {"twin_version": 0, "twin_dir": store.path}
        mv, _ = register_cleaner_version(pol, store.path, store.path / ref, tags)
        if mv is not None:
            log.info("initial cleaner registered as %s version %s", mv.name, mv.version)
        return cls(store, refit_fn)

    # -- reading --------------------------------------------------------------------------

    @property
    def state(self) -> NoiseTwinState:
        """The twin's committed state."""
        return NoiseTwinState.model_validate(self.store.state.extra)

    @property
    def policy(self) -> TwinPolicy:
        """The twin's policy."""
        return self.state.policy

    @property
    def cursor(self) -> float | None:
        """GPS end [s] of the last consumed segment (None before the first)."""
        c = self.store.state.cursor
        return None if c is None else float(c)

    def cleaner(self, model_ref: str | None = None) -> Cleaner:
        """Load the current cleaner (or the one at ``model_ref``)."""
        ref = model_ref or self.store.state.model_ref
        if ref is None:
            raise TwinsError(f"twin {self.path} has no cleaner")
        return load_cleaner(self.path / ref)

    def result(self, version: int | None = None) -> SegmentResult:
        """The newest segment's record as the twin held it at ``version`` (default: now).

        Raises:
            DataError: No segment consumed by then.
        """
        return self._result(self.store.state.version if version is None else version, False)

    def _result(self, version: int, noop: bool) -> SegmentResult:
        path = visible_products(self.store, version).get(QUALITY_FILE)
        if path is None:
            raise DataError(f"twin {self.path}: no segment consumed by version {version}")
        record = SegmentRecord.model_validate_json(path.read_text())
        core = UpdateResult.core_fields(self.store.record(version), noop)
        return SegmentResult.model_validate({**core, **record.model_dump()})

    def cleaned_path(self, version: int | None = None) -> Path:
        """Path of the cleaned strain written by ``version`` (default: the newest)."""
        name = "cleaned.gwf" if self.policy.output_format == "gwf" else "cleaned.h5"
        if version is None:
            return self.store.product_path(name)
        return self.store.version_dir(version) / "products" / name

    def status(self) -> NoiseTwinStatus:
        """The core status plus the buffer, reference, probation and last quality."""
        st = self.state
        last = [f"last quality {st.last_quality.model_dump_json()}"] if st.last_quality else []
        return NoiseTwinStatus(
            **TwinStatus.core_fields(self.store, last),
            buffer_seconds=st.buffer_seconds,
            buffer_segments=len(st.buffer),
            reference=st.reference,
            degraded_since=st.degraded_since,
            probation=st.probation,
            last_quality=st.last_quality,
            policy=st.policy,
        )

    # -- input ----------------------------------------------------------------------------

    def _merge(
        self, data: TimeSeries | Mapping[str, TimeSeries], witnesses: Any, source: str
    ) -> TimeSeriesDict:
        """One dict of strain and witnesses from a dict, or a strain series plus witnesses."""
        if isinstance(data, Mapping):
            merged = TimeSeriesDict(data)
            if witnesses is not None:
                merged.update(witnesses)
            return merged
        if not isinstance(data, TimeSeries):
            raise DataError(f"{source}: strain must be a gwpy TimeSeries or TimeSeriesDict")
        if witnesses is None:
            raise DataError(f"{source}: no witness channels given", "pass witnesses=...")
        merged = TimeSeriesDict(witnesses)
        merged[self.state.strain_channel] = data
        return merged

    def _read(self, paths: Sequence[str | Path], channels: Sequence[str] | None) -> TimeSeriesDict:
        """Read consecutive segment files (HDF5 or GWF) and validate them as one segment."""
        chans = list(channels or self.state.channels)
        pieces, names = [], []
        for path in paths:
            p = Path(path)
            suffix = p.suffix.lower()
            if suffix == ".gwf":
                pieces.append(read_gwf(p, chans))
            elif suffix in (".h5", ".hdf5", ".hdf"):
                pieces.append(read_multichannel_hdf5(p, chans))
            else:
                raise DataError(f"{p.name}: unknown segment file type (need .h5, .hdf5 or .gwf)")
            names.append(p.name)
        return self._validate(pieces, names)

    def _validate(
        self, data: Mapping[str, TimeSeries] | list[TimeSeriesDict], source: str | list[str]
    ) -> TimeSeriesDict:
        state = self.state
        out = prepare(
            data,  # type: ignore[arg-type]
            state.channels,
            sample_rate=None,
            min_duration=state.policy.min_segment_seconds,
            source=source,
            bounds=state.policy.ingest,
        )
        got = float(out[state.strain_channel].sample_rate.value)
        if not math.isclose(got, state.sample_rate, rel_tol=1e-9):
            label = source if isinstance(source, str) else ", ".join(source)
            raise DataError(
                f"{label}: sample-rate mismatch: data at {got:g} Hz, the twin's cleaner works "
                f"at {state.sample_rate:g} Hz",
                "resample explicitly with gravwave.io.prepare(sample_rate=...)",
            )
        return out

    def _check_cursor(self, data: TimeSeriesDict, cursor: str | None, source: str) -> None:
        first = next(iter(data.values()))
        t0, fs = float(first.t0.value), float(first.sample_rate.value)
        if cursor is None:
            return
        c = float(cursor)
        tol = 0.5 / fs
        if t0 < c - tol:
            raise DataError(
                f"{source}: segment starts at GPS {t0:.6f}, before the twin's cursor {c:.6f}: "
                "it overlaps data already consumed (out of order or repeated with other content)",
                "pass segments in time order, each starting at the cursor",
            )
        if t0 > c + tol and not self.policy.allow_gaps:
            raise DataError(
                f"{source}: segment starts at GPS {t0:.6f}, {t0 - c:.6g} s after the twin's "
                f"cursor {c:.6f}: a gap",
                "fill the gap, or set allow_gaps in the policy",
            )

    # -- update ---------------------------------------------------------------------------

    def update(
        self,
        data: TimeSeries | Mapping[str, TimeSeries] | str | Path | Sequence[str | Path],
        options: BaseModel | None = None,
        *,
        witnesses: Mapping[str, TimeSeries] | None = None,
        wait: bool | float = False,
        key: str | None = None,
        source: str = "segment",
    ) -> SegmentResult:
        """Consume one segment (see the module docstring) as one transaction.

        Args:
            data: The segment: a ``TimeSeriesDict`` of strain and witnesses, a strain
                ``TimeSeries`` (with ``witnesses``), or files (multi-channel HDF5 ``.h5`` or
                GWF ``.gwf``; several consecutive files form one segment).
            options: :class:`~gravwave.twin_state.NoiseUpdateOptions` (the channels to read
                from files).
            witnesses: Witness channels when ``data`` is the strain alone.
            wait: Lock wait: False fails at once if another writer holds the twin, True
                waits, a number waits that many seconds.
            key: Idempotency key; default a hash of the validated segment.
            source: Label of in-memory data for error messages.

        Returns:
            The segment's result (``noop``: consumed before; the stored result).

        Raises:
            ConfigError: No data given.
            DataError: Invalid segment, overlap or gap.
            TwinLockedError: Another writer holds the twin.
        """
        opts = NoiseUpdateOptions.model_validate((options or NoiseUpdateOptions()).model_dump())
        if isinstance(data, TimeSeries | Mapping):
            segment = self._validate(self._merge(data, witnesses, source), source)
        else:
            paths = [data] if isinstance(data, str | Path) else list(data)
            if not paths:
                raise ConfigError("twins twin update needs --data FILE", "give a segment file")
            segment = self._read(paths, opts.channels)
            source = ", ".join(Path(p).name for p in paths)
        key = key or segment_key(segment)
        done = self.store.find(key)
        if done is not None:
            log.info("twin %s: segment %s already consumed (v%d)", self.path, key, done.version)
            return self._result(done.version, noop=True)
        self._check_cursor(segment, self.store.state.cursor, source)
        with self.store.transaction(key, wait=wait) as txn:
            if txn.noop:
                assert txn.record is not None
                return self._result(txn.record.version, noop=True)
            self._check_cursor(segment, txn.state.cursor, source)  # again, under the lock
            record = consume(txn, self.path, segment, self._candidate)
        assert txn.record is not None
        core = UpdateResult.core_fields(txn.record, noop=False)
        return SegmentResult.model_validate({**core, **record.model_dump()})

    def _candidate(self, current: Cleaner, strain: TimeSeries, wit: TimeSeriesDict) -> Cleaner:
        """A refit candidate: ``refit_fn``, else the policy's refit (current unchanged)."""
        if self.refit_fn is not None:
            return self.refit_fn(current, strain, wit)
        policy = self.policy
        if policy.refit == "cascade":
            return retrain_cascade(current, strain, wit, policy.cascade_refit)
        return current.refit(strain, wit)

    # -- what-if --------------------------------------------------------------------------

    def simulate(
        self,
        scenario: BaseModel | None = None,
        *,
        data: Mapping[str, TimeSeries] | None = None,
        candidate: Cleaner | None = None,
    ) -> NoiseSimulation:
        """What-if: quality of a segment under a scenario; changes nothing.

        The scenario (:class:`~gravwave.twin_state.NoiseScenario`) is a segment (default: the
        newest one in the buffer), optionally with the witnessed coupling scaled by
        ``gain_scale`` (the strain gets ``(gain_scale - 1)`` times the current cleaner's
        predicted noise added), cleaned by the current cleaner and, if given, by a candidate.

        Args:
            scenario: The scenario; default ``NoiseScenario()``.
            data: An in-memory segment instead of the scenario's file.
            candidate: An in-memory candidate cleaner instead of the scenario's file.
        """
        sc = NoiseScenario.model_validate((scenario or NoiseScenario()).model_dump())
        state = self.state
        if data is not None:
            segment = self._validate(data, "scenario")
        elif sc.data is not None:
            segment = self._read([sc.data], None)
        elif state.buffer:
            segment = self._read([self.path / state.buffer[-1].file], None)
        else:
            raise DataError(f"twin {self.path}: no segment buffered yet; pass data")
        current = self.cleaner()
        strain_ch = state.strain_channel
        if sc.gain_scale != 1.0:
            segment = TimeSeriesDict(segment)
            noise = current.noise(current.witness_array(segment))
            segment[strain_ch] = segment[strain_ch] + (sc.gain_scale - 1.0) * noise
        raw = segment[strain_ch]
        cur_q = measure(clean_segment(current, segment), raw, state)
        other = candidate or (load_cleaner(sc.cleaner) if sc.cleaner is not None else None)
        cand_q = None if other is None else measure(clean_segment(other, segment), raw, state)
        reference = state.reference or {}
        threshold = state.policy.degrade_threshold
        t0 = float(raw.t0.value)
        return NoiseSimulation(
            scenario=sc.model_dump(mode="json"),
            gps_start=t0,
            gps_end=t0 + float(raw.duration.value),
            gain_scale=sc.gain_scale,
            model_ref=self.store.state.model_ref,
            current=cur_q,
            candidate=cand_q,
            reference=reference or None,
            degraded=any(cur_q.asd_ratio[b] > r * (1 + threshold) for b, r in reference.items()),
        )

    # -- the cleaner of an earlier version --------------------------------------------------

    def revert_cleaner(self, version: int, wait: bool | float = False) -> CleanerRevert:
        """Make the cleaner that was current at ``version`` current again.

        Unlike :meth:`rollback` (the whole twin back to a version) the data cursor and buffer
        stay; the quality reference is reset (the next segment sets it) and probation ends.
        Idempotent for the same target from the same state.

        Raises:
            TwinVersionError: ``version`` is not committed.
        """
        target = self.store.record(version)
        key = f"revert-cleaner:v{version}:at-v{self.store.state.version}"
        with self.store.transaction(key, wait=wait) as txn:
            if not txn.noop:
                state = NoiseTwinState.model_validate(txn.state.extra).model_copy(
                    update={"reference": None, "probation": None, "degraded_since": None}
                )
                txn.action = "revert-cleaner"
                txn.update_state(model_ref=target.model_ref, extra=state.model_dump(mode="json"))
                txn.summary.update({"reverted_to": version, "model_ref": target.model_ref})
        assert txn.record is not None
        log.info("twin %s: cleaner of v%d (%s) is current", self.path, version, target.model_ref)
        return CleanerRevert(
            **UpdateResult.core_fields(txn.record, noop=txn.noop),
            model_ref=target.model_ref,
            reverted_to=version,
        )
