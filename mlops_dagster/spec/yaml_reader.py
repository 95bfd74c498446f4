"""Read one YAML file into plain data plus a source map, refusing input that would not fit in memory.

A spec is small: a few levels deep, a few thousand values. Two kinds of YAML are far bigger once read
than written, and are refused before any Python object is built, each as one `file:line field:` issue:

- aliases that expand exponentially ("billion laughs": each anchor repeats the previous one ten times)
  or refer to themselves: the composed node graph shares repeated nodes, so its expanded size is counted
  on the graph (each node once) against `MAX_VALUES`;
- nesting deeper than `MAX_DEPTH`, which would otherwise overflow Python's recursion limit: libyaml
  stops at 1,000 levels by itself; the pure-Python parser is checked on its event stream (an iterative
  state machine) before its recursive composer runs.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.events import (
    CollectionStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
    SequenceEndEvent,
)

from mlops_dagster.errors import SpecError, SpecIssue
from mlops_dagster.spec.source_map import Loc, SourceMap, format_loc

MAX_DEPTH = 64  # levels of nesting (a real spec has fewer than 10)
MAX_VALUES = 100_000  # mappings, lists and scalars once aliases are expanded (a real spec has thousands)

# libyaml's parser when PyYAML was built with it: the same nodes, marks and tag resolution as the
# pure-Python parser, about 15x faster (YAML parsing was most of `load_specs`' time). The two disagree
# on a few rare inputs (tabs, `?` and `!` inside flow collections, BOMs, line breaks other than `\n`),
# so a text holding any of these characters keeps the pure-Python parser and its verdict.
_FAST_LOADER: type | None = getattr(yaml, "CSafeLoader", None)
_PURE_ONLY = re.compile("[\t?!\r\ufeff\x85\u2028\u2029]")
_TOP_KEY = re.compile(r"^([^\s#:'\"-][^:\n]*):", re.MULTILINE)  # a top-level key, for where libyaml stopped


class _Refused(Exception):
    """The YAML is too big once read; `line` and `loc` say where."""

    def __init__(self, line: int | None, loc: Loc, message: str):
        super().__init__(message)
        self.line, self.loc, self.message = line, loc, message


def _too_deep(line: int | None, loc: Loc) -> _Refused:
    return _Refused(line, loc[:1], f"nested deeper than {MAX_DEPTH} levels; a spec needs only a few")


@dataclass
class _Open:
    """A collection being read from the event stream."""

    mapping: bool
    count: int = 0  # nodes read in it so far (keys and values, for a mapping)
    key: Any = None  # the last key read, for a mapping


def _scan_depth(text: str, loader: type) -> None:
    """Refuse deep nesting from a parser's event stream (iterative), at the first level too deep."""
    stack: list[_Open] = []
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, MappingEndEvent | SequenceEndEvent):
            stack.pop()
        elif isinstance(event, NodeEvent):
            if isinstance(event, CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise _too_deep(
                        event.start_mark.line + 1, tuple(o.key if o.mapping else o.count for o in stack)
                    )
                stack.append(_Open(mapping=isinstance(event, MappingStartEvent)))
                continue
            if stack and stack[-1].mapping and stack[-1].count % 2 == 0 and isinstance(event, ScalarEvent):
                stack[-1].key = event.value
        else:
            continue
        if stack:
            stack[-1].count += 1


def _check_event_depth(text: str) -> None:
    """Refuse deep nesting before the pure-Python composer, which recurses once per level, runs.

    libyaml's event stream is scanned when it is there: it is fast and agrees on nesting. Should it
    refuse the text, the pure-Python parser's own stream is scanned (slower on very deep input).
    """
    if _FAST_LOADER is not None:
        try:
            _scan_depth(text, _FAST_LOADER)
            return
        except yaml.YAMLError:
            pass
    _scan_depth(text, yaml.SafeLoader)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _top_field(root: yaml.Node, heaviest: dict[int, int]) -> tuple[Loc, int]:
    """The top-level field whose value weighs most in `heaviest` (by node id), and its line."""
    if isinstance(root, yaml.MappingNode) and root.value:
        key, _ = max(root.value, key=lambda pair: heaviest.get(id(pair[1]), 0))
        return (str(key.value),), key.start_mark.line + 1
    return (), root.start_mark.line + 1


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph whose expanded tree is too big, too deep, or infinite (a recursive alias).

    Sizes and heights are computed once per node (post-order, iteratively), so shared nodes cost once.
    """
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    open_nodes: set[int] = set()  # on the current path: meeting one again is a cycle
    stack: list[tuple[yaml.Node, bool, Loc]] = [(root, False, ())]  # node, closing, top-level field
    while stack:
        node, closing, top = stack.pop()
        key = id(node)
        if closing:
            kids = _children(node)
            size[key] = min(MAX_VALUES + 1, 1 + sum(size[id(k)] for k in kids))
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            open_nodes.discard(key)
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise _Refused(node.start_mark.line + 1, top, "an alias refers to itself (the value is infinite)")
        open_nodes.add(key)
        stack.append((node, True, top))
        if node is root and isinstance(root, yaml.MappingNode):
            stack.extend((kid, False, (str(k.value),)) for k, v in root.value for kid in (k, v))
        else:
            stack.extend((kid, False, top) for kid in _children(node) if id(kid) not in size)
    if size[id(root)] > MAX_VALUES:
        loc, line = _top_field(root, size)
        raise _Refused(
            line,
            loc,
            f"holds more than {MAX_VALUES:,} values once aliases are expanded; a spec needs far fewer",
        )
    if height[id(root)] > MAX_DEPTH:
        loc, _ = _top_field(root, height)
        node, depth = root, 1
        while depth <= MAX_DEPTH:  # follow the tallest branch down to the first level too deep
            node = max(_children(node), key=lambda kid: height[id(kid)])
            depth += 1
        raise _too_deep(node.start_mark.line + 1, loc)


def _compose(text: str) -> yaml.Node | None:
    if _FAST_LOADER is not None and not _PURE_ONLY.search(text):
        try:
            node = yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            if mark is not None and "nesting depth" in str(getattr(e, "problem", "")):  # > 1,000 levels
                with contextlib.suppress(yaml.YAMLError):  # its events name the level past MAX_DEPTH
                    _scan_depth(text, _FAST_LOADER)
                keys = _TOP_KEY.findall(text, 0, mark.index)  # else libyaml read ahead: say where it stopped
                raise _too_deep(mark.line + 1, (keys[-1].strip(),) if keys else ()) from None
            # other errors (and any disagreement) come from the pure-Python parser, as before
        else:
            if node is not None:
                _check_expansion(node)
            return node
    _check_event_depth(text)  # the pure-Python composer recurses once per level
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:  # only if the two parsers disagreed on the depth
        raise _too_deep(None, ()) from None
    if node is not None:
        _check_expansion(node)
    return node


def _construct(
    node: yaml.Node, loc: Loc, smap: SourceMap, issues: list[SpecIssue], scalars: yaml.SafeLoader
) -> Any:
    smap.lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(
                    SpecIssue(
                        smap.file, key_node.start_mark.line + 1, format_loc(loc), "keys must be plain names"
                    )
                )
                continue
            key = key_node.value
            if key in out:
                issues.append(
                    SpecIssue(
                        smap.file, key_node.start_mark.line + 1, format_loc((*loc, key)), "duplicate key"
                    )
                )
            smap.lines[(*loc, key)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, (*loc, key), smap, issues, scalars)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            smap.lines[(*loc, i)] = item.start_mark.line + 1
            items.append(_construct(item, (*loc, i), smap, issues, scalars))
        return items
    return scalars.construct_object(node, deep=True)  # scalars keep YAML's own typing


def read_yaml(path: Path) -> tuple[Any, SourceMap]:
    """Parse one YAML file into plain data plus a map of field path -> line.

    Raises:
        SpecError: the file cannot be read, is empty, is not YAML, repeats a key, or would be too big
            once read (alias bomb, deep nesting); one issue each, with file:line.
    """
    smap = SourceMap(str(path))
    try:
        text = path.read_text()
    except OSError as e:
        raise SpecError([SpecIssue(str(path), None, "", f"cannot read file: {e.strerror}")]) from e
    try:
        node = _compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError([SpecIssue(str(path), line, "", f"malformed YAML: {problem}")]) from e
    except _Refused as e:
        raise SpecError([SpecIssue(str(path), e.line, format_loc(e.loc), e.message)]) from None
    if node is None:
        raise SpecError([SpecIssue(str(path), None, "", "file is empty")])
    issues: list[SpecIssue] = []
    data = _construct(node, (), smap, issues, yaml.SafeLoader(""))
    if issues:
        raise SpecError(issues)
    return data, smap
