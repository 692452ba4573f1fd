"""The noise twin's policy: how it judges quality, when it refits, where it registers models.

A policy is stored in the twin's state and hashed into its ``config_hash``; give one to
:meth:`gravwave.twin.NoiseTwin.init` (or ``twins twin init DIR --policy JSON``) as a
:class:`TwinPolicy` or its dict. A misspelt or out-of-range key is a one-line
:class:`~twins.errors.ConfigError` naming it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gravwave.gates import IngestBounds
from gravwave.training import CascadeTraining
from twins.errors import ConfigError

__all__ = ["TwinPolicy", "load_policy", "policy_hash"]


class TwinPolicy(BaseModel):
    """How the noise twin judges quality and when it refits.

    Attributes:
        degrade_threshold: Relative rise of a band's in-band ASD ratio over the model's
            reference ratio that marks the twin degraded (0.1 = 10 %).
        buffer_seconds: Length of the rolling buffer of recent input [s].
        min_refit_seconds: Data recorded since the degradation began needed to refit [s]
            (the newest segment is held out for evaluation and not counted).
        refit: ``"wiener"`` refits what the cleaner fits in process
            (:meth:`gravwave.cleaners.Cleaner.refit`: the Wiener filter, or a cascade's
            Wiener stage); ``"cascade"`` retrains a whole cascade (Wiener stage and network,
            :func:`gravwave.training.retrain_cascade`) on the buffered data; >= 1024 s of data
            recommended. A ``refit_fn`` given to the twin overrides both.
        cascade_refit: How a ``refit="cascade"`` retraining trains
            (:class:`gravwave.training.CascadeTraining`: windows, network, budget); bands
            and taps always come from the current cascade.
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
    cascade_refit: CascadeTraining = Field(default_factory=CascadeTraining)
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


def load_policy(policy: TwinPolicy | Mapping[str, Any] | None) -> TwinPolicy:
    """A validated policy from a :class:`TwinPolicy`, its dict, or None (the defaults).

    Raises:
        ConfigError: An unknown key or a bad value, in one line naming it.
    """
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


def policy_hash(policy: TwinPolicy) -> str:
    """First 16 hex digits of the SHA-256 of the policy's sorted JSON (the twin's config hash)."""
    text = json.dumps(policy.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
