"""The noise twin's typed records: its state, its command-line options and its results.

:class:`NoiseTwinState` is what the twin keeps between segments (stored as the store's
``extra``); :class:`SegmentRecord` is what one segment's update measured and decided (stored
as the ``quality.json`` product, returned as :class:`SegmentResult`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gravwave.policy import TwinPolicy
from gravwave.quality import GlitchFlag, Quality
from twins.track import ModelVersion
from twins.twin import SimulationResult, TwinStatus, UpdateResult

__all__ = [
    "BufferEntry",
    "CleanerRevert",
    "Event",
    "LastQuality",
    "NoiseInit",
    "NoiseScenario",
    "NoiseSimulation",
    "NoiseTwinState",
    "NoiseTwinStatus",
    "NoiseUpdateOptions",
    "Probation",
    "RefitOutcome",
    "SegmentRecord",
    "SegmentResult",
]

#: What happened to the twin on a segment.
Event = Literal[
    "reference_set", "degraded", "rolled_back", "refit_pending", "refit_rejected", "refit_accepted"
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class BufferEntry(BaseModel):
    """One buffered segment: its input file (relative to the twin) and GPS span [s]."""

    model_config = _FROZEN

    file: str
    t0: float
    t1: float


class Probation(BaseModel):
    """The cleaner replaced by an accepted refit, compared again on the next segments.

    Attributes:
        model_ref: The previous cleaner.
        reference: Its quality reference (in-band ratio per band).
        remaining: Segments of probation left.
    """

    model_config = _FROZEN

    model_ref: str
    reference: dict[str, float]
    remaining: int = Field(ge=1)


class LastQuality(BaseModel):
    """The newest segment's headline numbers (shown by ``twins twin status``)."""

    model_config = _FROZEN

    gps_start: float
    gps_end: float
    asd_ratio: dict[str, float]
    range_gain_mpc: float
    events: tuple[Event, ...]


class NoiseTwinState(BaseModel):
    """What the noise twin keeps between segments.

    Attributes:
        policy: The policy.
        strain_channel: Strain channel of the cleaner.
        witness_channels: Its witness channels, in order.
        sample_rate: Its working rate [Hz].
        bands: Its bands [Hz].
        reference: In-band ratios of the current cleaner when it was accepted; None until
            the first segment after init or a revert.
        degraded_since: GPS start [s] of the first segment of the current degradation.
        probation: The previous cleaner, while on probation.
        buffer: The newest segments, at most ``policy.buffer_seconds`` long, oldest first.
        last_quality: The newest segment's numbers.
    """

    model_config = _FROZEN

    policy: TwinPolicy
    strain_channel: str
    witness_channels: tuple[str, ...]
    sample_rate: float
    bands: tuple[tuple[float, float], ...]
    reference: dict[str, float] | None = None
    degraded_since: float | None = None
    probation: Probation | None = None
    buffer: tuple[BufferEntry, ...] = ()
    last_quality: LastQuality | None = None

    @property
    def channels(self) -> list[str]:
        """Strain then witnesses."""
        return [self.strain_channel, *self.witness_channels]

    @property
    def buffer_seconds(self) -> float:
        """Length of the buffered input [s]."""
        return float(sum(e.t1 - e.t0 for e in self.buffer))


class RefitOutcome(BaseModel):
    """What a refit attempt did.

    Attributes:
        status: ``"pending"`` (not enough data yet), ``"rejected"`` or ``"accepted"``.
        have_s: Data recorded since the degradation began [s] (pending).
        need_s: Data needed to refit [s] (pending).
        train_gps: GPS span of the refit's training data [s].
        train_seconds: Its length [s].
        fit_seconds: Wall time of the refit [s].
        current_ratio: The current cleaner's in-band ratios on the newest segment.
        candidate_ratio: The candidate's.
        candidate_out_of_band_ratio: The candidate's out-of-band ratio.
        candidate_range_mpc: The candidate's range on the newest segment [Mpc].
        reason: Why a candidate was rejected.
        model_ref: The accepted cleaner's file (relative to the twin).
        registered: Its MLflow model version, when registered.
        registration_error: Why registering it failed (the twin went on).
    """

    model_config = _FROZEN

    status: Literal["pending", "rejected", "accepted"]
    have_s: float | None = None
    need_s: float | None = None
    train_gps: tuple[float, float] | None = None
    train_seconds: float | None = None
    fit_seconds: float | None = None
    current_ratio: dict[str, float] | None = None
    candidate_ratio: dict[str, float] | None = None
    candidate_out_of_band_ratio: float | None = None
    candidate_range_mpc: float | None = None
    reason: str | None = None
    model_ref: str | None = None
    registered: ModelVersion | None = None
    registration_error: str | None = None


