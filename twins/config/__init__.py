"""Strict run configuration: pydantic models, YAML loading and CLI overrides."""

from twins.config.load import (
    apply_overrides,
    check_workdir,
    config_hash,
    load_config,
    parse_override,
    resolve_target,
    to_dict,
    to_yaml,
    validate,
)
from twins.config.schema import (
    DistributedConfig,
    EnergyConfig,
    OptimizerConfig,
    RunConfig,
    SchedulerConfig,
    StrictModel,
    TaskRef,
    TrackingConfig,
    TrainConfig,
)

__all__ = [
    "DistributedConfig",
    "EnergyConfig",
    "OptimizerConfig",
    "RunConfig",
    "SchedulerConfig",
    "StrictModel",
    "TaskRef",
    "TrackingConfig",
    "TrainConfig",
    "apply_overrides",
    "check_workdir",
    "config_hash",
    "load_config",
    "parse_override",
    "resolve_target",
    "to_dict",
    "to_yaml",
    "validate",
]
