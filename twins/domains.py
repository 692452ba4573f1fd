"""Domains plug into the core through the ``twins.domains`` entry-point group.

A domain package declares, in its ``pyproject.toml``::

    [project.entry-points."twins.domains"]
    hydrology = "hydrology.domain:DOMAIN"

and the object it names is a :class:`Domain`. The core never imports a domain
by name: ``twins demo``, ``twins twin ...`` and a domain's own commands
(``twins <domain> <command> ...``, :class:`DomainCommand`) find it here.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from twins.errors import TwinsError
from twins.twin.contract import Twin
from twins.twin.errors import TwinKindError, TwinNotFoundError

#: Order in which ``twins demo`` runs the domains when none is named.
DEMO_PREFERENCE = ("hydrology", "gravwave", "toy")
#: Domains that only exercise the core; run by ``twins demo`` only when nothing else is installed.
CORE_ONLY = ("toy",)


@dataclass(frozen=True)
class DomainCommand:
    """A command of a domain's own, run as ``twins <domain> <name> ...``.

    Attributes:
        help: One line for ``twins <domain> -h``.
        configure: Adds the command's arguments to its parser.
        run: Runs the command on the parsed arguments; returns the exit code. A user mistake
            raises a :class:`~twins.errors.TwinsError` (one line, its exit code).
    """

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Domain:
    """What a domain offers the command line.

    Attributes:
        name: Short name (also the ``kind`` of its twins).
        description: One line for listings.
        demo: ``demo(workdir, overrides) -> exit code``: the end-to-end demo.
        twin: The domain's :class:`~twins.twin.contract.Twin` subclass; the core builds
            ``twins twin init|update|simulate|status|history|rollback`` from its models.
            ``None`` if the domain has no twin.
        commands: The domain's own commands by name: ``twins <domain> <name> ...``.
    """

    name: str
    description: str
    demo: Callable[[Path, list[str]], int]
    twin: type[Twin] | None = None
    commands: Mapping[str, DomainCommand] = field(default_factory=dict)


def domains() -> dict[str, Domain]:
    """Every installed domain, by name."""
    found: dict[str, Domain] = {}
    for ep in entry_points(group="twins.domains"):
        obj = ep.load()
        if not isinstance(obj, Domain):
            raise TwinsError(f"entry point twins.domains:{ep.name} is not a twins Domain")
        found[obj.name] = obj
    return found


def load_domain(name: str) -> Domain:
    """The installed domain ``name``, importing that domain only.

    Raises:
        TwinsError: No such domain installed, or its entry point is not a :class:`Domain`.
    """
    for ep in entry_points(group="twins.domains", name=name):
        obj = ep.load()
        if not isinstance(obj, Domain):
            raise TwinsError(f"entry point twins.domains:{ep.name} is not a twins Domain")
        return obj
    known = sorted({ep.name for ep in entry_points(group="twins.domains")})
    raise TwinsError(f"unknown domain {name!r}; installed: {', '.join(known)}")


def get_domain(name: str | None) -> Domain:
    """The named domain, or the preferred installed one when ``name`` is ``None``.

    Raises:
        TwinsError: Unknown name, or no domain installed.
    """
    found = domains()
    if name is None:
        for pref in DEMO_PREFERENCE:
            if pref in found:
                return found[pref]
        raise TwinsError("no twins domain is installed", "pip install -e . in the repository")
    if name not in found:
        raise TwinsError(f"unknown domain {name!r}; installed: {', '.join(sorted(found))}")
    return found[name]


def demo_domains(name: str | None) -> list[Domain]:
    """The domains ``twins demo`` runs: the named one, else every science domain in
    :data:`DEMO_PREFERENCE` order (the core-only toy domain when no other is installed).

    Raises:
        TwinsError: Unknown name, or no domain installed.
    """
    if name is not None:
        return [get_domain(name)]
    found = domains()
    order = sorted(found, key=lambda n: (DEMO_PREFERENCE + (n,)).index(n))
    science = [found[n] for n in order if n not in CORE_ONLY]
    if science:
        return science
    if not found:
        raise TwinsError("no twins domain is installed", "pip install -e . in the repository")
    return [found[n] for n in order]


def find_domain(kind: str) -> Domain:
    """The installed domain named ``kind``, which must have a twin.

    Raises:
        TwinKindError: No such domain installed, or it has no twin.
    """
    found = domains()
    domain = found.get(kind)
    if domain is None:
        raise TwinKindError(
            f"no installed domain {kind!r} has twins; installed: {', '.join(sorted(found))}",
            hint="pip install the domain's package, or check --kind",
        )
    if domain.twin is None:
        raise TwinKindError(f"domain {kind!r} has no twin")
    return domain


def twin_domain(twin_dir: Path) -> Domain:
    """The domain that owns the twin in ``twin_dir`` (its ``twin.json`` ``kind``).

    Raises:
        TwinNotFoundError: No twin there.
        TwinKindError: Its domain is not installed or has no twin.
    """
    state = twin_dir / "twin.json"
    if not state.is_file():
        raise TwinNotFoundError(f"{twin_dir} is not a twin (no twin.json)")
    try:
        kind = json.loads(state.read_text())["kind"]
    except (ValueError, KeyError) as exc:
        raise TwinKindError(f"{state} is not a valid twin state ({exc})") from None
    return find_domain(kind)


def run_domain_command(name: str, argv: list[str]) -> int:
    """``twins <name> <command> ARGS``: parse ``argv`` with the domain's commands and run one.

    Args:
        name: An installed domain.
        argv: The command name and its arguments (``["clean", "frames/", ...]``);
            ``-h`` alone lists the domain's commands.

    Returns:
        The command's exit code.

    Raises:
        TwinsError: Unknown domain, or a domain without commands.
        SystemExit: A usage error (exit 2) or ``-h``, as argparse does.
    """
    domain = load_domain(name)
    parser = argparse.ArgumentParser(
        prog=f"twins {name}", description=f"commands of the {name} domain: {domain.description}"
    )
    if not domain.commands:
        raise TwinsError(f"domain {name!r} has no commands of its own", "see twins --help")
    sub = parser.add_subparsers(dest="domain_cmd", required=True, metavar="COMMAND")
    for cmd_name, cmd in domain.commands.items():
        sp = sub.add_parser(cmd_name, help=cmd.help, description=cmd.help)
        cmd.configure(sp)
        sp.set_defaults(domain_func=cmd.run)
    args = parser.parse_args(argv)
    return int(args.domain_func(args) or 0)
