"""MLPipelineComponent: scaffolding, loading, parity with the factory, shared groups, errors, the dg CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster.components.testing import DefsFolderSandbox, create_defs_folder_sandbox

import mlops_dagster
from mlops_dagster import MLPipelineComponent, PipelineSpec, build_definitions
from mlops_dagster.component import FeatureGroupAttributes
from mlops_dagster.keys import Meta

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "pipelines"
PROJECTS = ROOT / "tests" / "projects"
TYPE = "mlops_dagster.MLPipelineComponent"
CONTRACT_KEYS = ("dataset", "training_set", "candidate", "champion")
HEAVY = ("sklearn", "bentoml", "evidently", "great_expectations", "onnx", "onnxruntime")


@pytest.fixture
def sandbox() -> Iterator[DefsFolderSandbox]:
    with create_defs_folder_sandbox() as sb:
        yield sb


def asset_table(defs: dg.Definitions) -> dict[str, tuple[Any, ...]]:
    """What must not differ between a component and the factory: group, kinds, code version, deps."""
    return {
        spec.key.to_user_string(): (
            spec.group_name,
            frozenset(spec.kinds),
            spec.code_version,
            frozenset(dep.asset_key.to_user_string() for dep in spec.deps),
        )
        for spec in defs.resolve_all_asset_specs()
    }


def write_component(sb: DefsFolderSandbox, name: str, attributes: dict[str, Any]) -> Path:
    folder = sb.defs_folder_path / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "defs.yaml").write_text(
        yaml.safe_dump({"type": TYPE, "attributes": attributes}, sort_keys=False)
    )
    return folder


def error_text(exc: BaseException) -> str:
    """The message of an exception and of everything in its cause chain (Dagster wraps load errors)."""
    parts: list[str] = []
    current: BaseException | None = exc
    while current is not None and len(parts) < 20:
        parts.append(str(current))
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


# (a) scaffold, then load what was scaffolded


def test_scaffold_writes_a_defs_yaml_that_loads(sandbox: DefsFolderSandbox) -> None:
    path = sandbox.scaffold_component(component_cls=MLPipelineComponent, defs_path="churn")
    assert (path / "defs.yaml").is_file() and (path / "data" / "churn.csv").is_file()
    # The sandbox scaffolds under the defining module's name; `dg` uses the public one (test below).
    assert (
        yaml.safe_load((path / "defs.yaml").read_text())["type"]
        == "mlops_dagster.component.MLPipelineComponent"
    )

    with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
        assert isinstance(component, MLPipelineComponent)
        assert component.spec.name == "churn" and component.spec.model.task == "classification"
        assert component.spec.base_dir == path.resolve()
        keys = {spec.key.to_user_string() for spec in defs.resolve_all_asset_specs()}
        assert {f"churn/{k}" for k in CONTRACT_KEYS} <= keys
        assert all(k.startswith("churn/") for k in keys)
        assert defs.resolve_job_def("churn__retrain").name == "churn__retrain"


def test_scaffolded_example_runs_end_to_end(sandbox: DefsFolderSandbox, storage: Path) -> None:
    """The scaffold's relative `uri` reads its own data/churn.csv, and the gates promote the model."""
    path = sandbox.scaffold_component(component_cls=MLPipelineComponent, defs_path="churn")
    with sandbox.build_all_defs() as defs:
        keys = defs.resolve_asset_graph().get_all_asset_keys()
        result = dg.materialize(
            [defs.get_assets_def(key) for key in keys],
            resources=defs.resources,
            instance=dg.DagsterInstance.ephemeral(),
        )
    assert result.success
    (training_set,) = result.asset_materializations_for_node("churn__training_set")
    assert training_set.metadata["dagster/row_count"].value == 400  # the rows of data/churn.csv
    (champion,) = result.asset_materializations_for_node("churn__champion")
    assert champion.metadata[Meta.DECISION].value == "promote"
    assert (path / "data" / "churn.csv").is_file()


def test_scaffold_names_the_pipeline_after_the_folder(sandbox: DefsFolderSandbox) -> None:
    path = sandbox.scaffold_component(component_cls=MLPipelineComponent, defs_path="Sales-Forecast")
    assert yaml.safe_load((path / "defs.yaml").read_text())["attributes"]["name"] == "sales_forecast"


# (b) the component and the factory agree on the same spec (STYLE habit 1)


