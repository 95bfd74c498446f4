"""`MLPipelineComponent`: a pipeline spec written as the attributes of a Dagster component.

A thin YAML front over the factory, as dagster-sling's component is over `sling_assets`. The
attributes are the fields of `PipelineSpec` (CONTRACT.md section 2), validated by the spec models
themselves (unknown keys are errors, reported by Dagster with the defs.yaml line), plus where the
pipeline's feature groups come from. `load` turns them into a `PipelineSpec` rooted at the
component's folder with the feature groups it consumes attached (what `load_specs` returns for a spec
file), and `build_defs` calls `build_definitions`; everything else is the factory's.

    type: mlops_dagster.MLPipelineComponent
    attributes:
      name: churn
      dataset: {source: {uri: data/churn.csv}, entity: customer_id, timestamp: event_time, label: churned}
      features: [customer_activity]
      model: {task: classification, estimator: sklearn.linear_model.LogisticRegression, metric: roc_auc}
      feature_group_files: [../feature_groups.yaml]
      define_feature_groups: true     # false in every other component that uses the same groups
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import dagster as dg
from pydantic import BaseModel, Field, create_model

from mlops_dagster.component_scaffolder import MLPipelineComponentScaffolder
from mlops_dagster.errors import SpecError, SpecIssue
from mlops_dagster.factory.build import build_definitions

# `feature_groups:` files are read the way `load_specs` reads them, so their errors carry file:line
# exactly as for spec files.
from mlops_dagster.spec.loader import (
    LoadedFile,
    SourceMap,
    duplicate_group_issue,
    parse_spec_file,
    spec_files,
)
from mlops_dagster.spec.models import FeatureGroupSpec, PipelineSpec, StrictModel

if TYPE_CHECKING:
    from dagster_shared.yaml_utils.source_position import SourcePositionTree


class FeatureGroupAttributes(StrictModel):
    """The attributes a component adds to a pipeline spec: where its feature groups come from."""

    feature_groups: list[FeatureGroupSpec] = Field(
        default_factory=list,
        description="Feature groups defined inline (the items of a `feature_groups:` file)",
    )
    feature_group_files: list[str] = Field(
        default_factory=list,
        description="YAML files (or folders of them) holding `feature_groups:`, relative to this folder",
    )
    define_feature_groups: bool = Field(
        True,
        description=(
            "Define the `features/<g>` assets of the groups this pipeline consumes. When several "
            "components share a group, set this to false in all but one: they reference it by key."
        ),
    )


# The attributes model: the fields of `PipelineSpec` (same types, defaults, constraints and
# descriptions, so the component cannot drift from spec files) followed by the fields above.
_FIELDS: dict[str, Any] = {
    name: (info.annotation, info)
    for name, info in {**PipelineSpec.model_fields, **FeatureGroupAttributes.model_fields}.items()
}
MLPipelineAttributes: type[StrictModel] = create_model(
    "MLPipelineAttributes",
    __base__=StrictModel,
    __module__=__name__,
    __doc__="Attributes of `MLPipelineComponent`: a pipeline spec plus its feature-group sources.",
    **_FIELDS,
)


@dg.scaffold_with(MLPipelineComponentScaffolder)
@dataclass(frozen=True)
class MLPipelineComponent(dg.Component):
    """One ML pipeline (dataset -> features -> training set -> candidate -> champion), from YAML.

    `load` resolves the YAML attributes into a `PipelineSpec`, exactly what `load_specs` returns for
    a spec file: rooted at the component's folder (relative paths resolve there) and with the
    feature groups it consumes attached. `build_defs` hands it to `build_definitions`.

    Values are taken literally, as in spec files (no `{{ }}` templating). Every component binds
    `mlops_io_manager` to one shared default `ParquetIOManager` (storage under `$DAGSTER_HOME`),
    so a project's components merge into one code location.

    Attributes:
        spec: the pipeline spec, with its consumed feature groups attached.
        define_feature_groups: define the consumed groups' `features/<g>` assets here; false to
            reference assets that another component defines.
    """

    spec: PipelineSpec
    define_feature_groups: bool = True

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        return MLPipelineAttributes

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> Self:
        values = dict(attributes if attributes is not None else MLPipelineAttributes())
        return cls(spec=resolve_spec(values, context), define_feature_groups=values["define_feature_groups"])

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_definitions(
            self.spec,
            define_feature_groups=self.define_feature_groups,
        )


def resolve_spec(attributes: Mapping[str, Any], context: dg.ComponentLoadContext) -> PipelineSpec:
    """The `PipelineSpec` of a component's attributes, rooted at its folder, groups attached.

    Raises:
        SpecError: a feature-group file is missing or invalid, a group is declared twice, or the
            pipeline uses a group that is unknown or does not list it among its consumers; each
            issue names the file, line and field.
    """
    folder = context.path if context.path.is_dir() else context.path.parent
    tree = context.resolution_context.source_position_tree
    defs_file = (Path(tree.position.filename) if tree else folder / "defs.yaml").resolve()
    where = (_source_map(defs_file, tree), ("attributes",))
    spec = PipelineSpec(**{name: attributes[name] for name in PipelineSpec.model_fields})
    spec._source_file = defs_file  # relative paths in the spec resolve against the component's folder
    spec._where = where
    groups = _feature_groups(attributes["feature_groups"], attributes["feature_group_files"], where)
    return spec.with_feature_groups(_consumed_groups(spec, groups))


Where = tuple[SourceMap, tuple[str | int, ...]]


def _source_map(file: Path, tree: SourcePositionTree | None) -> SourceMap:
    """The loader's field-path -> line map, from the positions Dagster read the YAML with."""
    smap = SourceMap(str(file))

    def walk(node: SourcePositionTree, loc: tuple[str | int, ...]) -> None:
        smap.lines[loc] = node.position.start.line
        for key, child in node.children.items():
            walk(child, (*loc, key))

    if tree is not None:
        walk(tree, ())
    return smap


