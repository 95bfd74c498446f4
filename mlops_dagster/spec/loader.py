"""Load spec YAML files and folders, with every error pointing at file:line and a field path."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from mlops_dagster.errors import SpecError, SpecIssue
from mlops_dagster.spec.models import FeatureGroupsFile, FeatureGroupSpec, PipelineSpec

Loc = tuple[str | int, ...]

# libyaml's parser when PyYAML was built with it: the same nodes, marks and tag resolution as the
# pure-Python parser, about 15x faster (YAML parsing was most of `load_specs`' time). The two disagree
# on a few rare inputs (tabs, `?` and `!` inside flow collections, BOMs, line breaks other than `\n`),
# so a text holding any of these characters keeps the pure-Python parser and its verdict.
_FAST_LOADER: type | None = getattr(yaml, "CSafeLoader", None)
_PURE_ONLY = re.compile("[\t?!\r\ufeff\x85\u2028\u2029]")


@dataclass
class SourceMap:
    """Line numbers (1-based) of every key and item in one YAML file, by field path."""

    file: str
    lines: dict[Loc, int] = field(default_factory=dict)

    def line(self, loc: Loc) -> int | None:
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), None)

    def issue(self, loc: Loc, message: str) -> SpecIssue:
        return SpecIssue(self.file, self.line(loc), format_loc(loc), message)


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


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


def _compose(text: str) -> yaml.Node | None:
    if _FAST_LOADER is not None and not _PURE_ONLY.search(text):
        try:
            return yaml.compose(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
            pass  # errors (and any disagreement) come from the pure-Python parser, as before
    return yaml.compose(text, Loader=yaml.SafeLoader)


def read_yaml(path: Path) -> tuple[Any, SourceMap]:
    """Parse one YAML file into plain data plus a map of field path -> line."""
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
    if node is None:
        raise SpecError([SpecIssue(str(path), None, "", "file is empty")])
    issues: list[SpecIssue] = []
    data = _construct(node, (), smap, issues, yaml.SafeLoader(""))
    if issues:
        raise SpecError(issues)
    return data, smap


def _pydantic_issues(err: ValidationError, smap: SourceMap, prefix: Loc = ()) -> list[SpecIssue]:
    issues = []
    for e in err.errors():
        loc = (*prefix, *(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-"))))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required field is missing"
        issues.append(smap.issue(loc, msg))
    return issues


@dataclass
class LoadedFile:
    pipelines: list[tuple[PipelineSpec, SourceMap]] = field(default_factory=list)
    groups: list[tuple[int, FeatureGroupSpec, SourceMap]] = field(default_factory=list)


def parse_spec_file(path: Path, out: LoadedFile, issues: list[SpecIssue]) -> None:
    """Read one YAML file into `out`: a pipeline, or the groups of a `feature_groups:` file.

    Each spec keeps its file and source map, so later cross-file checks can name file:line. Problems
    are appended to `issues` (nothing raises): a caller reads every file and reports them together.
    """
    try:
        data, smap = read_yaml(path)
    except SpecError as e:
        issues.extend(e.issues)
        return
    if not isinstance(data, dict):
        issues.append(smap.issue((), "expected a mapping with `name:` (a pipeline) or `feature_groups:`"))
        return
    if "feature_groups" in data:
        try:
            parsed = FeatureGroupsFile.model_validate(data)
        except ValidationError as e:
            issues.extend(_pydantic_issues(e, smap))
            return
        for i, group in enumerate(parsed.feature_groups):
            group._source_file = path.resolve()
            group._where = (smap, ("feature_groups", i))
            out.groups.append((i, group, smap))
        return
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as e:
        issues.extend(_pydantic_issues(e, smap))
        return
    spec._source_file = path.resolve()
    spec._where = (smap, ())
    out.pipelines.append((spec, smap))


def duplicate_group_issue(group: FeatureGroupSpec, first: FeatureGroupSpec) -> SpecIssue:
    """`group` repeats the name of `first`: the issue points at `group`'s name and says where `first` is."""
    smap, loc = group._where
    first_map, first_loc = first._where
    return smap.issue(
        (*loc, "name"),
        f"duplicate feature group {group.name!r} (first declared in "
        f"{first_map.file}:{first_map.line((*first_loc, 'name'))})",
    )


