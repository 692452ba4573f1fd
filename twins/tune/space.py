"""The ``tune:`` section of a study config: search space, scheduler and searcher.

A *study config* is a run config (:class:`~twins.config.schema.RunConfig`) with one
more top-level section, ``tune:``. Because ``RunConfig`` forbids unknown keys, the
section is split off before the run config is validated (:func:`load_study`)::

    name: toy-study
    task: {target: twins.examples.toy:ToyRegression, params: {length: 300}}
    train: {epochs: 3}
    tune:
      metric: val_loss
      mode: min
      num_samples: 8
      max_concurrent: 2
      scheduler: {name: asha, grace_period: 1, reduction_factor: 2}
      searcher: random            # or optuna, where installed
      space:
        train.optimizer.lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-2}
        task.params.hidden: {dist: choice, values: [16, 32]}
        train.batch_size: {dist: randint, low: 16, high: 128}

Space keys are dotted paths into the *resolved* run config (task parameters
included, defaults filled in). Distributions:

- ``uniform`` / ``loguniform``: floats in ``[low, high)`` (``loguniform`` needs
  ``low > 0``);
- ``randint`` / ``lograndint``: integers in ``[low, high]`` (both ends included);
- ``choice``: one of ``values``.

Every mistake is a :class:`~twins.errors.ConfigError` naming the file and the key.
"""

from __future__ import annotations

import copy
import math
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, model_validator

from twins.config.load import apply_overrides, read_yaml, validate
from twins.config.schema import RunConfig, StrictModel
from twins.errors import ConfigError

DIST_NAMES = ("uniform", "loguniform", "randint", "lograndint", "choice")


class _Range(StrictModel):
    """A numeric range; ``low < high`` (``low > 0`` for log distributions)."""

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        low, high = self.low, self.high  # type: ignore[attr-defined]
        if not low < high:
            raise ValueError(f"low ({low}) must be less than high ({high})")
        if self.dist.startswith("log") and low <= 0:  # type: ignore[attr-defined]
            raise ValueError(f"low ({low}) must be > 0 for a log distribution")
        return self


class Uniform(_Range):
    """Float uniform in ``[low, high)``."""

    dist: Literal["uniform"]
    low: float
    high: float


class LogUniform(_Range):
    """Float log-uniform in ``[low, high)``, ``low > 0``."""

    dist: Literal["loguniform"]
    low: float
    high: float


class RandInt(_Range):
    """Integer uniform in ``[low, high]`` (both included)."""

    dist: Literal["randint"]
    low: int
    high: int


class LogRandInt(_Range):
    """Integer log-uniform in ``[low, high]`` (both included), ``low > 0``."""

    dist: Literal["lograndint"]
    low: int
    high: int


class Choice(StrictModel):
    """One of ``values`` (numbers, strings, booleans or lists)."""

    dist: Literal["choice"]
    values: list[Any] = Field(min_length=1)


Dist = Annotated[Uniform | LogUniform | RandInt | LogRandInt | Choice, Field(discriminator="dist")]


class SchedulerSpec(StrictModel):
    """Trial scheduler.

    Attributes:
        name: ``asha`` (early stopping of poor trials) or ``fifo`` (run every trial out).
        grace_period: Epochs every trial runs before ASHA may stop it.
        reduction_factor: ASHA keeps the best ``1 / reduction_factor`` at each rung.
        max_t: Epoch budget of a trial (default: ``train.epochs``).
    """

    name: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1)
    max_t: int | None = Field(None, ge=1)