def _feature_groups(
    inline: Sequence[FeatureGroupSpec], files: Sequence[str], where: Where
) -> dict[str, FeatureGroupSpec]:
    """Inline groups and those of `feature_groups:` files (read as `load_specs` reads them), by name."""
    smap, prefix = where
    folder = Path(smap.file).parent
    issues: list[SpecIssue] = []
    loaded = LoadedFile()
    for i, group in enumerate(inline):
        group._source_file = Path(smap.file)
        group._where = (smap, (*prefix, "feature_groups", i))
    for i, name in enumerate(files):
        path = (folder / name).resolve()
        if not path.exists():
            issues.append(smap.issue((*prefix, "feature_group_files", i), f"no such file or folder: {path}"))
            continue
        for file in spec_files([path]):
            parse_spec_file(file, loaded, issues)
    for _, file_map in loaded.pipelines:
        issues.append(file_map.issue((), "holds a pipeline, not `feature_groups:` (feature_group_files)"))
    groups: dict[str, FeatureGroupSpec] = {}
    for group in [*inline, *(g for _, g, _ in loaded.groups)]:
        if group.name in groups:
            issues.append(duplicate_group_issue(group, groups[group.name]))
            continue
        groups[group.name] = group
    if issues:
        raise SpecError(issues)
    return groups


def _consumed_groups(
    spec: PipelineSpec, groups: Mapping[str, FeatureGroupSpec]
) -> tuple[FeatureGroupSpec, ...]:
    """The groups `spec.features` names, in order; each must exist and list the pipeline as consumer."""
    smap, prefix = spec._where
    issues = []
    for i, name in enumerate(spec.features):
        group = groups.get(name)
        if group is None:
            known = ", ".join(sorted(groups)) or "none given"
            message = f"unknown feature group {name!r} (known: {known})"
        elif spec.name not in group.consumers:
            message = f"feature group {name!r} does not list {spec.name!r} in its consumers"
        else:
            continue
        issues.append(smap.issue((*prefix, "features", i), message))
    if issues:
        raise SpecError(issues)
    return tuple(groups[name] for name in spec.features)