def spec_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into the sorted list of YAML files they hold."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file()))
        elif p.is_file():
            files.append(p)
        else:
            raise SpecError([SpecIssue(str(p), None, "", "no such file or folder")])
    return files


def _cross_validate(loaded: LoadedFile) -> tuple[list[PipelineSpec], list[SpecIssue]]:
    issues: list[SpecIssue] = []
    pipelines: dict[str, tuple[PipelineSpec, SourceMap]] = {}
    for spec, smap in loaded.pipelines:
        if spec.name in pipelines:
            first = pipelines[spec.name][1]
            issues.append(
                smap.issue(
                    ("name",),
                    f"duplicate pipeline name {spec.name!r} "
                    f"(first declared in {first.file}:{first.line(('name',))})",
                )
            )
            continue
        pipelines[spec.name] = (spec, smap)
    groups: dict[str, tuple[int, FeatureGroupSpec, SourceMap]] = {}
    for i, group, smap in loaded.groups:
        if group.name in groups:
            issues.append(duplicate_group_issue(group, groups[group.name][1]))
            continue
        groups[group.name] = (i, group, smap)

    resolved: list[PipelineSpec] = []
    inputs_checked: set[str] = set()  # a group's inputs are checked once, however many consume it
    for spec, smap in pipelines.values():
        ds = spec.dataset
        mine: list[FeatureGroupSpec] = []
        for j, gname in enumerate(spec.features):
            if gname not in groups:
                known = ", ".join(sorted(groups)) or "none loaded"
                issues.append(
                    smap.issue(("features", j), f"unknown feature group {gname!r} (known: {known})")
                )
                continue
            gi, group, gmap = groups[gname]
            if spec.name not in group.consumers:
                issues.append(
                    smap.issue(
                        ("features", j),
                        f"feature group {gname!r} does not list "
                        f"{spec.name!r} in its consumers ({gmap.file}:"
                        f"{gmap.line(('feature_groups', gi, 'consumers'))})",
                    )
                )
            for k, source in enumerate(group.inputs):
                if gname not in inputs_checked and source not in pipelines:
                    issues.append(
                        gmap.issue(
                            ("feature_groups", gi, "inputs", k),
                            f"unknown pipeline {source!r} (needed by {spec.name!r})",
                        )
                    )
            inputs_checked.add(gname)
            if group.columns and ds.label in group.columns:
                issues.append(
                    gmap.issue(
                        ("feature_groups", gi, "columns"),
                        f"label {ds.label!r} of pipeline {spec.name!r} is used as a feature",
                    )
                )
            mine.append(group)
        if spec.model.features:
            for j, col in enumerate(spec.model.features):
                if col == ds.label:
                    issues.append(smap.issue(("model", "features", j), f"label {col!r} is used as a feature"))
                elif col in (ds.entity, ds.timestamp):
                    issues.append(
                        smap.issue(
                            ("model", "features", j),
                            f"{col!r} is the entity or timestamp column, not a feature",
                        )
                    )
        resolved.append(spec.with_feature_groups(tuple(mine)))
    return resolved, issues


def load_specs(*paths: str | Path) -> list[PipelineSpec]:
    """Load pipeline specs (and the feature groups they consume) from YAML files or folders.

    Raises:
        SpecError: listing every problem found, each as `file:line field.path: message`.
    """
    if not paths:
        raise SpecError([SpecIssue("<no paths>", None, "", "give at least one spec file or folder")])
    loaded = LoadedFile()
    issues: list[SpecIssue] = []
    for path in spec_files(paths):
        parse_spec_file(path, loaded, issues)
    specs, cross = _cross_validate(loaded)
    issues.extend(cross)
    if issues:
        raise SpecError(issues)
    return specs