class TuneConfig(StrictModel):
    """The ``tune:`` section of a study config.

    Attributes:
        metric: Per-epoch metric the study optimises (a validation metric; the test
            split is never used for selection).
        mode: ``min`` or ``max``.
        num_samples: Number of trials.
        max_concurrent: Trials running at once.
        cpus_per_trial: CPUs reserved for each trial (also its torch threads).
        scheduler: The trial scheduler (ASHA by default).
        searcher: ``random`` (Ray's variant generator) or ``optuna`` (TPE; needs optuna).
        seed: Seed of the searcher; ``None`` for a random one.
        space: Dotted key of the resolved run config to its distribution.
    """

    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    num_samples: int = Field(8, ge=1)
    max_concurrent: int = Field(2, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    searcher: Literal["random", "optuna"] = "random"
    seed: int | None = 0
    space: dict[str, Dist] = Field(min_length=1)


# --------------------------------------------------------------------------- errors


def _loc(loc: Sequence[Any]) -> str:
    """``tune.space['a.b'].low`` style key for an error location inside ``tune:``."""
    out = "tune"
    parts = list(loc)
    i = 0
    while i < len(parts):
        part = parts[i]
        if part == "space" and i + 1 < len(parts):
            out += f".space[{parts[i + 1]!r}]"
            i += 2
            # skip the union-member tag pydantic inserts (e.g. 'loguniform')
            if i < len(parts) and parts[i] in DIST_NAMES:
                i += 1
            continue
        out += f".{part}"
        i += 1
    return out


def _problem(err: Mapping[str, Any]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "missing required key"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        got = err.get("input", {}).get("dist") if isinstance(err.get("input"), dict) else None
        what = f"unknown distribution {got!r}" if got is not None else "no 'dist' given"
        return f"{what}; expected one of {', '.join(DIST_NAMES)}"
    msg = str(err["msg"]).removeprefix("Value error, ")
    inp = err.get("input")
    if isinstance(inp, str | int | float | bool):
        msg += f" (got {inp!r})"
    return msg


def parse_tune(data: Mapping[str, Any], source: str) -> TuneConfig:
    """Validate a raw ``tune:`` mapping.

    Raises:
        ConfigError: One line per problem, ``<source>: tune.space['key']: <problem>``.
    """
    try:
        return TuneConfig.model_validate(data)
    except ValidationError as exc:
        parts = [f"{source}: {_loc(e['loc'])}: {_problem(e)}" for e in exc.errors()]
        raise ConfigError("; ".join(parts), "see twins/tune/space.py for the format") from None


# --------------------------------------------------------------------------- sampling


def get_dotted(data: Mapping[str, Any], key: str) -> Any:
    """Value at dotted ``key`` of a nested mapping.

    Raises:
        KeyError: If a part of the path is missing.
    """
    node: Any = data
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise KeyError(key)
        node = node[part]
    return node


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` in a nested dict in place (the parent must exist)."""
    parts = key.split(".")
    node = get_dotted(data, ".".join(parts[:-1])) if len(parts) > 1 else data
    node[parts[-1]] = value


def apply_sample(cfg: RunConfig, sample: Mapping[str, Any], source: str = "<trial>") -> RunConfig:
    """The run config with dotted-key values replaced and validated again.

    Args:
        cfg: Resolved base config.
        sample: Dotted key to value (a point of the search space, or any override).
        source: Name used in error messages.

    Raises:
        ConfigError: A key does not exist or a value is invalid for it.
    """
    data = cfg.model_dump(mode="json")
    for key, value in sample.items():
        try:
            set_dotted(data, key, value)
        except KeyError:
            raise ConfigError(f"{source}: {key}: unknown key in the resolved config") from None
    return validate(data, source, {k: f"{k}={v!r}" for k, v in sample.items()})


def corners(space: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Two extreme points of the space: every ``low`` / first value, every ``high`` / last."""
    lo: dict[str, Any] = {}
    hi: dict[str, Any] = {}
    for key, d in space.items():
        if isinstance(d, Choice):
            lo[key], hi[key] = d.values[0], d.values[-1]
        else:
            lo[key], hi[key] = d.low, d.high
    return [lo, hi]


def sample_point(space: Mapping[str, Any], rng: random.Random) -> dict[str, Any]:
    """One random point of the space (pure Python; Tune samples its own in studies)."""
    out: dict[str, Any] = {}
    for key, d in space.items():
        if isinstance(d, Choice):
            out[key] = rng.choice(d.values)
        elif isinstance(d, Uniform):
            out[key] = rng.uniform(d.low, d.high)
        elif isinstance(d, LogUniform):
            out[key] = math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
        elif isinstance(d, RandInt):
            out[key] = rng.randint(d.low, d.high)
        else:
            out[key] = int(round(math.exp(rng.uniform(math.log(d.low), math.log(d.high)))))
    return out


def check_space(cfg: RunConfig, tune_cfg: TuneConfig, source: str) -> None:
    """Check every space key exists in ``cfg`` and both corners of the space validate.

    Raises:
        ConfigError: Naming the offending key (and value).
    """
    data = cfg.model_dump(mode="json")
    for key in tune_cfg.space:
        try:
            get_dotted(data, key)
        except KeyError:
            raise ConfigError(
                f"{source}: tune.space[{key!r}]: unknown key: {key} is not in the resolved "
                "run config",
                "use a dotted path such as train.optimizer.lr or task.params.hidden",
            ) from None
    for point in corners(tune_cfg.space):
        for key, value in point.items():
            try:
                apply_sample(cfg, {key: value}, source)
            except ConfigError as exc:
                raise ConfigError(
                    f"{source}: tune.space[{key!r}]: value {value!r} is invalid for the run "
                    f"config ({exc})"
                ) from None


def to_tune_space(space: Mapping[str, Any]) -> dict[str, Any]:
    """The Ray Tune search space (``ray.tune`` sampling objects) keyed by dotted key."""
    from ray import tune

    out: dict[str, Any] = {}
    for key, d in space.items():
        if isinstance(d, Choice):
            out[key] = tune.choice(d.values)
        elif isinstance(d, Uniform):
            out[key] = tune.uniform(d.low, d.high)
        elif isinstance(d, LogUniform):
            out[key] = tune.loguniform(d.low, d.high)
        elif isinstance(d, RandInt):
            out[key] = tune.randint(d.low, d.high + 1)  # Tune's upper bound is exclusive
        else:
            out[key] = tune.lograndint(d.low, d.high + 1)
    return out


# --------------------------------------------------------------------------- loading


def split_study(
    data: Mapping[str, Any], source: str, overrides: Sequence[str] = ()
) -> tuple[RunConfig, TuneConfig]:
    """Split a raw study mapping into a validated run config and ``tune:`` section.

    Overrides starting with ``tune.`` go to the tune section, the rest to the run config.

    Raises:
        ConfigError: No ``tune:`` section, or any problem in either part.
    """
    data = copy.deepcopy(dict(data))
    raw_tune = data.pop("tune", None)
    if raw_tune is None:
        raise ConfigError(
            f"{source}: no 'tune:' section", "add tune: {space: {...}} (see twins/tune/spaces)"
        )
    if not isinstance(raw_tune, dict):
        raise ConfigError(f"{source}: tune: expected a mapping, got {type(raw_tune).__name__}")
    tune_over = [o.removeprefix("tune.") for o in overrides if o.startswith("tune.")]
    run_over = [o for o in overrides if not o.startswith("tune.")]
    apply_overrides(raw_tune, tune_over)
    origins = apply_overrides(data, run_over)
    cfg = validate(data, source, origins)
    tune_cfg = parse_tune(raw_tune, source)
    check_space(cfg, tune_cfg, source)
    return cfg, tune_cfg


def load_study(path: str | Path, overrides: Sequence[str] = ()) -> tuple[RunConfig, TuneConfig]:
    """Load a study config: the run config and its ``tune:`` section, both validated.

    Args:
        path: YAML file holding a run config plus a ``tune:`` section.
        overrides: ``section.key=value`` strings; ``tune.*`` ones apply to the tune section.

    Returns:
        ``(run config, tune config)``.

    Raises:
        ConfigError: One line naming the file and the key at fault.
    """
    return split_study(read_yaml(Path(path)), str(path), overrides)
