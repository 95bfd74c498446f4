"""`MLPipelineComponent`: a pipeline spec written as the attributes of a Dagster component.

A thin YAML front over the factory, as dagster-sling's component is over `sling_assets`. The
attributes are the fields of `PipelineSpec` (CONTRACT.md section 2), validated by the spec models
themselves (unknown keys are errors, reported by Dagster with the defs.yaml line), plus where the
pipeline's feature groups come from. `load` turns them into a `PipelineSpec` rooted at the
component's folder with the feature groups it consumes attached, through `resolve_specs`, the checks
every spec goes through (what `load_specs` returns for a spec file), and `build_defs` calls
`build_definitions`; everything else is the factory's.

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
from mlops_dagster.spec import EnvironmentSpec, SourceMap, check_environments, read_spec_files, resolve_specs
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
    environment_files: list[str] = Field(
        default_factory=list,
        description=(
            "YAML files (or folders of them) holding `environments:`, relative to this folder; the "
            "environment is chosen by MLOPS_ENV (or the Dagster+ deployment name)"
        ),
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
    environments: tuple[EnvironmentSpec, ...] = ()

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        return MLPipelineAttributes

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> Self:
        values = dict(attributes if attributes is not None else MLPipelineAttributes())
        try:
            spec, environments = resolve_spec(values, context), _environments(values, context)
        except SpecError as e:
            # Each issue names its defs.yaml line and field: the frames of the checks that found it
            # would only push that line down the report `dg check defs` prints.
            raise SpecError(e.issues) from None
        return cls(
            spec=spec, define_feature_groups=values["define_feature_groups"], environments=environments
        )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        return build_definitions(
            self.spec,
            define_feature_groups=self.define_feature_groups,
            environments=self.environments,
        )


def resolve_spec(attributes: Mapping[str, Any], context: dg.ComponentLoadContext) -> PipelineSpec:
    """The `PipelineSpec` of a component's attributes, rooted at its folder, groups attached.

    The spec goes through `resolve_specs`, as spec files and Python-built specs do, so the component
    accepts exactly what `load_specs` and `build_definitions` accept. The one difference: a group's
    `inputs` may name pipelines of other components.

    Raises:
        SpecError: a feature-group file is missing or invalid, a group is declared twice, the pipeline
            uses a group that is unknown or does not list it among its consumers, or any other check
            of `resolve_specs` fails; each issue names the file, line and field.
    """
    tree = context.resolution_context.source_position_tree
    folder = context.path if context.path.is_dir() else context.path.parent
    defs_file = (Path(tree.position.filename) if tree else folder / "defs.yaml").resolve()
    smap = _source_map(defs_file, tree)
    prefix = ("attributes",)
    spec = PipelineSpec(**{name: attributes[name] for name in PipelineSpec.model_fields})
    spec = spec.located(defs_file, smap, prefix)  # relative paths resolve against the component's folder
    inline = [
        group.located(defs_file, smap, (*prefix, "feature_groups", i))
        for i, group in enumerate(attributes["feature_groups"])
    ]
    groups, issues = _group_files(attributes["feature_group_files"], defs_file.parent, smap, prefix)
    (resolved,) = resolve_specs([spec], [*inline, *groups], check_inputs=False, pending=issues)
    return resolved


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


def _group_files(
    names: Sequence[str], folder: Path, smap: SourceMap, prefix: tuple[str, ...]
) -> tuple[list[FeatureGroupSpec], list[SpecIssue]]:
    """The groups of `feature_group_files` (read as `load_specs` reads them), and the problems found."""
    groups: list[FeatureGroupSpec] = []
    issues: list[SpecIssue] = []
    for i, name in enumerate(names):
        path = (folder / name).resolve()
        if not path.exists():
            issues.append(smap.issue((*prefix, "feature_group_files", i), f"no such file or folder: {path}"))
            continue
        files = read_spec_files(path)
        groups.extend(files.groups)
        issues.extend(files.issues)
        message = "holds a pipeline, not `feature_groups:` (feature_group_files)"
        issues.extend(pipeline.issue((), message) for pipeline in files.pipelines)
    return groups, issues


def _environments(
    attributes: Mapping[str, Any], context: dg.ComponentLoadContext
) -> tuple[EnvironmentSpec, ...]:
    """The entries of `environment_files`, read as `load_specs` reads them.

    Raises:
        SpecError: a file is missing, invalid, or holds something other than `environments:`.
    """
    names = attributes["environment_files"]
    if not names:
        return ()
    tree = context.resolution_context.source_position_tree
    folder = context.path if context.path.is_dir() else context.path.parent
    smap = _source_map((Path(tree.position.filename) if tree else folder / "defs.yaml").resolve(), tree)
    found: list[EnvironmentSpec] = []
    issues: list[SpecIssue] = []
    for i, name in enumerate(names):
        path = (folder / name).resolve()
        if not path.exists():
            issues.append(
                smap.issue(("attributes", "environment_files", i), f"no such file or folder: {path}")
            )
            continue
        files = read_spec_files(path)
        found.extend(files.environments)
        issues.extend(files.issues)
        message = "holds no `environments:` (environment_files)"
        issues.extend(other.issue((), message) for other in [*files.pipelines, *files.groups])
    issues.extend(check_environments(found, None))
    if issues:
        raise SpecError(issues)
    return tuple(found)