class SegmentRecord(Quality):
    """One segment's update: its quality and what the twin decided (``quality.json``).

    Attributes:
        gps_start: GPS start of the segment [s].
        gps_end: GPS end [s].
        duration: Its length [s].
        sample_rate: Its rate [Hz].
        cleaned_with: The cleaner whose output was written.
        model_ref: The cleaner current after the update.
        reference: The quality reference the segment was judged against.
        degradation: Largest relative rise of a band's ratio over the reference.
        degraded: Whether it exceeds the policy's ``degrade_threshold``.
        glitches: Glitch flags of the cleaned strain.
        events: What happened, in order.
        refit: The refit attempt, if the twin was degraded.
        rolled_back_from: The refitted cleaner taken back on probation, if any.
    """

    model_config = _FROZEN

    gps_start: float
    gps_end: float
    duration: float
    sample_rate: float
    cleaned_with: str
    model_ref: str
    reference: dict[str, float]
    degradation: float
    degraded: bool
    glitches: tuple[GlitchFlag, ...] = ()
    events: tuple[Event, ...] = ()
    refit: RefitOutcome | None = None
    rolled_back_from: str | None = None


class SegmentResult(UpdateResult, SegmentRecord):
    """What :meth:`gravwave.twin.NoiseTwin.update` returns: the version and the segment's
    record (``noop``: the segment was consumed before; the record is the stored one)."""


class CleanerRevert(UpdateResult):
    """What :meth:`gravwave.twin.NoiseTwin.revert_cleaner` did.

    Attributes:
        model_ref: The cleaner made current.
        reverted_to: The version whose cleaner it is.
    """

    model_ref: str | None
    reverted_to: int


class NoiseSimulation(SimulationResult):
    """A what-if's answer: a segment's quality under the scenario, the twin unchanged.

    Attributes:
        gps_start: GPS start of the segment [s].
        gps_end: GPS end [s].
        gain_scale: Factor on the witnessed coupling.
        model_ref: The current cleaner.
        current: Quality with the current cleaner.
        candidate: Quality with the candidate cleaner, if one was given.
        reference: The twin's quality reference, if set.
        degraded: Whether the current cleaner's quality would count as degraded.
    """

    gps_start: float
    gps_end: float
    gain_scale: float
    model_ref: str | None
    current: Quality
    candidate: Quality | None
    reference: dict[str, float] | None
    degraded: bool


class NoiseTwinStatus(TwinStatus):
    """Where a noise twin stands: the core status and the twin's own state.

    Attributes:
        buffer_seconds: Length of the buffered input [s].
        buffer_segments: Segments buffered.
        reference: The quality reference.
        degraded_since: GPS start of the current degradation, if degraded.
        probation: The previous cleaner, while on probation.
        last_quality: The newest segment's numbers.
        policy: The policy.
    """

    buffer_seconds: float
    buffer_segments: int
    reference: dict[str, float] | None
    degraded_since: float | None
    probation: Probation | None
    last_quality: LastQuality | None
    policy: TwinPolicy


class NoiseInit(BaseModel):
    """``twins twin init DIR --kind gravwave --cleaner FILE [--policy JSON] [--cursor GPS]``."""

    model_config = ConfigDict(extra="forbid")

    cleaner: Path = Field(description="cleaner file (torch.save format, any registered kind)")
    policy: TwinPolicy = Field(
        default_factory=TwinPolicy,
        description="the policy as JSON, e.g. '{\"register_models\": false}'",
    )
    cursor: float | None = Field(
        None,
        allow_inf_nan=False,
        description="GPS time [s] the first segment must start at (default: any)",
    )


class NoiseUpdateOptions(BaseModel):
    """``twins twin update DIR --data FILE [FILE ...] [--channels A,B,...]``."""

    model_config = ConfigDict(extra="forbid")

    channels: list[str] | None = Field(
        None, description="channels to read, strain first, comma-separated (default: the twin's)"
    )

    @field_validator("channels", mode="before")
    @classmethod
    def _comma_separated(cls, v: object) -> object:
        if v is None:
            return v
        items = [v] if isinstance(v, str) else list(v)  # type: ignore[call-overload]
        text = ",".join(str(i) for i in items)
        names = [c.strip() for c in text.split(",")]
        if not all(names):
            raise ValueError(
                f"--channels {text!r}: an empty channel name; expected comma-separated names, "
                "strain first"
            )
        twice = sorted({c for c in names if names.count(c) > 1})
        if twice:
            raise ValueError(f"--channels {text!r}: {', '.join(twice)} given twice")
        return names


class NoiseScenario(BaseModel):
    """The what-if of ``twins twin simulate DIR [--data FILE] [--cleaner FILE] [--gain-scale F]``:
    a segment (default: the newest buffered one) with the witnessed coupling scaled by
    ``gain_scale`` ("what if the coupling gain drifted by this factor"), cleaned by the current
    cleaner and, if given, by a candidate."""

    model_config = ConfigDict(extra="forbid")

    data: Path | None = Field(None, description="segment file (default: newest buffered)")
    cleaner: Path | None = Field(None, description="candidate cleaner file to compare")
    gain_scale: float = Field(1.0, allow_inf_nan=False, description="coupling factor")
