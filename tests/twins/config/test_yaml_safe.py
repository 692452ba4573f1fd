"""The strict YAML loader: alias bombs, recursion, depth and duplicate keys are refused while
the document is composed; ordinary anchors, aliases and merge keys still load."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
import yaml

from twins.config import load_config
from twins.config.yaml_safe import (
    MAX_DEPTH,
    MAX_EXPANDED_NODES,
    StrictSafeLoader,
    YAMLRefusal,
    describe_yaml_error,
    parse_yaml,
)
from twins.errors import ConfigError


def alias_bomb(levels: int = 9, fanout: int = 9, indent: str = "") -> str:
    """The "billion laughs" document: level k is a list of ``fanout`` aliases of level k-1,
    so the last level expands to ``fanout**levels`` strings (9**9 = 387 420 489)."""
    names = [f"l{k}" for k in range(levels)]
    lines = [f"{indent}{names[0]}: &{names[0]} [{', '.join(['lol'] * fanout)}]"]
    for prev, name in zip(names, names[1:], strict=False):
        lines.append(f"{indent}{name}: &{name} [{', '.join([f'*{prev}'] * fanout)}]")
    return "\n".join(lines) + "\n"


def compose_with(text: str, **limits: int) -> object:
    loader = StrictSafeLoader(text, **limits)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def test_alias_bomb_is_refused_fast_with_bounded_memory() -> None:
    bomb = alias_bomb()
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(YAMLRefusal, match="alias bomb") as info:
            parse_yaml(bomb)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Bounds: the loader composes about 20 distinct nodes and 45 alias references (the 6th
    # level, 597 871 expanded nodes, is the first over MAX_EXPANDED_NODES) and constructs no
    # value. That is a few ms and a few tens of kB (measured: 8 ms, 18 kB). Expanding once
    # would allocate 9**9 list slots, 8 bytes each: 3.1 GB and tens of seconds. 0.5 s and
    # 1 MiB leave a margin of 50x for a loaded CPU and allocator while staying three orders
    # of magnitude below any expansion.
    assert elapsed < 0.5
    assert peak < 2**20
    assert info.value.line == 6  # the level that first crosses the bound
    assert f"more than {MAX_EXPANDED_NODES} nodes" in info.value.message


def test_alias_bomb_in_a_free_form_field_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text("name: bomb\ntask:\n  params:\n" + alias_bomb(indent="    "))
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    assert str(info.value).startswith(f"{cfg} at line 9: the document expands to more than")
    flow = "{" + ", ".join(alias_bomb().strip().split("\n")) + "}"  # the same, on one line
    with pytest.raises(ConfigError, match="bad override 'task.params.x=.*alias bomb"):
        load_config(None, [f"task.params.x={flow}"])


def test_expansion_bound_is_exact() -> None:
    text = "a: &x [1, 2]\nb: *x\n"  # mapping 1 + a 1 + [1, 2] 3 + b 1 + *x 3 = 9 nodes
    assert compose_with(text, max_nodes=9) == {"a": [1, 2], "b": [1, 2]}
    with pytest.raises(YAMLRefusal, match="more than 8 nodes"):
        compose_with(text, max_nodes=8)


def test_depth_bound_is_exact() -> None:
    deepest = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    value: object = parse_yaml(deepest)
    for _ in range(MAX_DEPTH - 1):
        assert isinstance(value, list) and len(value) == 1
        value = value[0]
    assert value == []
    with pytest.raises(YAMLRefusal, match=f"nesting deeper than {MAX_DEPTH} levels"):
        parse_yaml("[" + deepest + "]")


def test_ordinary_anchors_aliases_and_merge_keys_load(tmp_path: Path) -> None:
    cfg = tmp_path / "anchors.yaml"
    cfg.write_text(
        "name: anchors\n"
        "train:\n"
        "  epochs: &n 4\n"
        "  checkpoint_every: *n\n"
        "  optimizer: &opt {name: adam, lr: 3.0e-3}\n"
        "  scheduler: {name: step, step_size: *n}\n"
    )
    loaded = load_config(cfg)
    assert (loaded.train.epochs, loaded.train.checkpoint_every) == (4, 4)
    assert loaded.train.scheduler.step_size == 4 and loaded.train.optimizer.lr == 3.0e-3
    merged = parse_yaml("base: &b {name: adam, lr: 3.0e-3}\nopt: {<<: *b, lr: 1.0e-2}\n")
    assert merged["opt"] == {"name": "adam", "lr": 1.0e-2}  # explicit key overrides the merge


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("a: &x [1, *x]\n", "alias *x refers to a node that contains it", 1),
        ("a: 1\nb: 2\na: 3\n", "duplicate key a at lines 1 and 3", 3),
        ("t:\n  o:\n    lr: 1\n    m: 2\n    lr: 3\n", "duplicate key t.o.lr at lines 3 and 5", 5),
        ("- {a: 1}\n- {b: 1, b: 2}\n", "duplicate key [1].b at lines 2 and 2", 2),
        ("1: a\n01: b\n", "duplicate key 1 at lines 1 and 2", 2),  # equal once resolved
        ("a: 1\nb: \x07\n", "unacceptable character #x0007", 2),
    ],
)
def test_refusals_name_the_line(text: str, message: str, line: int) -> None:
    with pytest.raises(YAMLRefusal) as info:
        parse_yaml(text)
    assert message in info.value.message and info.value.line == line
    assert describe_yaml_error(info.value) == (info.value.message, line)


def test_safe_loader_kept_no_arbitrary_tags() -> None:
    with pytest.raises(yaml.YAMLError) as info:
        parse_yaml("name: !!python/object/apply:os.system ['true']\n")
    problem, line = describe_yaml_error(info.value)
    assert "could not determine a constructor" in problem and line == 1
    assert issubclass(StrictSafeLoader, yaml.SafeLoader)
