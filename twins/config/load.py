"""Load, override, validate and dump run configs.

Every failure is a :class:`~twins.errors.ConfigError` whose message is one line
naming the key and where it came from (the file or the override).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from twins.config.schema import RunConfig
from twins.errors import ConfigError


def _dotted(loc: Sequence[Any]) -> str:
    return ".".join(str(p) for p in loc)


def _describe(err: Mapping[str, Any]) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    if err["type"] == "missing":
        return "missing required key"
    msg = str(err["msg"])
    inp = err.get("input")
    if isinstance(inp, str | int | float | bool) or inp is None:
        msg += f" (got {inp!r})"
    return msg


def format_validation_error(
    exc: ValidationError, source: str, prefix: str = "", overrides: Mapping[str, str] | None = None
) -> str:
    """Render a pydantic error as one line: ``<source>: <key>: <problem>``.

    Args:
        exc: The validation error.
        source: Name of the config file (or ``"<defaults>"``).
        prefix: Dotted prefix prepended to every key (for nested task params).
        overrides: Map from dotted key to the override text that set it, so an error
            caused by an override names the override instead of the file.

    Returns:
        One line; several problems are joined by ``"; "``.
    """
    parts = []
    for err in exc.errors():
        key = _dotted([*([prefix] if prefix else []), *err["loc"]])
        origin = source
        for okey, text in (overrides or {}).items():
            if key == okey or key.startswith(okey + ".") or okey.startswith(key + "."):
                origin = f"override '{text}'"
        parts.append(f"{origin}: {key}: {_describe(err)}")
    return "; ".join(parts)


def parse_override(text: str) -> tuple[list[str], Any]:
    """Parse ``section.key=value``; the value is read as YAML (``3``, ``1.0e-3``, ``[1, 2]``).

    Raises:
        ConfigError: If the text has no ``=`` or an empty key.
    """
    key, sep, raw = text.partition("=")
    path = key.strip().split(".")
    if not sep or not key.strip() or any(not p for p in path):
        raise ConfigError(
            f"bad override {text!r}: expected section.key=value", "e.g. train.epochs=3"
        )
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"bad override {text!r}: value is not valid YAML ({exc})") from None
    return path, value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, str]:
    """Apply ``section.key=value`` overrides to a raw config dict in place.

    Returns:
        Map from dotted key to the override text, for error messages.

    Raises:
        ConfigError: If an override is malformed or descends into a non-mapping.
    """
    origins: dict[str, str] = {}
    for text in overrides:
        path, value = parse_override(text)
        node: Any = data
        for i, part in enumerate(path[:-1]):
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                where = ".".join(path[: i + 1])
                raise ConfigError(f"bad override {text!r}: {where} is not a section")
            node = nxt
        node[path[-1]] = value
        origins[".".join(path)] = text
    return origins


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with the safe loader.

    Raises:
        ConfigError: If the file is missing, unreadable, not YAML or not a mapping.
    """
    if not path.is_file():
        raise ConfigError(f"config file {path} not found", "check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", exc)
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def resolve_target(target: str) -> Any:
    """Import ``package.module:Attr`` and return the attribute.

    Raises:
        ConfigError: If the module cannot be imported or has no such attribute.
    """
    mod_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ConfigError(f"task.target: cannot import {mod_name!r} ({exc})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"task.target: module {mod_name!r} has no {attr!r}") from None


def validate(
    data: Mapping[str, Any], source: str = "<defaults>", overrides: Mapping[str, str] | None = None
) -> RunConfig:
    """Validate a raw config dict, including the task's own parameters.

    Returns:
        The config with ``task.params`` replaced by the task's fully resolved params.

    Raises:
        ConfigError: On any unknown key, wrong type or bad value.
    """
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, overrides=overrides)) from None
    task_cls = resolve_target(cfg.task.target)
    params_model: type[BaseModel] | None = getattr(task_cls, "Params", None)
    if params_model is None:
        raise ConfigError(f"{source}: task.target {cfg.task.target!r} has no Params model")
    try:
        params = params_model.model_validate(cfg.task.params)
    except ValidationError as exc:
        msg = format_validation_error(exc, source, prefix="task.params", overrides=overrides)
        raise ConfigError(msg) from None
    cfg.task.params = params.model_dump(mode="json")
    return cfg


def load_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> RunConfig:
    """Load a run config from YAML (or ``base``), apply overrides and validate it.

    Args:
        path: YAML file; ``None`` starts from ``base`` (or the built-in defaults).
        overrides: ``section.key=value`` strings, applied in order.
        base: Raw config dict used when ``path`` is ``None``.

    Returns:
        The validated :class:`RunConfig`.

    Raises:
        ConfigError: One line naming the key and the file or override at fault.
    """
    if path is not None:
        data = read_yaml(Path(path))
        source = str(path)
    else:
        data = copy.deepcopy(dict(base or {}))
        source = "<defaults>"
    origins = apply_overrides(data, overrides)
    return validate(data, source, origins)


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """The resolved config as plain JSON-compatible data."""
    return cfg.model_dump(mode="json")


def to_yaml(cfg: RunConfig) -> str:
    """The resolved config as YAML that :func:`load_config` reads back unchanged."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def config_hash(cfg: RunConfig | Mapping[str, Any]) -> str:
    """SHA-256 (hex, first 16 digits) of the canonical JSON of a resolved config."""
    data = to_dict(cfg) if isinstance(cfg, RunConfig) else dict(cfg)
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
