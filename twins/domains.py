"""Domains plug into the core through the ``twins.domains`` entry-point group.

A domain package declares, in its ``pyproject.toml``::

    [project.entry-points."twins.domains"]
    hydrology = "hydrology.domain:DOMAIN"

and the object it names is a :class:`Domain`. The core never imports a domain
by name: ``twins demo`` and ``twins twin ...`` find it here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
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
class Domain:
    """What a domain offers the command line.

    Attributes:
        name: Short name (also the ``kind`` of its twins).
        description: One line for listings.
        demo: ``demo(workdir, overrides) -> exit code``: the end-to-end demo.
        twin: The domain's :class:`~twins.twin.contract.Twin` subclass; the core builds
            ``twins twin init|update|simulate|status|history|rollback`` from its models.
            ``None`` if the domain has no twin.
    """

    name: str
    description: str
    demo: Callable[[Path, list[str]], int]
    twin: type[Twin] | None = None


def domains() -> dict[str, Domain]:
    """Every installed domain, by name."""
    found: dict[str, Domain] = {}
    for ep in entry_points(group="twins.domains"):
        obj = ep.load()
        if not isinstance(obj, Domain):
            raise TwinsError(f"entry point twins.domains:{ep.name} is not a twins Domain")
        found[obj.name] = obj
    return found


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
