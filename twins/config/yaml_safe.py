"""A strict, bounded YAML reader for configs.

:class:`StrictSafeLoader` is :class:`yaml.SafeLoader` (plain YAML types only, no
arbitrary tags) that also refuses, while the document is *composed* (before any
value is constructed, so before an alias could be expanded):

- a document whose expanded size exceeds :data:`MAX_EXPANDED_NODES` nodes, each alias
  counting as the full size of the node it refers to (a "billion laughs" alias bomb
  of 9 levels of 9 aliases expands to 9**9 = 387 million nodes; it is refused at its
  6th level, after composing about 20 nodes and 45 alias references);
- an alias that refers to a node containing it (a recursive structure);
- nesting deeper than :data:`MAX_DEPTH` levels (the composer recurses per level);
- a key given twice in one mapping, at any depth (YAML requires unique keys; PyYAML
  would silently keep the last one).

Each refusal is a :class:`YAMLRefusal` carrying a one-line message and the 1-based
line where it was found.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_EXPANDED_NODES = 100_000
"""Most nodes a config may hold once every alias is expanded. The largest config the
project ships has a few hundred; 100 000 small Python objects take about 10 MB, while
the 9-level alias bomb would need 387 million (several GB)."""

MAX_DEPTH = 64
"""Deepest nesting of mappings and sequences (the shipped configs nest 4 levels)."""

MAX_FILE_BYTES = 8 * 2**20
"""Largest config file read (8 MiB: 100 000 nodes at up to 80 bytes each)."""

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YAMLRefusal(yaml.YAMLError):
    """A YAML document refused by :class:`StrictSafeLoader`.

    Attributes:
        message: One line saying what was refused and the bound.
        line: 1-based line of the offending node, or ``None``.
    """

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class StrictSafeLoader(yaml.SafeLoader):
    """:class:`yaml.SafeLoader` with bounded alias expansion, bounded depth and unique keys.

    Args:
        stream: The YAML text.
        max_nodes: Bound on the expanded node count (default :data:`MAX_EXPANDED_NODES`).
        max_depth: Bound on the nesting depth (default :data:`MAX_DEPTH`).
    """

    def __init__(
        self, stream: str, max_nodes: int = MAX_EXPANDED_NODES, max_depth: int = MAX_DEPTH
    ) -> None:
        super().__init__(stream)
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self._expanded: dict[int, int] = {}  # id(node) -> node count with aliases expanded
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        """Compose one node, refusing recursive aliases, deep nesting and large expansion."""
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._expanded:
                raise YAMLRefusal(
                    f"alias *{event.anchor} refers to a node that contains it "
                    "(recursive structures are not allowed in a config)",
                    event.start_mark.line + 1,
                )
            return super().compose_node(parent, index)  # the anchored node, already counted
        self._depth += 1
        if self._depth > self.max_depth:
            mark = self.peek_event().start_mark
            raise YAMLRefusal(f"nesting deeper than {self.max_depth} levels", mark.line + 1)
        node = super().compose_node(parent, index)
        self._depth -= 1
        size = 1
        if isinstance(node, SequenceNode):
            size += sum(self._expanded[id(child)] for child in node.value)
        elif isinstance(node, MappingNode):
            size += sum(self._expanded[id(k)] + self._expanded[id(v)] for k, v in node.value)
        if size > self.max_nodes:
            raise YAMLRefusal(
                f"the document expands to more than {self.max_nodes} nodes (counting each alias "
                f"as the node it refers to; {size} in the node starting here): refused as an "
                "alias bomb",
                node.start_mark.line + 1,
            )
        self._expanded[id(node)] = size
        return node

    def get_single_node(self) -> Node | None:
        """Compose the document and check that no mapping repeats a key."""
        node = super().get_single_node()
        if node is not None:
            self._check_unique_keys(node)
        return node

    def _check_unique_keys(self, root: Node) -> None:
        """Refuse a key given twice in one mapping, naming its dotted path and both lines."""
        stack: list[tuple[Node, str]] = [(root, "")]
        seen_nodes: set[int] = set()
        while stack:
            node, path = stack.pop()
            if id(node) in seen_nodes:
                continue  # an aliased node: checked once
            seen_nodes.add(id(node))
            if isinstance(node, SequenceNode):
                stack.extend((child, f"{path}[{i}]") for i, child in enumerate(node.value))
                continue
            if not isinstance(node, MappingNode):
                continue
            first_line: dict[Any, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                    continue
                key = self.construct_object(key_node)
                dotted = f"{path}.{key}" if path else str(key)
                line = key_node.start_mark.line + 1
                try:
                    earlier = first_line.get(key)
                except TypeError:  # unhashable: the constructor reports it
                    continue
                if earlier is not None:
                    raise YAMLRefusal(
                        f"duplicate key {dotted} at lines {earlier} and {line} "
                        "(a key may appear once per section)",
                        line,
                    )
                first_line[key] = line
                stack.append((value_node, dotted))


def parse_yaml(text: str) -> Any:
    """Parse one YAML document with :class:`StrictSafeLoader`.

    Args:
        text: The document.

    Returns:
        The plain Python value (``None`` for an empty document).

    Raises:
        YAMLRefusal: Alias bomb, recursive alias, deep nesting, a duplicate key or a
            control character.
        yaml.YAMLError: Any other YAML error (syntax, unknown tag, several documents).
    """
    try:
        loader = StrictSafeLoader(text)  # the reader checks every character here
    except yaml.reader.ReaderError as exc:  # it only marks a character position
        line = text.count("\n", 0, exc.position) + 1
        raise YAMLRefusal(
            f"unacceptable character #x{exc.character:04x} ({exc.reason})", line
        ) from None
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def describe_yaml_error(exc: yaml.YAMLError) -> tuple[str, int | None]:
    """A YAML error as ``(one-line problem, 1-based line or None)``."""
    if isinstance(exc, YAMLRefusal):
        return exc.message, exc.line
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    problem = ", ".join(str(p) for p in parts if p) or str(exc)
    return " ".join(problem.split()), line
