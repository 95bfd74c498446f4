"""Load spec YAML files and folders, with every error pointing at file:line and a field path.

`read_spec_files` reads files into unlinked specs (each knowing its file:line); `resolve_specs`
(spec/checks.py) links pipelines to their feature groups and checks them together; `load_specs` is
the two in a row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from mlops_dagster.errors import SpecError, SpecIssue
from mlops_dagster.spec.checks import resolve_specs
from mlops_dagster.spec.environments import EnvironmentsFile, EnvironmentSpec, check_environments
from mlops_dagster.spec.models import FeatureGroupsFile, FeatureGroupSpec, PipelineSpec
from mlops_dagster.spec.source_map import Loc, SourceMap
from mlops_dagster.spec.yaml_reader import read_yaml


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
class SpecFiles:
    """What YAML files hold, before pipelines and groups are linked (`resolve_specs` does that).

    Attributes:
        pipelines: One per pipeline file, each located at its file (issues name file:line).
        groups: The entries of `feature_groups:` files, each located at its entry.
        environments: The entries of `environments:` files, each located at its entry.
        issues: Problems found while reading (unreadable file, malformed YAML, invalid field).
    """

    pipelines: list[PipelineSpec] = field(default_factory=list)
    groups: list[FeatureGroupSpec] = field(default_factory=list)
    environments: list[EnvironmentSpec] = field(default_factory=list)
    issues: list[SpecIssue] = field(default_factory=list)

    def pending(self) -> list[SpecIssue]:
        """Reading issues plus the environments' own cross-checks (duplicates, unknown pipelines)."""
        names = {p.name for p in self.pipelines} if self.pipelines else None
        return [*self.issues, *check_environments(self.environments, names)]


def _read_environments(data: dict[str, object], smap: SourceMap, path: Path, out: SpecFiles) -> None:
    """The entries of an `environments:` file, each checked on its own (one bad entry spoils no other)."""
    try:
        parsed = EnvironmentsFile.model_validate(data)
    except ValidationError as e:
        out.issues.extend(_pydantic_issues(e, smap))
        return
    for name, body in parsed.environments.items():
        where: Loc = ("environments", name)
        if body and "name" in body:
            out.issues.append(smap.issue((*where, "name"), "unknown key (the entry's key is its name)"))
            continue
        try:
            env = EnvironmentSpec.model_validate({"name": name, **(body or {})})
        except ValidationError as e:
            out.issues.extend(_pydantic_issues(e, smap, where))
            continue
        out.environments.append(env.located(path.resolve(), smap, where))


def _read_file(path: Path, out: SpecFiles) -> None:
    """Read one YAML file into `out`: a pipeline, the groups of a `feature_groups:` file, or the
    entries of an `environments:` file."""
    try:
        data, smap = read_yaml(path)
    except SpecError as e:
        out.issues.extend(e.issues)
        return
    if not isinstance(data, dict):
        out.issues.append(
            smap.issue(
                (), "expected a mapping with `name:` (a pipeline), `feature_groups:` or `environments:`"
            )
        )
        return
    if "environments" in data:
        _read_environments(data, smap, path, out)
        return
    if "feature_groups" in data:
        try:
            parsed = FeatureGroupsFile.model_validate(data)
        except ValidationError as e:
            out.issues.extend(_pydantic_issues(e, smap))
            return
        out.groups.extend(
            group.located(path.resolve(), smap, ("feature_groups", i))
            for i, group in enumerate(parsed.feature_groups)
        )
        return
    try:
        spec = PipelineSpec.model_validate(data)
    except ValidationError as e:
        out.issues.extend(_pydantic_issues(e, smap))
        return
    out.pipelines.append(spec.located(path.resolve(), smap))


def spec_files(paths: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders into the sorted list of YAML files they hold.

    Raises:
        SpecError: a path is neither a file nor a folder.
    """
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


def read_spec_files(*paths: str | Path) -> SpecFiles:
    """Read YAML files and folders into pipelines and feature groups, not yet linked or cross-checked.

    Every file is read, and its problems collected in `SpecFiles.issues` (nothing raises for them),
    so that one report lists them all.

    Raises:
        SpecError: a path is neither a file nor a folder.
    """
    out = SpecFiles()
    for path in spec_files(paths):
        _read_file(path, out)
    return out


def load_specs(*paths: str | Path) -> list[PipelineSpec]:
    """Load pipeline specs (and the feature groups they consume) from YAML files or folders.

    Raises:
        SpecError: listing every problem found, each as `file:line field.path: message`.
    """
    if not paths:
        raise SpecError([SpecIssue("<no paths>", None, "", "give at least one spec file or folder")])
    files = read_spec_files(*paths)
    return resolve_specs(files.pipelines, files.groups, pending=files.pending())
