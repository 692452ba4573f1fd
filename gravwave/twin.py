"""The Virgo noise twin: stream segments through a cleaner, watch its quality, refit, roll back.

A :class:`NoiseTwin` lives in a twin directory managed by :class:`twins.twin.TwinStore`
(``kind="gravwave"``). Each call of :meth:`NoiseTwin.process` consumes one segment that starts
exactly at the cursor (the GPS end [s] of the last consumed segment) and, as **one** transaction:

1. validates it (:func:`gravwave.io.prepare` without resampling: missing channel, NaN/inf,
   length or sample-rate mismatch, too short a span, a dead channel or a sample outside the
   policy's plausibility bounds ``ingest`` are :class:`~twins.errors.DataError`);
2. cleans it with the current cleaner (``gravwave.clean.clean_offline`` when that module exists,
   else ``strain - cleaner.noise(witnesses)``) and writes the cleaned strain (multi-channel
   HDF5 or GWF) as the product ``cleaned.h5`` / ``cleaned.gwf``;
3. writes a quality record ``quality.json``: in-band ASD ratio per band, out-of-band ratio,
   BNS inspiral range [Mpc] raw and cleaned, glitch flags (times where the whitened,
   band-limited residual exceeds ``glitch_threshold`` robust sigmas) and the GPS span;
4. keeps a rolling buffer: the validated input is stored as the product ``input.h5`` of the
   version, and the state lists the newest ones covering at most ``buffer_seconds``;
5. checks the quality against the model's reference (the in-band ratios measured when the
   model was accepted). When a band's ratio exceeds its reference by more than
   ``degrade_threshold`` (relative), the twin is *degraded*; once the buffer holds at least
   ``min_refit_seconds`` of data recorded since the degradation began (not counting the newest
   segment), it refits a candidate cleaner on that data and evaluates it on the newest segment
   against the current model. The candidate is kept only if it lowers the mean in-band ratio
   (and leaves the out-of-band ratio within ``oob_tolerance``), else it is *rejected*. An accepted
   candidate is saved as the product ``cleaner.pt``, becomes ``model_ref`` and is registered in
   MLflow (fault-tolerant: an outage is logged, never fatal);
6. on probation (the ``probation_segments`` segments after an accepted refit) the previous
   cleaner is evaluated too; if it does better on new data, the twin *rolls back* to it
   automatically (the segment's cleaned output is then the previous cleaner's).

The idempotency key is a hash of the segment's content (channels, GPS start, rate, samples), so
processing the same segment twice is a no-op that leaves the directory unchanged; a segment that
starts before the cursor is an overlap, one that starts after it a gap (both rejected). A SIGKILL
at any instant leaves the twin as before the segment or fully updated, and the retry gives the
same output (the computation is deterministic).

Model references are paths relative to the twin directory
(``versions/vNNNNNN/products/cleaner.pt``); :meth:`NoiseTwin.rollback` makes an earlier one
current again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from gwpy.timeseries import TimeSeries, TimeSeriesDict
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy import fft as sfft
from scipy import signal as sps

from gravwave.cleaner import Cleaner, WienerCleaner, load_cleaner
from gravwave.gates import IngestBounds, robust_standardize
from twins.errors import ConfigError, DataError, TwinsError
from twins.twin import TwinStore, UpdateRecord

log = logging.getLogger(__name__)

KIND = "gravwave"
CLEANER_FILE = "cleaner.pt"
QUALITY_FILE = "quality.json"
INPUT_FILE = "input.h5"
CLEANED_SUFFIX = "_CLEANED"

#: ``refit_fn(current, witnesses (channel, time), strain (time,)) -> new cleaner``; must not
#: modify ``current``. Arrays are float64 at the cleaner's rate.
RefitFn = Callable[[Cleaner, np.ndarray, np.ndarray], Cleaner]


class TwinPolicy(BaseModel):
    """How the noise twin judges quality and when it refits.

    Attributes:
        degrade_threshold: Relative rise of a band's in-band ASD ratio over the model's
            reference ratio that marks the twin degraded (0.1 = 10 %).
        buffer_seconds: Length of the rolling buffer of recent input [s].
        min_refit_seconds: Data recorded since the degradation began needed to refit [s]
            (the newest segment is held out for evaluation and not counted).
        refit: ``"wiener"`` refits the linear stage (a :class:`WienerCleaner` with the same
            configuration, or ``cleaner.refit_linear(witnesses, strain)`` for cleaners that
            offer it); ``"cascade"`` retrains a whole :class:`~gravwave.cascade.CascadeCleaner`
            (Wiener stage and network, :func:`~gravwave.cascade.fit_cascade`) on the buffered
            data; >= 1024 s of data recommended. A ``refit_fn`` given to
            :class:`NoiseTwin` overrides both.
        cascade_refit: Extra :class:`gravwave.cascade.CascadeParams` fields of a
            ``refit="cascade"`` retraining (e.g. ``epochs``, ``max_steps_per_epoch``,
            ``window``); bands and taps always come from the current cascade.
        improve_margin: A candidate must lower the mean in-band ratio by this relative amount.
        oob_tolerance: Largest accepted deviation of the out-of-band ratio from 1.
        probation_segments: Segments after an accepted refit during which the previous cleaner
            is compared and restored automatically if it does better.
        output_format: ``"hdf5"`` (multi-channel HDF5) or ``"gwf"`` (frame file).
        min_segment_seconds: Shortest accepted segment [s] (two range FFTs).
        allow_gaps: Accept a segment that starts after the cursor (else a gap is an error).
        fftlength: FFT length of the ASD ratios [s].
        range_fftlength: FFT length of the inspiral range [s].
        glitch_threshold: Glitch flag threshold on the whitened, band-limited residual
            [robust standard deviations].
        glitch_band: Band of the glitch search [Hz] (the top is capped below Nyquist).
        ingest: Plausibility bounds every channel of a segment must pass before anything is
            written (:class:`gravwave.gates.IngestBounds`); widen one with a key, e.g.
            ``{"ingest": {"max_robust_sigma": 20}}``.
        register_models: Register every accepted cleaner in the MLflow model registry.
        tracking_uri: MLflow URI; default ``$MLFLOW_TRACKING_URI`` or
            ``sqlite:///<twin parent>/mlflow.db``.
        experiment: MLflow experiment name.
        model_name: MLflow registered-model name.
    """

    model_config = ConfigDict(extra="forbid")

    degrade_threshold: float = Field(0.10, gt=0)
    buffer_seconds: float = Field(256.0, gt=0)
    min_refit_seconds: float = Field(32.0, gt=0)
    refit: Literal["wiener", "cascade"] = "wiener"
    cascade_refit: dict[str, Any] = Field(default_factory=dict)
    improve_margin: float = Field(0.02, ge=0, lt=1)
    oob_tolerance: float = Field(0.02, gt=0)
    probation_segments: int = Field(1, ge=0)
    output_format: Literal["hdf5", "gwf"] = "hdf5"
    min_segment_seconds: float = Field(16.0, gt=0)
    allow_gaps: bool = False
    fftlength: float = Field(4.0, gt=0)
    range_fftlength: float = Field(8.0, gt=0)
    glitch_threshold: float = Field(6.0, gt=0)
    glitch_band: tuple[float, float] = (30.0, 1000.0)
    ingest: IngestBounds = Field(default_factory=IngestBounds)
    register_models: bool = True
    tracking_uri: str | None = None
    experiment: str = "gravwave-twin"
    model_name: str = "gravwave-noise-cleaner"


# --------------------------------------------------------------------------------------------
# Pure helpers


def band_label(band: Sequence[float]) -> str:
    """``"142-162"`` for the band (142.0, 162.0) Hz."""
    return f"{float(band[0]):g}-{float(band[1]):g}"


def segment_key(data: TimeSeriesDict) -> str:
    """Idempotency key of a validated segment: GPS span plus a SHA-256 of its content.

    Args:
        data: Channel -> TimeSeries, all at one rate over one span (as from ``prepare``).

    Returns:
        ``"gw:<t0>-<t1>:<first 24 hex digits>"``.
    """
    h = hashlib.sha256()
    first = next(iter(data.values()))
    t0, fs = float(first.t0.value), float(first.sample_rate.value)
    t1 = t0 + len(first) / fs
    h.update(f"{t0!r}|{fs!r}".encode())
    for name, ts in data.items():
        h.update(str(name).encode() + b"\0")
        h.update(np.ascontiguousarray(ts.value, dtype=np.float64).tobytes())
    return f"gw:{t0:.6f}-{t1:.6f}:{h.hexdigest()[:24]}"


def glitch_flags(
    residual: np.ndarray,
    sample_rate: float,
    t0: float,
    band: tuple[float, float] = (30.0, 1000.0),
    threshold: float = 6.0,
    merge: float = 0.1,
    edge: float = 0.5,
) -> list[dict[str, float]]:
    """Times where the whitened, band-limited residual exceeds a threshold.

    The residual is robustly standardised without overflow
    (:func:`gravwave.gates.robust_standardize`: float64, samples beyond 1e8 robust sigma
    clipped there), tapered, whitened by its own Welch ASD (2-s FFTs),
    band-limited to ``band`` and normalised by its robust standard deviation (1.4826 x MAD),
    so a huge finite glitch is flagged instead of overflowing. Samples above
    ``threshold`` (edges of ``edge`` s excluded) are merged into flags when closer than
    ``merge`` s.

    Args:
        residual: Cleaned strain ``(time,)`` [strain].
        sample_rate: Rate [Hz].
        t0: GPS time of the first sample [s].
        band: Search band [Hz]; the top is capped at 0.95 x Nyquist.
        threshold: Threshold [robust sigma].
        merge: Flags closer than this are merged [s].
        edge: Ignored span at both ends [s].

    Returns:
        One dict per flag: ``gps_start``, ``gps_end``, ``gps_peak`` [s] and ``peak`` [sigma].
    """
    x = robust_standardize(residual)
    n = x.size
    x = x - x.mean()
    nper = min(n, int(2 * sample_rate))
    f, p = sps.welch(x, fs=sample_rate, nperseg=nper)
    taper = sps.windows.tukey(n, alpha=min(1.0, 2 * edge * sample_rate / n))
    spec = sfft.rfft(x * taper)
    freqs = sfft.rfftfreq(n, 1.0 / sample_rate)
    asd = np.sqrt(np.interp(freqs, f, p))
    hi = min(band[1], 0.95 * sample_rate / 2)
    keep = (freqs >= band[0]) & (freqs <= hi) & (asd > 0)
    white = np.zeros_like(spec)
    white[keep] = spec[keep] / asd[keep]
    z = sfft.irfft(white, n)
    cut = int(edge * sample_rate)
    core = z[cut : n - cut] if n > 2 * cut else z
    sigma = 1.4826 * np.median(np.abs(core - np.median(core)))
    if not sigma > 0:
        return []
    z = np.abs(z) / sigma
    z[:cut] = 0.0
    z[n - cut :] = 0.0
    idx = np.flatnonzero(z > threshold)
    flags: list[dict[str, float]] = []
    if idx.size == 0:
        return flags
    gap = int(merge * sample_rate)
    splits = np.flatnonzero(np.diff(idx) > gap) + 1
    for group in np.split(idx, splits):
        peak_i = int(group[np.argmax(z[group])])
        flags.append(
            {
                "gps_start": t0 + int(group[0]) / sample_rate,
                "gps_end": t0 + (int(group[-1]) + 1) / sample_rate,
                "gps_peak": t0 + peak_i / sample_rate,
                "peak": float(z[peak_i]),
            }
        )
    return flags


def _witness_array(data: TimeSeriesDict, cleaner: Cleaner) -> np.ndarray:
    return np.stack(
        [np.asarray(data[c].value, dtype=np.float64) for c in cleaner.witness_channels]
    )


def clean_segment(cleaner: Cleaner, data: TimeSeriesDict) -> TimeSeries:
    """Clean one validated segment with ``cleaner``.

    Uses ``gravwave.clean.clean_offline`` (windowed overlap-add) when that module is
    installed, else subtracts ``cleaner.noise`` over the whole segment.

    Args:
        cleaner: The cleaner.
        data: Strain and witnesses at the cleaner's rate over one span.

    Returns:
        The cleaned strain, channel ``<strain>_CLEANED`` [strain].
    """
    strain = data[cleaner.strain_channel]
    try:
        from gravwave.clean import clean_offline
    except ImportError:
        clean_offline = None
    if clean_offline is not None:
        wit = TimeSeriesDict((c, data[c]) for c in cleaner.witness_channels)
        out = clean_offline(cleaner, strain, wit)
        values = np.asarray(getattr(out, "value", out), dtype=np.float64)
    else:
        values = np.asarray(strain.value, dtype=np.float64) - cleaner.noise(
            _witness_array(data, cleaner)
        )
    name = f"{cleaner.strain_channel}{CLEANED_SUFFIX}"
    return TimeSeries(
        values, t0=strain.t0, sample_rate=strain.sample_rate, unit=strain.unit, name=name,
        channel=name,
    )  # fmt: skip


def quality_metrics(
    cleaned: TimeSeries, raw: TimeSeries, bands: Sequence[tuple[float, float]], policy: TwinPolicy
) -> dict[str, Any]:
    """In-band ASD ratio per band, out-of-band ratio and BNS range [Mpc] raw and cleaned."""
    from gravwave.metrics import asd_ratio, inspiral_range, out_of_band_ratio

    ratios = {
        band_label(b): asd_ratio(cleaned, raw, [b], fftlength=policy.fftlength) for b in bands
    }
    r_raw = inspiral_range(raw, fftlength=policy.range_fftlength)
    r_cln = inspiral_range(cleaned, fftlength=policy.range_fftlength)
    return {
        "asd_ratio": ratios,
        "asd_ratio_mean": float(np.mean(list(ratios.values()))),
        "out_of_band_ratio": out_of_band_ratio(cleaned, raw, bands, fftlength=policy.fftlength),
        "range_raw_mpc": r_raw,
        "range_cleaned_mpc": r_cln,
        "range_gain_mpc": r_cln - r_raw,
    }


def default_refit(policy: TwinPolicy) -> RefitFn:
    """The refit function that ``policy.refit`` names (see :class:`TwinPolicy`)."""

    def wiener_like(
        old: WienerCleaner, witnesses: np.ndarray, strain: np.ndarray
    ) -> WienerCleaner:
        new = WienerCleaner(
            old.strain_channel,
            old.witness_channels,
            old.sample_rate,
            old.bands,
            n_taps=old.filter.n_taps,
        )
        return new.fit(witnesses, strain)

    def refit(current: Cleaner, witnesses: np.ndarray, strain: np.ndarray) -> Cleaner:
        if isinstance(current, WienerCleaner) and policy.refit == "wiener":
            return wiener_like(current, witnesses, strain)
        try:
            from gravwave.cascade import CascadeCleaner, WienerStage
        except ImportError as exc:
            raise TwinsError(f"cannot refit a {type(current).__name__}: {exc}") from None

        def stage(old: WienerStage) -> WienerStage:
            return WienerStage(
                wiener_like(old.wiener, witnesses, strain),
                old.window,
                old.overlap,
                old.finish_length,
                old.attenuation,
            )

        if policy.refit == "cascade":
            if not isinstance(current, CascadeCleaner):
                raise TwinsError(
                    f"refit='cascade' needs a CascadeCleaner, not {type(current).__name__}",
                    "use refit='wiener' or pass a refit_fn",
                )
            return _retrain_cascade(current, witnesses, strain, policy.cascade_refit)
        if isinstance(current, WienerStage):
            return stage(current)
        if isinstance(current, CascadeCleaner):
            return CascadeCleaner(stage(current.wiener), current.network)
        raise TwinsError(
            f"refit='wiener' cannot refit a {type(current).__name__}",
            "pass a refit_fn to NoiseTwin",
        )

    return refit


def _retrain_cascade(
    current: Any, witnesses: np.ndarray, strain: np.ndarray, extra: Mapping[str, Any]
) -> Cleaner:
    """Retrain the whole cascade (Wiener stage + network) on the data, in a temp directory.

    Args:
        current: The :class:`gravwave.cascade.CascadeCleaner` in use (gives channels, bands,
            taps and sample rate).
        witnesses: ``(channel, time)`` witness data at the strain rate.
        strain: ``(time,)`` strain.
        extra: More :class:`gravwave.cascade.CascadeParams` fields (training budget).
    """
    import shutil
    import tempfile

    from gravwave.cascade import CascadeParams, fit_cascade

    fs = current.sample_rate
    ts = TimeSeries(strain, sample_rate=fs, name=current.strain_channel)
    wit = TimeSeriesDict(
        (c, TimeSeries(witnesses[i], sample_rate=fs, name=c))
        for i, c in enumerate(current.witness_channels)
    )
    fixed = {
        "linear_bands": [tuple(b) for b in current.wiener.bands],
        "network_band": tuple(current.network.bands[0]),
        "n_taps": current.wiener.wiener.filter.n_taps,
    }
    params = CascadeParams(**{**dict(extra), **fixed})
    tmp = tempfile.mkdtemp(prefix="gravwave-refit-")
    try:
        return fit_cascade(ts, wit, params, workdir=tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def register_cleaner(
    policy: TwinPolicy, twin_dir: Path, cleaner_file: Path, tags: Mapping[str, Any]
) -> dict[str, Any]:
    """Register a cleaner file as a new version in the MLflow model registry.

    Never raises: a tracking outage is logged as a warning and reported as ``{"error": ...}``.

    Args:
        policy: Gives the URI, experiment and registered-model name.
        twin_dir: The twin directory (default store beside it).
        cleaner_file: The cleaner file to log as an artifact.
        tags: Tags of the run and the model version (twin version, key, metrics).

    Returns:
        ``{"name", "version", "run_id"}`` or ``{"error": message}`` or ``{}`` when disabled.
    """
    if not policy.register_models:
        return {}
    started = time.perf_counter()
    try:
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        from twins.track import prepare_store, resolve_tracking_uri

        uri = resolve_tracking_uri(policy.tracking_uri, twin_dir.parent)
        exp_id = prepare_store(uri, policy.experiment)
        client = MlflowClient(tracking_uri=uri)
        str_tags = {str(k): str(v) for k, v in tags.items()}
        run = client.create_run(exp_id, run_name=f"twin-{twin_dir.name}", tags=str_tags)
        run_id = run.info.run_id
        client.log_artifact(run_id, str(cleaner_file), "cleaner")
        try:
            client.create_registered_model(policy.model_name)
        except MlflowException as exc:
            if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code):
                raise
        mv = client.create_model_version(
            policy.model_name,
            source=f"{run.info.artifact_uri}/cleaner",
            run_id=run_id,
            tags=str_tags,
        )
        client.set_terminated(run_id)
    except Exception as exc:  # noqa: BLE001 - a tracking outage must never break the twin
        log.warning("MLflow registration of %s failed (%s); the twin goes on", cleaner_file, exc)
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    log.info(
        "registered %s version %s in MLflow (%.1f s)",
        policy.model_name,
        mv.version,
        time.perf_counter() - started,
    )
    return {"name": policy.model_name, "version": str(mv.version), "run_id": run_id}


# --------------------------------------------------------------------------------------------
# The twin


class NoiseTwin:
    """A Virgo noise twin in a directory (see the module docstring).

    Args:
        twin_dir: An existing gravwave twin (create it with :meth:`init`).
        refit_fn: Overrides the policy's refit (e.g. the cascade's retraining).
    """

    def __init__(self, twin_dir: str | Path, refit_fn: RefitFn | None = None) -> None:
        self.store = TwinStore.open(twin_dir, kind=KIND)
        self.path = self.store.path
        self.refit_fn = refit_fn

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def init(
        cls,
        twin_dir: str | Path,
        cleaner: Cleaner,
        policy: TwinPolicy | Mapping[str, Any] | None = None,
        refit_fn: RefitFn | None = None,
        cursor: float | None = None,
    ) -> NoiseTwin:
        """Create a noise twin around a fitted cleaner.

        Args:
            twin_dir: New (or empty) directory.
            cleaner: The initial cleaner (any :class:`~gravwave.cleaner.Cleaner`).
            policy: The policy (a :class:`TwinPolicy` or its dict); default settings if None.
            refit_fn: See :class:`NoiseTwin`.
            cursor: GPS time [s] the first segment must start at; None accepts any start.

        Returns:
            The twin.

        Raises:
            ConfigError: Invalid policy.
            TwinExistsError: ``twin_dir`` is already a twin or not empty.
        """
        pol = _policy(policy)
        if not isinstance(cleaner, Cleaner):
            raise TwinsError(f"{type(cleaner).__name__} does not implement the Cleaner protocol")
        target = Path(twin_dir)
        extra = {
            "policy": pol.model_dump(mode="json"),
            "strain_channel": cleaner.strain_channel,
            "witness_channels": list(cleaner.witness_channels),
            "sample_rate": float(cleaner.sample_rate),
            "bands": [list(b) for b in cleaner.bands],
            "reference": None,
            "degraded_since": None,
            "probation": None,
            "buffer": [],
            "last_quality": None,
        }
        ref = f"versions/v000000/products/{CLEANER_FILE}"

        def products(d: Path) -> None:
            cleaner.save(d / CLEANER_FILE)

        store = TwinStore.init(
            target,
            KIND,
            model_ref=ref,
            cursor=None if cursor is None else _fmt_gps(cursor),
            config_hash=_policy_hash(pol),
            extra=extra,
            products=products,
            summary={"cleaner": type(cleaner).__name__},
        )
        reg = register_cleaner(
            pol, store.path, store.path / ref, {"twin_version": 0, "twin_dir": store.path}
        )
        if reg:
            log.info("initial cleaner registration: %s", reg)
        return cls(store.path, refit_fn=refit_fn)

    @classmethod
    def open(cls, twin_dir: str | Path, refit_fn: RefitFn | None = None) -> NoiseTwin:
        """Open an existing noise twin (raises ``TwinNotFoundError``/``TwinKindError``)."""
        return cls(twin_dir, refit_fn=refit_fn)

    # -- reading --------------------------------------------------------------------------

    @property
    def policy(self) -> TwinPolicy:
        """The twin's policy (from its state)."""
        return TwinPolicy.model_validate(self.store.state.extra["policy"])

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

    def quality(self, version: int | None = None) -> dict[str, Any]:
        """The quality record of a version's segment (default: the newest one)."""
        if version is None:
            return json.loads(self.store.product_path(QUALITY_FILE).read_text())
        return json.loads(
            (self.store.version_dir(version) / "products" / QUALITY_FILE).read_text()
        )

    def cleaned_path(self, version: int | None = None) -> Path:
        """Path of the cleaned strain written by ``version`` (default: the newest)."""
        name = "cleaned.gwf" if self.policy.output_format == "gwf" else "cleaned.h5"
        if version is None:
            return self.store.product_path(name)
        return self.store.version_dir(version) / "products" / name

    def history(self) -> list[UpdateRecord]:
        """Records of all committed updates, oldest first."""
        return self.store.history()

    def status(self) -> dict[str, Any]:
        """JSON-ready status: the store's status plus buffer length, reference and last quality."""
        st = self.store.status()
        extra = st.pop("extra")
        buf = extra.get("buffer", [])
        st.update(
            {
                "buffer_seconds": float(sum(e["t1"] - e["t0"] for e in buf)),
                "buffer_segments": len(buf),
                "reference": extra.get("reference"),
                "degraded_since": extra.get("degraded_since"),
                "probation": extra.get("probation"),
                "last_quality": extra.get("last_quality"),
                "policy": extra.get("policy"),
            }
        )
        return st

    # -- input ----------------------------------------------------------------------------

    def _validate(
        self,
        data: TimeSeries | TimeSeriesDict,
        witnesses: TimeSeriesDict | None,
        source: str,
    ) -> TimeSeriesDict:
        from gravwave.io import prepare

        extra = self.store.state.extra
        strain_ch = extra["strain_channel"]
        channels = [strain_ch, *extra["witness_channels"]]
        if isinstance(data, TimeSeriesDict | dict):
            merged = TimeSeriesDict(data)
            if witnesses is not None:
                merged.update(witnesses)
        else:
            if not isinstance(data, TimeSeries):
                raise DataError(f"{source}: strain must be a gwpy TimeSeries or TimeSeriesDict")
            if witnesses is None:
                raise DataError(f"{source}: no witness channels given", "pass witnesses=...")
            merged = TimeSeriesDict(witnesses)
            merged[strain_ch] = data
        rate = float(extra["sample_rate"])
        out = prepare(
            merged,
            channels,
            sample_rate=None,
            min_duration=self.policy.min_segment_seconds,
            source=source,
            bounds=self.policy.ingest,
        )
        got = float(out[strain_ch].sample_rate.value)
        if not math.isclose(got, rate, rel_tol=1e-9):
            raise DataError(
                f"{source}: sample-rate mismatch: data at {got:g} Hz, the twin's cleaner works "
                f"at {rate:g} Hz",
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

    # -- processing -----------------------------------------------------------------------

    def process(
        self,
        strain: TimeSeries | TimeSeriesDict,
        witnesses: TimeSeriesDict | None = None,
        key: str | None = None,
        wait: bool | float = False,
        source: str = "segment",
    ) -> dict[str, Any]:
        """Consume one segment (see the module docstring) as one transaction.

        Args:
            strain: Strain TimeSeries, or a TimeSeriesDict with strain and witnesses.
            witnesses: Witness channels (when ``strain`` is a TimeSeries).
            key: Idempotency key; default a hash of the validated segment.
            wait: Lock wait: False fails at once if another writer holds the twin, True
                waits, a number waits that many seconds.
            source: Label for error messages (e.g. the file name).

        Returns:
            The quality record (with ``"noop": True`` and the committed version when the
            segment was already consumed).

        Raises:
            DataError: Invalid segment, overlap or gap.
            TwinLockedError: Another writer holds the twin.
        """
        data = self._validate(strain, witnesses, source)
        key = key or segment_key(data)
        done = self.store.find(key)
        if done is not None:
            log.info("twin %s: segment %s already consumed (v%d)", self.path, key, done.version)
            return {**self.quality(done.version), "noop": True, "version": done.version}
        self._check_cursor(data, self.store.state.cursor, source)
        with self.store.transaction(key, wait=wait) as txn:
            if txn.noop:
                assert txn.record is not None
                return {**self.quality(txn.record.version), "noop": True}
            self._check_cursor(data, txn.state.cursor, source)  # re-check under the lock
            record = self._update(txn, data, key)
        record["version"] = txn.version
        return record

    def process_file(
        self,
        path: str | Path,
        channels: Sequence[str] | None = None,
        wait: bool | float = False,
    ) -> dict[str, Any]:
        """Consume a segment file: multi-channel HDF5 (``.h5``/``.hdf5``) or GWF (``.gwf``).

        Args:
            path: The file.
            channels: Channels to read (strain first); default the twin's channels.
            wait: As in :meth:`process`.

        Returns:
            As :meth:`process`.

        Raises:
            DataError: Unreadable file, missing channel, or any rejection of :meth:`process`.
        """
        from gravwave.io import read_gwf, read_multichannel_hdf5

        p = Path(path)
        extra = self.store.state.extra
        chans = list(channels or [extra["strain_channel"], *extra["witness_channels"]])
        if p.suffix.lower() == ".gwf":
            data = read_gwf(p, chans)
        elif p.suffix.lower() in (".h5", ".hdf5", ".hdf"):
            data = read_multichannel_hdf5(p, chans)
        else:
            raise DataError(f"{p.name}: unknown segment file type (need .h5, .hdf5 or .gwf)")
        return self.process(data, wait=wait, source=p.name)

    def _update(self, txn: Any, data: TimeSeriesDict, key: str) -> dict[str, Any]:
        tic = time.perf_counter()
        policy = TwinPolicy.model_validate(txn.state.extra["policy"])
        extra = dict(txn.state.extra)
        bands = [tuple(b) for b in extra["bands"]]
        strain_ch = extra["strain_channel"]
        raw = data[strain_ch]
        fs = float(raw.sample_rate.value)
        t0 = float(raw.t0.value)
        t1 = t0 + len(raw) / fs
        model_ref = txn.state.model_ref
        cleaner = load_cleaner(self.path / model_ref)
        cleaned = clean_segment(cleaner, data)
        cleaned_with = model_ref
        q = quality_metrics(cleaned, raw, bands, policy)
        products = txn.products_dir
        version = txn.version
        vprefix = f"versions/v{version:06d}/products"
        events: list[str] = []

        # Probation: compare with the previous cleaner, roll back if it does better.
        probation = extra.get("probation")
        if probation:
            prev = load_cleaner(self.path / probation["model_ref"])
            prev_cleaned = clean_segment(prev, data)
            pq = quality_metrics(prev_cleaned, raw, bands, policy)
            if pq["asd_ratio_mean"] < q["asd_ratio_mean"] * (1 - policy.improve_margin):
                log.warning(
                    "twin %s: the refitted cleaner does worse than the previous one on GPS "
                    "%.3f-%.3f (in-band ratio %.4f vs %.4f): rolled back",
                    self.path,
                    t0,
                    t1,
                    q["asd_ratio_mean"],
                    pq["asd_ratio_mean"],
                )
                events.append("rolled_back")
                bad_ref = model_ref
                model_ref = cleaned_with = probation["model_ref"]
                cleaned, q = prev_cleaned, {**pq, "rolled_back_from": bad_ref}
                extra["reference"] = probation.get("reference")
                extra["probation"] = None
            else:
                remaining = int(probation["remaining"]) - 1
                extra["probation"] = {**probation, "remaining": remaining} if remaining else None

        # Degradation against the reference of the current model.
        reference = extra.get("reference")
        if reference is None:
            reference = dict(q["asd_ratio"])
            extra["reference"] = reference
            events.append("reference_set")
        worst = max(q["asd_ratio"][b] / reference[b] - 1 for b in reference)
        degraded = worst > policy.degrade_threshold
        if degraded and extra.get("degraded_since") is None:
            extra["degraded_since"] = t0
            events.append("degraded")
        elif not degraded:
            extra["degraded_since"] = None

        # Rolling buffer: this segment's validated input is a product of this version.
        from gravwave.io import write_multichannel_hdf5

        write_multichannel_hdf5(products / INPUT_FILE, data)
        buffer = [
            *extra.get("buffer", []),
            {"file": f"{vprefix}/{INPUT_FILE}", "t0": t0, "t1": t1},
        ]
        while len(buffer) > 1 and sum(e["t1"] - e["t0"] for e in buffer) > policy.buffer_seconds:
            buffer.pop(0)
        extra["buffer"] = buffer

        refit: dict[str, Any] | None = None
        if degraded and "rolled_back" not in events:
            refit = self._refit(policy, cleaner, data, q, extra, products, vprefix, version, key)
            events.append(f"refit_{refit['status']}")
            if refit["status"] == "accepted":
                extra["probation"] = (
                    {
                        "model_ref": model_ref,
                        "reference": extra["reference"],
                        "remaining": policy.probation_segments,
                    }
                    if policy.probation_segments
                    else None
                )
                model_ref = refit["model_ref"]
                extra["reference"] = refit["candidate_ratio"]
                extra["degraded_since"] = None

        glitches = glitch_flags(
            cleaned.value,
            fs,
            t0,
            band=policy.glitch_band,
            threshold=policy.glitch_threshold,
        )
        record: dict[str, Any] = {
            "gps_start": t0,
            "gps_end": t1,
            "duration": t1 - t0,
            "sample_rate": fs,
            "key": key,
            "cleaned_with": cleaned_with,
            "model_ref": model_ref,
            **q,
            "reference": reference,
            "degradation": worst,
            "degraded": degraded,
            "glitches": glitches,
            "events": events,
            "refit": refit,
        }
        if policy.output_format == "gwf":
            cleaned.write(str(products / "cleaned.gwf"), format="gwf")
        else:
            write_multichannel_hdf5(
                products / "cleaned.h5", TimeSeriesDict({cleaned.name: cleaned})
            )
        (products / QUALITY_FILE).write_text(json.dumps(record, indent=1, sort_keys=True))
        summary = {
            k: record[k]
            for k in ("gps_start", "gps_end", "asd_ratio", "out_of_band_ratio", "events")
        }
        summary["range_mpc"] = [q["range_raw_mpc"], q["range_cleaned_mpc"]]
        summary["glitches"] = len(glitches)
        extra["last_quality"] = {
            "gps_start": t0,
            "gps_end": t1,
            "asd_ratio": q["asd_ratio"],
            "range_gain_mpc": q["range_gain_mpc"],
            "events": events,
        }
        txn.summary.update(summary)
        txn.update_state(cursor=_fmt_gps(t1), model_ref=model_ref, extra=extra)
        log.info(
            "twin %s v%d: GPS %.3f-%.3f in-band %s, range %.2f -> %.2f Mpc, %d glitch flags%s "
            "(%.1f s)",
            self.path,
            version,
            t0,
            t1,
            {k: round(v, 4) for k, v in q["asd_ratio"].items()},
            q["range_raw_mpc"],
            q["range_cleaned_mpc"],
            len(glitches),
            f", {', '.join(events)}" if events else "",
            time.perf_counter() - tic,
        )
        return record

    def _refit(
        self,
        policy: TwinPolicy,
        cleaner: Cleaner,
        data: TimeSeriesDict,
        q: Mapping[str, Any],
        extra: Mapping[str, Any],
        products: Path,
        vprefix: str,
        version: int,
        key: str,
    ) -> dict[str, Any]:
        from gravwave.io import read_multichannel_hdf5

        since = float(extra["degraded_since"])
        train = [e for e in extra["buffer"][:-1] if e["t0"] >= since - 1e-6]
        have = float(sum(e["t1"] - e["t0"] for e in train))
        if have < policy.min_refit_seconds:
            log.info(
                "twin %s: degraded since GPS %.3f; %.0f s of new data, %.0f s needed to refit",
                self.path,
                since,
                have,
                policy.min_refit_seconds,
            )
            return {"status": "pending", "have_s": have, "need_s": policy.min_refit_seconds}
        channels = [cleaner.strain_channel, *cleaner.witness_channels]
        pieces = [read_multichannel_hdf5(self.path / e["file"], channels) for e in train]
        strain = np.concatenate([np.asarray(p[cleaner.strain_channel].value) for p in pieces])
        wit = np.concatenate([_witness_array(p, cleaner) for p in pieces], axis=1)
        tic = time.perf_counter()
        fn = self.refit_fn or default_refit(policy)
        candidate = fn(cleaner, wit, strain)
        fit_s = time.perf_counter() - tic
        raw = data[cleaner.strain_channel]
        cq = quality_metrics(clean_segment(candidate, data), raw, cleaner.bands, policy)
        better = cq["asd_ratio_mean"] < q["asd_ratio_mean"] * (1 - policy.improve_margin)
        oob_ok = abs(cq["out_of_band_ratio"] - 1) <= policy.oob_tolerance
        result: dict[str, Any] = {
            "train_gps": [train[0]["t0"], train[-1]["t1"]],
            "train_seconds": have,
            "fit_seconds": fit_s,
            "current_ratio": q["asd_ratio"],
            "candidate_ratio": cq["asd_ratio"],
            "candidate_out_of_band_ratio": cq["out_of_band_ratio"],
            "candidate_range_mpc": cq["range_cleaned_mpc"],
        }
        if not (better and oob_ok):
            why = "no improvement" if not better else "out-of-band ratio off"
            log.warning(
                "twin %s: refit candidate rejected (%s: in-band %.4f vs current %.4f, "
                "out-of-band %.4f); the current cleaner stays",
                self.path,
                why,
                cq["asd_ratio_mean"],
                q["asd_ratio_mean"],
                cq["out_of_band_ratio"],
            )
            return {**result, "status": "rejected", "reason": why}
        candidate.save(products / CLEANER_FILE)
        ref = f"{vprefix}/{CLEANER_FILE}"
        reg = register_cleaner(
            policy,
            self.path,
            products / CLEANER_FILE,
            {
                "twin_version": version,
                "twin_dir": self.path,
                "segment_key": key,
                "asd_ratio_mean": cq["asd_ratio_mean"],
                "train_gps": f"{train[0]['t0']}-{train[-1]['t1']}",
            },
        )
        log.info(
            "twin %s: refit accepted (in-band %.4f -> %.4f on the newest segment, %.1f s of "
            "data, fit %.1f s)",
            self.path,
            q["asd_ratio_mean"],
            cq["asd_ratio_mean"],
            have,
            fit_s,
        )
        return {**result, "status": "accepted", "model_ref": ref, "mlflow": reg}

    # -- what-if --------------------------------------------------------------------------

    def simulate(
        self,
        data: TimeSeriesDict | str | Path | None = None,
        candidate: Cleaner | str | Path | None = None,
        gain_scale: float = 1.0,
    ) -> dict[str, Any]:
        """What-if for the noise twin: quality of a segment under a scenario; changes nothing.

        The scenario is a segment (default: the newest one in the buffer), optionally with the
        witnessed coupling scaled by ``gain_scale`` (the strain gets ``(gain_scale - 1)`` times
        the current cleaner's predicted noise added: "what if the coupling gain drifted by
        this factor"), cleaned by the current cleaner and, if given, by a candidate cleaner.

        Args:
            data: A segment (dict or HDF5/GWF file); None for the newest buffered segment.
            candidate: A cleaner or cleaner file to compare with the current one.
            gain_scale: Factor on the witnessed coupling (1 = as recorded).

        Returns:
            ``{"gps_start", "gps_end", "gain_scale", "current": quality, "candidate":
            quality or None, "degraded": bool}``; quality holds the in-band ratios, the
            out-of-band ratio and the ranges [Mpc].
        """
        from gravwave.io import read_gwf, read_multichannel_hdf5

        state = self.store.state
        extra = state.extra
        chans = [extra["strain_channel"], *extra["witness_channels"]]
        if data is None:
            if not extra.get("buffer"):
                raise DataError(f"twin {self.path}: no segment buffered yet; pass data")
            data = self.path / extra["buffer"][-1]["file"]
        if isinstance(data, str | Path):
            p = Path(data)
            raw_data = (
                read_gwf(p, chans) if p.suffix == ".gwf" else read_multichannel_hdf5(p, chans)
            )
            data = self._validate(raw_data, None, p.name)
        else:
            data = self._validate(data, None, "scenario")
        policy = TwinPolicy.model_validate(extra["policy"])
        current = self.cleaner()
        strain_ch = extra["strain_channel"]
        if gain_scale != 1.0:
            data = TimeSeriesDict(data)
            noise = current.noise(_witness_array(data, current))
            data[strain_ch] = data[strain_ch] + (gain_scale - 1.0) * noise
        raw = data[strain_ch]
        bands = [tuple(b) for b in extra["bands"]]
        cur_q = quality_metrics(clean_segment(current, data), raw, bands, policy)
        cand_q = None
        if candidate is not None:
            cand = load_cleaner(candidate) if isinstance(candidate, str | Path) else candidate
            cand_q = quality_metrics(clean_segment(cand, data), raw, bands, policy)
        reference = extra.get("reference") or {}
        degraded = any(
            cur_q["asd_ratio"][b] > reference[b] * (1 + policy.degrade_threshold)
            for b in reference
        )
        t0 = float(raw.t0.value)
        return {
            "gps_start": t0,
            "gps_end": t0 + float(raw.duration.value),
            "gain_scale": gain_scale,
            "model_ref": state.model_ref,
            "current": cur_q,
            "candidate": cand_q,
            "reference": reference or None,
            "degraded": degraded,
        }

    # -- rollback -------------------------------------------------------------------------

    def rollback(self, version: int, wait: bool | float = False) -> dict[str, Any]:
        """Make the cleaner that was current at ``version`` current again.

        The data cursor and buffer stay; the quality reference is reset (the next segment sets
        it) and probation ends. Idempotent for the same target from the same state.

        Args:
            version: A committed twin version.
            wait: As in :meth:`process`.

        Returns:
            ``{"version", "model_ref", "rollback_to"}``.

        Raises:
            TwinVersionError: ``version`` is not committed.
        """
        target = self.store.record(version)
        state = self.store.state
        key = f"rollback:v{version}:at-v{state.version}"
        with self.store.transaction(key, wait=wait) as txn:
            if not txn.noop:
                extra = dict(txn.state.extra)
                extra.update({"reference": None, "probation": None, "degraded_since": None})
                txn.action = "rollback"
                txn.update_state(model_ref=target.model_ref, extra=extra)
                txn.summary.update({"rollback_to": version, "model_ref": target.model_ref})
        assert txn.record is not None
        log.info("twin %s: cleaner of v%d (%s) is current", self.path, version, target.model_ref)
        return {
            "version": txn.record.version,
            "model_ref": target.model_ref,
            "rollback_to": version,
        }


# --------------------------------------------------------------------------------------------
# Small utilities


def _fmt_gps(t: float) -> str:
    return f"{float(t):.6f}"


def _policy(policy: TwinPolicy | Mapping[str, Any] | None) -> TwinPolicy:
    if policy is None:
        return TwinPolicy()
    if isinstance(policy, TwinPolicy):
        return policy
    try:
        return TwinPolicy.model_validate(dict(policy))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"twin policy: {where}: {first['msg']}") from None


def _policy_hash(policy: TwinPolicy) -> str:
    text = json.dumps(policy.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m gravwave.twin init DIR --cleaner FILE [--policy JSON]``: create a twin."""
    ap = argparse.ArgumentParser(prog="python -m gravwave.twin")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sp = sub.add_parser("init", help="create a noise twin around a saved cleaner")
    sp.add_argument("twin_dir")
    sp.add_argument("--cleaner", required=True, help="cleaner file (torch.save format)")
    sp.add_argument("--policy", default="{}", help="policy as JSON, e.g. '{\"register\": false}'")
    ns = ap.parse_args(argv)
    try:
        twin = NoiseTwin.init(ns.twin_dir, load_cleaner(ns.cleaner), json.loads(ns.policy))
    except TwinsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(json.dumps(twin.status(), default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
