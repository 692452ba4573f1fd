"""``twins twin init|update|simulate|status|history|rollback``, built from a twin's models.

Each field of a twin's ``InitOptions``, ``UpdateOptions`` and ``Scenario`` (pydantic models)
becomes a flag: ``precip_scale`` -> ``--precip-scale``; booleans are switches; lists and
fixed-length tuples take several values; a field whose values are a model or a mapping takes
JSON, or as many values as its ``json_schema_extra={"cli_nargs": N}`` says (the model's own
validator turns them into the object). Only flags given are passed, so defaults are the
model's. A value the model refuses is a one-line config error naming the flag (exit 2).
"""

from __future__ import annotations

import argparse
import json
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from twins.errors import ConfigError
from twins.twin.contract import EXIT_NOTHING_NEW, Twin, rollback
from twins.twin.records import UpdateRecord
from twins.twin.store import TwinStore

__all__ = ["COMMANDS", "history_lines", "model_from_args", "run_store_command", "run_twin_command"]

#: The twin subcommands, in the order ``--help`` lists them.
COMMANDS = ("init", "update", "simulate", "status", "history", "rollback")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not valid JSON: {text!r}") from None


def _add_field(ap: argparse.ArgumentParser, name: str, info: FieldInfo) -> None:
    ann = _unwrap_optional(info.annotation)
    origin = typing.get_origin(ann)
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
    kw["help"] = info.description or ""
    if info.is_required():
        kw["required"] = True
    if "cli_nargs" in extra:
        kw.update(nargs=int(extra["cli_nargs"]), type=float, metavar=extra.get("cli_metavar"))
    elif ann is bool:
        kw["action"] = argparse.BooleanOptionalAction
    elif origin is Literal:
        choices = list(typing.get_args(ann))
        kw.update(choices=choices, type=type(choices[0]))
    elif origin in (list, tuple, Sequence) or ann in (list, tuple):
        args = [a for a in typing.get_args(ann) if a is not Ellipsis]
        item = args[0] if args else str
        fixed = origin is tuple and Ellipsis not in typing.get_args(ann)
        kw.update(nargs=len(args) if fixed else "+", type=item if item in (int, float) else str)
    elif ann in (int, float, str):
        kw["type"] = ann
    elif ann is Path:
        kw["type"] = Path
    else:  # nested models, mappings, unions: JSON
        kw.update(type=_json_value, metavar="JSON")
    if kw.get("metavar") is None:
        kw.pop("metavar", None)
    ap.add_argument(_flag(name), **kw)


def add_model_flags(ap: argparse.ArgumentParser, model: type[BaseModel]) -> None:
    """Add one flag per field of ``model`` to ``ap``."""
    for name, info in model.model_fields.items():
        _add_field(ap, name, info)


def model_from_args(model: type[BaseModel], ns: argparse.Namespace, where: str) -> BaseModel:
    """Validate the flags of ``model`` found in ``ns``.

    Raises:
        ConfigError: The model refuses a value (one line naming the flag).
    """
    given = {n: getattr(ns, n) for n in model.model_fields if hasattr(ns, n)}
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(p) for p in err["loc"]]
        flag = _flag(loc[0]) if loc else "(options)"
        sub = "." + ".".join(loc[1:]) if len(loc) > 1 else ""
        raise ConfigError(f"{where}: {flag}{sub}: {err['msg']}") from None


def run_twin_command(twin_cls: type[Twin], cmd: str, twin_dir: Path, argv: Sequence[str]) -> int:
    """Run one twin subcommand for a twin class.

    Args:
        twin_cls: The domain's :class:`~twins.twin.contract.Twin` subclass.
        cmd: One of :data:`COMMANDS`.
        twin_dir: The twin directory.
        argv: The arguments after the directory.

    Returns:
        The exit status: 0, or :data:`EXIT_NOTHING_NEW` for an update that found nothing new.

    Raises:
        TwinsError: Config (2), data (3) or twin (4) errors, printed by the CLI on one line.
    """
    prog = f"twins twin {cmd} {twin_dir}"
    ap = argparse.ArgumentParser(prog=prog)
    if cmd == "init":
        ap.add_argument("--kind", help="the twin's domain (already chosen here)")
        add_model_flags(ap, twin_cls.InitOptions)
    elif cmd == "update":
        ap.add_argument(
            "--data",
            nargs="+",
            type=Path,
            required=twin_cls.update_needs_data,
            default=[],
            help="new data files, in order",
        )
        add_model_flags(ap, twin_cls.UpdateOptions)
        ap.add_argument("--wait", action="store_true", help="wait for a running update")
    elif cmd == "simulate":
        add_model_flags(ap, twin_cls.Scenario)
    elif cmd in ("status", "history", "rollback"):
        _add_store_flags(ap, cmd)
    else:
        raise ConfigError(f"unknown twin command {cmd!r}; one of {', '.join(COMMANDS)}")
    ns = ap.parse_args(list(argv))
    if cmd == "init":
        options = model_from_args(twin_cls.InitOptions, ns, prog)
        twin = twin_cls.create(twin_dir, options)
        print(twin.status().to_json())
        return 0
    twin = twin_cls.open(twin_dir)
    if cmd == "update":
        opts = model_from_args(twin_cls.UpdateOptions, ns, prog)
        result = twin.update(list(ns.data), opts, wait=ns.wait)
        print(result.to_json())
        return EXIT_NOTHING_NEW if result.noop else 0
    if cmd == "simulate":
        print(twin.simulate(model_from_args(twin_cls.Scenario, ns, prog)).to_json())
        return 0
    if cmd == "status":
        status = twin.status()
        print(status.to_json() if ns.json else status.text)
        return 0
    if cmd == "history":
        print("\n".join(history_lines(twin.history(), ns.json)))
        return 0
    print(twin.rollback(ns.to, wait=ns.wait).to_json())
    return 0


def _add_store_flags(ap: argparse.ArgumentParser, cmd: str) -> None:
    """The flags of the core's own subcommands: status, history and rollback."""
    if cmd == "rollback":
        ap.add_argument("--to", type=int, required=True, metavar="VERSION", help="version")
        ap.add_argument("--wait", action="store_true", help="wait for a running update")
    else:
        ap.add_argument("--json", action="store_true", help="JSON instead of text")


def history_lines(records: Sequence[UpdateRecord], as_json: bool = False) -> list[str]:
    """One line per version: text (version, action, time, cursor, model) or JSON."""
    if as_json:
        return [json.dumps(r.to_dict()) for r in records]
    lines = []
    for r in records:
        note = f"  (restores v{r.summary.get('restored')})" if r.action == "restore" else ""
        lines.append(
            f"v{r.version:<4} {r.action:<8} {r.finished}  cursor {r.cursor_after or '-'}"
            f"  model {r.model_ref or '-'}{note}"
        )
    return lines


def run_store_command(store: TwinStore, cmd: str, argv: Sequence[str]) -> int:
    """``history`` and ``rollback`` on a bare store: a twin whose domain is not installed
    (or offers no twin class) can still be inspected and restored."""
    if cmd not in ("history", "rollback"):
        raise ConfigError(f"twins twin {cmd}: needs the twin's domain installed")
    ap = argparse.ArgumentParser(prog=f"twins twin {cmd} {store.path}")
    _add_store_flags(ap, cmd)
    ns = ap.parse_args(list(argv))
    if cmd == "history":
        print("\n".join(history_lines([store.record(0), *store.history()], ns.json)))
    else:
        print(rollback(store, ns.to, wait=ns.wait).to_json())
    return 0
