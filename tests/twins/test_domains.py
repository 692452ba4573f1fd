"""Domain discovery: which demos `twins demo` runs, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

import twins.domains as d
from twins.errors import TwinsError


def _dom(name: str) -> d.Domain:
    return d.Domain(name=name, description=name, demo=lambda w, o: 0)


def test_demo_runs_science_domains_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    found = {n: _dom(n) for n in ("toy", "gravwave", "zeta", "hydrology")}
    monkeypatch.setattr(d, "domains", lambda: found)
    assert [x.name for x in d.demo_domains(None)] == ["hydrology", "gravwave", "zeta"]
    assert [x.name for x in d.demo_domains("toy")] == ["toy"]
    with pytest.raises(TwinsError, match="unknown domain 'nope'"):
        d.demo_domains("nope")


def test_toy_alone_and_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(d, "domains", lambda: {"toy": _dom("toy")})
    assert [x.name for x in d.demo_domains(None)] == ["toy"]
    monkeypatch.setattr(d, "domains", dict)
    with pytest.raises(TwinsError, match="no twins domain"):
        d.demo_domains(None)


def test_twin_domain_errors(tmp_path: Path) -> None:
    with pytest.raises(TwinsError, match="is not a twin"):
        d.twin_domain(tmp_path)
    (tmp_path / "twin.json").write_text("{broken")
    with pytest.raises(TwinsError, match="not a valid twin state"):
        d.twin_domain(tmp_path)


def test_installed_toy_domain_is_found() -> None:
    assert isinstance(d.domains()["toy"], d.Domain)