def test_component_matches_build_definitions(sandbox: DefsFolderSandbox) -> None:
    attributes = yaml.safe_load((PIPELINES / "churn.yaml").read_text())
    attributes["feature_group_files"] = [str(PIPELINES / "features.yaml")]
    write_component(sandbox, "churn", attributes)

    with sandbox.build_all_defs() as defs:
        component, jobs = asset_table(defs), {job.name for job in defs.resolve_all_job_defs()}
    factory = build_definitions(PIPELINES / "churn.yaml", PIPELINES / "features.yaml")
    assert component == asset_table(factory)
    assert "churn__retrain" in jobs


def test_components_for_every_demo_pipeline_match_build_definitions(sandbox: DefsFolderSandbox) -> None:
    for spec_file in sorted(PIPELINES.glob("*.yaml")):
        attributes = yaml.safe_load(spec_file.read_text())
        if "feature_groups" in attributes or "environments" in attributes:
            continue
        attributes["feature_group_files"] = [str(PIPELINES / "features.yaml")]
        attributes["define_feature_groups"] = attributes["name"] == "churn"  # one definer per group
        write_component(sandbox, attributes["name"], attributes)

    with sandbox.build_all_defs() as defs:
        component = asset_table(defs)
        jobs = {job.name for job in defs.resolve_all_job_defs()}
    factory = build_definitions(PIPELINES)
    assert component == asset_table(factory)
    assert {job.name for job in factory.resolve_all_job_defs()} <= jobs


def test_attributes_are_the_spec_fields_plus_the_feature_group_sources() -> None:
    fields = list(MLPipelineComponent.get_model_cls().model_fields)
    assert fields == [*PipelineSpec.model_fields, *FeatureGroupAttributes.model_fields]
    schema = MLPipelineComponent.get_model_cls().model_json_schema()
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "dataset", "model"}


# (c) two components share a feature group


def test_two_components_share_a_feature_group(sandbox: DefsFolderSandbox) -> None:
    shutil.copytree(PROJECTS / "shared_features" / "defs", sandbox.defs_folder_path, dirs_exist_ok=True)
    with sandbox.build_all_defs() as defs:
        table = asset_table(defs)
        jobs = [defs.resolve_job_def(f"{p}__retrain") for p in ("churn", "demand")]
    assert [k for k in table if k.startswith("features/")] == ["features/customer_activity"]
    assert table["features/customer_activity"][3] == {"churn/dataset"}
    for pipeline in ("churn", "demand"):
        assert {f"{pipeline}/{k}" for k in CONTRACT_KEYS} <= set(table)
        assert "features/customer_activity" in table[f"{pipeline}/training_set"][3]
    assert [job.name for job in jobs] == ["churn__retrain", "demand__retrain"]


def test_sharing_a_group_needs_the_flag(sandbox: DefsFolderSandbox) -> None:
    shutil.copytree(PROJECTS / "shared_features" / "defs", sandbox.defs_folder_path, dirs_exist_ok=True)
    demand = sandbox.defs_folder_path / "demand" / "defs.yaml"
    demand.write_text(
        demand.read_text().replace("define_feature_groups: false", "define_feature_groups: true")
    )
    with pytest.raises(Exception) as info:
        with sandbox.build_all_defs() as defs:
            defs.resolve_asset_graph()
    assert "Duplicate asset key: AssetKey(['features', 'customer_activity'])" in error_text(info.value)


# (d) errors name the defs.yaml line and the field


