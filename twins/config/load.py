"""Load, override, validate and dump run configs.

Every failure is a :class:`~twins.errors.ConfigError` whose message is one line
naming the key and where it came from (the file or the override).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from twins.config.schema import RunConfig
from twins.config.yaml_safe import MAX_FILE_BYTES, YAMLRefusal, describe_yaml_error, parse_yaml
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
    if (isinstance(inp, str | int | float | bool) or inp is None) and repr(inp) not in msg:
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
    return " ".join("; ".join(parts).split())  # one line, whatever the messages hold


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
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        problem, _ = describe_yaml_error(exc)
        raise ConfigError(f"bad override {text!r}: value is not valid YAML ({problem})") from None
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
    """Read a YAML mapping with the strict safe loader (:mod:`twins.config.yaml_safe`).

    Raises:
        ConfigError: One line naming the file (and the line where known) if it is missing,
            not a regular file, unreadable, larger than
            :data:`~twins.config.yaml_safe.MAX_FILE_BYTES`, empty or only comments, not
            UTF-8, not YAML, refused by the loader (duplicate key, alias bomb, deep
            nesting) or not a mapping.
    """
    if not path.exists():
        raise ConfigError(f"config file {path} not found", "check the path")
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory, expected a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} is not a regular file, expected a YAML file")
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{path}: larger than {MAX_FILE_BYTES} bytes, the most a config file may hold"
        )
    if not raw:
        raise ConfigError(f"{path}: the config file is empty (0 bytes)", "give at least a name")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"{path} at line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at byte "
            f"offset {exc.start})",
            "save the file as UTF-8",
        ) from None
    try:
        data = parse_yaml(text)
    except yaml.YAMLError as exc:
        problem, line = describe_yaml_error(exc)
        where = f" at line {line}" if line is not None else ""
        if isinstance(exc, YAMLRefusal):
            raise ConfigError(f"{path}{where}: {problem}") from None
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    if data is None:
        raise ConfigError(
            f"{path}: the config holds no settings (only comments, blank lines or null)",
            "give at least a name; '{}' accepts every default",
        )
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def resolve_target(target: str, source: str = "") -> Any:
    """Import ``package.module:Attr`` and return the attribute.

    Args:
        target: The reference.
        source: Config file (or ``"<defaults>"``) named in errors; ``""`` for none.

    Raises:
        ConfigError: If the module cannot be imported (or fails while importing) or has no
            such attribute.
    """
    where = f"{source}: task.target" if source else "task.target"
    mod_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"{where}: cannot import {mod_name!r} ({reason})") from None
    except Exception as exc:  # a broken or relative module named by the user
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise ConfigError(f"{where}: importing {mod_name!r} failed ({reason})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{where}: module {mod_name!r} has no {attr!r}") from None


def _task_params_model(target: str, source: str) -> type[BaseModel]:
    """The ``Params`` model of the task class ``target`` names.

    Raises:
        ConfigError: If the target is not a task class with a pydantic ``Params`` model.
    """
    task_cls = resolve_target(target, source)
    if not isinstance(task_cls, type) or not all(
        callable(getattr(task_cls, m, None)) for m in ("splits", "build_model")
    ):
        raise ConfigError(
            f"{source}: task.target: {target!r} is not a task class (expected a subclass of "
            "twins.task.Task)"
        )
    params_model = getattr(task_cls, "Params", None)
    if not (isinstance(params_model, type) and issubclass(params_model, BaseModel)):
        raise ConfigError(f"{source}: task.target {target!r} has no Params model")
    return params_model


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
    params_model = _task_params_model(cfg.task.target, source)
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


def check_workdir(cfg: RunConfig) -> None:
    """Refuse a run directory that cannot be created: the nearest existing one of
    ``<workdir>/<name>`` and its parents must be a writable directory.

    Creates nothing; call it before writing anything for a run.

    Raises:
        ConfigError: Naming ``workdir`` and the path that is a file or not writable.
    """
    run_dir = cfg.run_dir
    for path in (run_dir, *run_dir.parents):
        try:
            if not path.exists():
                continue
        except OSError as exc:  # e.g. a name too long for the file system
            raise ConfigError(f"workdir: cannot use {run_dir} ({exc.strerror})") from None
        if not path.is_dir():
            what = f"the run directory {path} (workdir/name)" if path == run_dir else str(path)
            raise ConfigError(
                f"workdir: {what} exists and is not a directory; expected workdir "
                f"{cfg.workdir} to be a directory or not to exist yet",
                "point workdir=... at a directory",
            )
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(
                f"workdir: cannot create or write the run directory {run_dir}: "
                f"{path} is not writable",
                "point workdir=... at a writable directory",
            )
        return


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
