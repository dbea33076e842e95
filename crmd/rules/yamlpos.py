"""YAML read with positions: where every key, value and list item of a document starts.

A PyYAML safe loader records the position of each node by its JSON path, reports a key
repeated in one mapping, and turns syntax and encoding errors into located RuleErrors, so
every later check can point at `file:line:col`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from crmd.errors import RuleError

# Where a part of a document is: the mapping keys and list indexes down to it.
JsonPath = tuple[str | int, ...]

_YAML_HINTS = {
    "found character '\\t' that cannot start any token": "indent with spaces, not tabs",
    "mapping values are not allowed here": "check the indentation, and quote text that "
    "contains ': '",
    "could not find expected ':'": "check the indentation and the ':' after each key",
}


@dataclass
class YamlSource:
    """One YAML file as read: its data and the 1-based (line, col) where each part starts."""

    name: str
    text: str = ""
    data: Any = None
    failed: bool = False
    values: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    keys: dict[JsonPath, tuple[int, int]] = field(default_factory=dict)
    blocks: set[JsonPath] = field(default_factory=set)  # `|` and `>` scalars
    duplicates: list[tuple[JsonPath, tuple[int, int], str]] = field(default_factory=list)

    def where(self, path: JsonPath, at_key: bool = False) -> tuple[int, int]:
        """Where the value at `path` starts (or its key), else its deepest known parent."""
        if at_key and path in self.keys:
            return self.keys[path]
        while path and path not in self.values:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def error(
        self, message: str, path: JsonPath, *, at_key: bool = False, rule_id: str | None = None
    ) -> RuleError:
        line, col = self.where(path, at_key)
        return RuleError(message, self.name, line, col, rule_id)


def _mark(mark: yaml.Mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


class _PositionLoader(yaml.SafeLoader):
    """A safe loader that records where every mapping key, value and list item starts.

    Keys are kept as written (`on:` stays "on", not True) and a key repeated in one mapping
    is reported rather than silently overriding the first.
    """

    def __init__(self, source: YamlSource) -> None:
        super().__init__(source.text)
        self.source = source

    def load_with_positions(self) -> Any:
        node = self.get_single_node()
        return None if node is None else self._value(node, (), frozenset())

    def _value(self, node: yaml.Node, path: JsonPath, active: frozenset[int]) -> Any:
        self.source.values[path] = _mark(node.start_mark)
        if isinstance(node, yaml.ScalarNode):
            if node.style in ("|", ">"):
                self.source.blocks.add(path)
            return self.construct_object(node, deep=True)
        if id(node) in active:
            raise yaml.constructor.ConstructorError(
                None, None, "an alias refers to the value that contains it", node.start_mark
            )
        active = active | {id(node)}
        if isinstance(node, yaml.SequenceNode):
            return [self._value(item, (*path, i), active) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.MappingNode)
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise yaml.constructor.ConstructorError(
                    None, None, "a key must be a plain name", key_node.start_mark
                )
            key = key_node.value
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key in seen:
                self.source.duplicates.append(
                    (
                        (*path, key),
                        _mark(key_node.start_mark),
                        f"duplicate key '{key}' (first on line {seen[key]}); YAML would keep "
                        f"only the last one: remove or merge them",
                    )
                )
            seen.setdefault(key, key_node.start_mark.line + 1)
        self.flatten_mapping(node)  # `<<: *defaults` merge keys
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            self.source.keys[(*path, key)] = _mark(key_node.start_mark)
            result[key] = self._value(value_node, (*path, key), active)
            if isinstance(value_node, yaml.ScalarNode) and value_node.value == "":
                # `key:` with nothing after it (or ''): the key is the place to point at.
                self.source.values[(*path, key)] = self.source.keys[(*path, key)]
        return result


def read_yaml(path: Path, name: str, errors: list[RuleError]) -> YamlSource:
    """Read one YAML file as `name`; a problem goes to `errors` and marks it failed."""
    source = YamlSource(name)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        errors.append(RuleError(f"cannot read the file: {exc.strerror}", name))
        source.failed = True
        return source
    try:
        source.text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - raw.rfind(b"\n", 0, exc.start)
        errors.append(RuleError("not UTF-8 text: save the file as UTF-8", name, line, col))
        source.failed = True
        return source
    loader = _PositionLoader(source)
    try:
        source.data = loader.load_with_positions()
    except yaml.MarkedYAMLError as exc:
        errors.append(_yaml_error(exc, name))
        source.failed = True
    except yaml.reader.ReaderError as exc:
        before = source.text[: exc.position]
        errors.append(
            RuleError(
                f"character {exc.character!r} is not allowed in YAML: remove it",
                name,
                before.count("\n") + 1,
                len(before) - (before.rfind("\n") + 1) + 1,
            )
        )
        source.failed = True
    finally:
        loader.dispose()
    return source


def _yaml_error(exc: yaml.MarkedYAMLError, name: str) -> RuleError:
    problem = exc.problem or exc.context or "not valid YAML"
    message = f"YAML syntax error: {problem}"
    if exc.context and exc.problem and exc.context_mark is not None:
        message += f" ({exc.context} on line {exc.context_mark.line + 1})"
    if problem in _YAML_HINTS:
        message += f"; {_YAML_HINTS[problem]}"
    mark = exc.problem_mark or exc.context_mark
    line, col = _mark(mark) if mark is not None else (None, None)
    return RuleError(message, name, line, col)