def _set(path: tuple[str, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(attributes: dict[str, Any]) -> None:
        target = attributes
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return edit


GROUP = {
    "name": "activity",
    "inputs": ["churn"],
    "transform": "assets.features:customer_activity",
    "entity": "customer_id",
    "timestamp": "event_time",
    "consumers": ["churn"],
}


@pytest.mark.parametrize(
    ("edit", "line_of", "expected"),
    [
        (_set(("colour",), "red"), "colour:", ["attributes.colour", "Extra inputs are not permitted"]),
        (_set(("dataset", "source"), {"url": "x.csv"}), "url:", ["attributes.dataset.source", "url"]),
        (_set(("model", "task"), "clustering"), "task:", ["attributes.model.task", "'regression'"]),
        (_set(("name",), "Churn"), "name: Churn", ["attributes.name", "should match pattern"]),
        (
            _set(("model", "holdout"), 1.5),
            "holdout:",
            ["attributes.model.holdout", "less than 1"],
        ),
        (
            _set(("features",), ["nope"]),
            "- nope",
            ["attributes.features[0]: unknown feature group 'nope'"],
        ),
        (
            lambda a: a.update(features=["activity"], feature_groups=[{**GROUP, "consumers": ["demand"]}]),
            "- activity",
            ["attributes.features[0]: feature group 'activity' does not list 'churn' in its consumers"],
        ),
        (
            _set(("feature_group_files",), ["missing.yaml"]),
            "- missing.yaml",
            ["attributes.feature_group_files[0]: no such file or folder"],
        ),
    ],
    ids=[
        "unknown-attribute",
        "unknown-nested-key",
        "bad-enum",
        "bad-name",
        "out-of-range",
        "unknown-group",
        "not-a-consumer",
        "missing-group-file",
    ],
)
def test_bad_attributes_fail_with_file_line_and_field(
    sandbox: DefsFolderSandbox,
    edit: Callable[[dict[str, Any]], None],
    line_of: str,
    expected: list[str],
) -> None:
    path = sandbox.scaffold_component(component_cls=MLPipelineComponent, defs_path="churn")
    document = yaml.safe_load((path / "defs.yaml").read_text())
    edit(document["attributes"])
    text = yaml.safe_dump(document, sort_keys=False)
    (path / "defs.yaml").write_text(text)
    line = next(i for i, s in enumerate(text.splitlines(), 1) if line_of in s)

    with pytest.raises(Exception) as info:
        with sandbox.build_all_defs() as defs:
            defs.resolve_asset_graph()
    message = error_text(info.value)
    assert f"defs.yaml:{line}" in message, message
    for fragment in expected:
        assert fragment in message, message


def test_duplicate_feature_group_names_both_places(sandbox: DefsFolderSandbox) -> None:
    groups_file = sandbox.defs_folder_path / "groups.yaml"
    groups_file.write_text(yaml.safe_dump({"feature_groups": [GROUP]}))
    path = sandbox.scaffold_component(component_cls=MLPipelineComponent, defs_path="churn")
    document = yaml.safe_load((path / "defs.yaml").read_text())
    document["attributes"].update(feature_groups=[GROUP], feature_group_files=["../groups.yaml"])
    (path / "defs.yaml").write_text(yaml.safe_dump(document, sort_keys=False))

    with pytest.raises(Exception) as info:
        with sandbox.build_all_defs():
            pass
    message = error_text(info.value)
    line = groups_file.read_text().splitlines().index("  name: activity") + 1
    assert f"{groups_file}:{line} feature_groups[0].name: duplicate feature group 'activity'" in message
    inline = next(
        i for i, s in enumerate((path / "defs.yaml").read_text().splitlines(), 1) if "name: activity" in s
    )
    assert f"(first declared in {(path / 'defs.yaml').resolve()}:{inline})" in message


def test_component_without_attributes_names_the_missing_fields(sandbox: DefsFolderSandbox) -> None:
    folder = sandbox.defs_folder_path / "empty"
    folder.mkdir()
    (folder / "defs.yaml").write_text(f"type: {TYPE}\n")
    with pytest.raises(Exception) as info:
        with sandbox.build_all_defs():
            pass
    message = error_text(info.value)
    assert all(field in message for field in ("name", "dataset", "model")), message


def _pii_feature(attributes: dict[str, Any]) -> None:
    attributes["dataset"]["pii"] = ["email"]
    attributes["model"]["features"] = ["tenure_months", "email"]


@pytest.mark.parametrize(
    ("edit", "line_of", "expected"),
    [
        (
            _set(("model", "features"), ["tenure_months", "churned"]),
            "- churned",
            "attributes.model.features[1]: label 'churned' is used as a feature",
        ),
        (
            _pii_feature,
            "- email",
            "attributes.model.features[1]: 'email' is declared PII (dataset.pii): PII is never a model "
            "feature",
        ),
        (
            _set(("monitoring", "drift", "methods"), {"tenure_months": "kss"}),
            "tenure_months: kss",
            "attributes.monitoring.drift.methods.tenure_months: unknown drift method 'kss'",
        ),
        (
            _set(("monitoring", "drift", "thresholds"), {"tenure_months": 5.0}),
            "tenure_months: 5.0",
            "attributes.monitoring.drift.thresholds.tenure_months: 5.0 must be below 1",
        ),
        (_set(("gates", "min"), {"roc_auc": float("nan")}), "roc_auc: .nan", "finite number"),
        (_set(("monitoring", "drift", "cooldown"), "99999999999999w"), "cooldown:", "longer than 366d"),
    ],
    ids=["label-feature", "pii-feature", "drift-method", "drift-threshold", "nan-gate", "huge-cooldown"],
)
def test_component_refuses_what_load_specs_refuses(
    sandbox: DefsFolderSandbox, edit: Callable[[dict[str, Any]], None], line_of: str, expected: str
) -> None:
    """The component's spec goes through the loader's checks (`dg check defs` used to accept these)."""
    path = sandbox.scaffold_component(component_cls=MLPipelineComponent, defs_path="churn")
    document = yaml.safe_load((path / "defs.yaml").read_text())
    edit(document["attributes"])
    text = yaml.safe_dump(document, sort_keys=False)
    (path / "defs.yaml").write_text(text)
    line = [i for i, s in enumerate(text.splitlines(), 1) if line_of in s][-1]

    with pytest.raises(Exception) as info:
        with sandbox.build_all_defs() as defs:
            defs.resolve_asset_graph()
    message = error_text(info.value)
    assert f"defs.yaml:{line}" in message, message
    assert expected in message, message


# (e) the real dg CLI in a scratch project


def _dg(project: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "DAGSTER_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "NO_COLOR": "1",
    }
    dg_bin = shutil.which("dg", path=env["PATH"])
    assert dg_bin, "the dg CLI is not installed next to this Python"
    return subprocess.run(
        [dg_bin, *args], cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _scratch_project(root: Path) -> Path:
    """A minimal dg project written by hand (no network, no uv): pyproject + package + defs folder."""
    project = root / "scratch"
    package = project / "src" / "scratch"
    (package / "defs").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """\
            [project]
            name = "scratch"
            version = "0.1.0"
            requires-python = ">=3.11"

            [tool.dg]
            directory_type = "project"

            [tool.dg.project]
            root_module = "scratch"
            """
        )
    )
    (package / "__init__.py").write_text("")
    (package / "defs" / "__init__.py").write_text("")
    (package / "definitions.py").write_text(
        textwrap.dedent(
            """\
            from pathlib import Path

            import dagster as dg


            @dg.definitions
            def defs() -> dg.Definitions:
                return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
            """
        )
    )
    return project


def test_dg_cli_lists_scaffolds_and_checks(tmp_path: Path) -> None:
    project = _scratch_project(tmp_path)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    listed = _dg(project, home, "list", "components", "--json")
    assert listed.returncode == 0, listed.stderr
    assert TYPE in {item["key"] for item in json.loads(listed.stdout)["items"]}

    scaffolded = _dg(project, home, "scaffold", "defs", TYPE, "churn")
    assert scaffolded.returncode == 0, scaffolded.stdout + scaffolded.stderr
    defs_yaml = project / "src" / "scratch" / "defs" / "churn" / "defs.yaml"
    assert yaml.safe_load(defs_yaml.read_text())["attributes"]["name"] == "churn"

    checked = _dg(project, home, "check", "defs")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr


def test_dg_check_defs_reports_a_spec_error_in_one_line(tmp_path: Path) -> None:
    """An unknown feature group is one `file:line field: message` line, not our stack of frames."""
    project = _scratch_project(tmp_path)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    scaffolded = _dg(project, home, "scaffold", "defs", TYPE, "churn")
    assert scaffolded.returncode == 0, scaffolded.stdout + scaffolded.stderr
    defs_yaml = (project / "src" / "scratch" / "defs" / "churn" / "defs.yaml").resolve()
    lines = defs_yaml.read_text().splitlines()
    index = next(i for i, s in enumerate(lines) if s.startswith("  features: []"))
    lines[index] = "  features: [nope]"
    defs_yaml.write_text("\n".join(lines) + "\n")

    checked = _dg(project, home, "check", "defs")
    output = checked.stdout + checked.stderr
    assert checked.returncode != 0, output
    our_frames = [s for s in output.splitlines() if s.lstrip().startswith("File ") and "mlops_dagster" in s]
    assert len(our_frames) <= 1, output  # the component's `load`, which re-raises the issues
    said = [s for s in output.splitlines() if "nope" in s]
    assert said == [
        f"mlops_dagster.errors.SpecError: {defs_yaml}:{index + 1} attributes.features[0]: "
        "unknown feature group 'nope' (known: none loaded)"
    ], output


def test_import_stays_light() -> None:
    code = f"import sys, mlops_dagster; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
    assert "MLPipelineComponent" in mlops_dagster.__all__
