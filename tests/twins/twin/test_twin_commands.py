"""Flags built from a twin's pydantic models (twins.twin.commands)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from twins.errors import ConfigError
from twins.twin.commands import add_model_flags, model_from_args


class Box(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lo: float
    hi: float


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scale: float = Field(1.0, ge=0, description="a factor")
    months: int | None = None
    mode: Literal["fast", "slow"] = "fast"
    strict: bool = False
    names: list[str] = Field(default_factory=list)
    pair: tuple[int, int] | None = None
    where: Path | None = None
    box: Box | None = Field(None, json_schema_extra={"cli_nargs": 2})
    policy: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _box_from_list(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("box"), list):
            lo, hi = data["box"]
            data = {**data, "box": {"lo": lo, "hi": hi}}
        return data


class Needs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    run: Path


def _parse(model: type[BaseModel], argv: list[str]) -> BaseModel:
    ap = argparse.ArgumentParser(prog="t")
    add_model_flags(ap, model)
    return model_from_args(model, ap.parse_args(argv), "twins twin x DIR")


def test_defaults_are_the_models() -> None:
    assert _parse(Options, []) == Options()


def test_every_kind_of_field() -> None:
    opts = _parse(
        Options,
        [
            "--scale", "0.5", "--months", "3", "--mode", "slow", "--strict",
            "--names", "a", "b", "--pair", "1", "2", "--where", "/x",
            "--box", "1", "2.5", "--policy", '{"k": [1, 2]}',
        ],
    )  # fmt: skip
    assert opts == Options(
        scale=0.5,
        months=3,
        mode="slow",
        strict=True,
        names=["a", "b"],
        pair=(1, 2),
        where=Path("/x"),
        box=Box(lo=1, hi=2.5),
        policy={"k": [1, 2]},
    )
    assert _parse(Options, ["--no-strict"]).strict is False  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "words"),
    [(["--scale", "-1"], "--scale: Input should be greater than or equal to 0")],
)
def test_model_refusals_are_one_line_config_errors(argv: list[str], words: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(Options, argv)
    assert str(info.value) == f"twins twin x DIR: {words}"


@pytest.mark.parametrize(
    "argv",
    [["--mode", "medium"], ["--policy", "{bad"], ["--pair", "1"], ["--months", "x"]],
)
def test_bad_flag_values_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _parse(Options, argv)
    assert info.value.code == 2


def test_required_field_is_a_required_flag() -> None:
    with pytest.raises(SystemExit):
        _parse(Needs, [])
    assert _parse(Needs, ["--run", "r"]) == Needs(run=Path("r"))
