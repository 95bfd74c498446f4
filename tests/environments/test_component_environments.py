"""The `dg` component reads `environment_files` and builds for the environment MLOPS_ENV names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster.components.testing import DefsFolderSandbox, create_defs_folder_sandbox

from mlops_dagster.errors import SpecError
from mlops_dagster.keys import IO_MANAGER_KEY

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "pipelines"


@pytest.fixture
def sandbox() -> Iterator[DefsFolderSandbox]:
    with create_defs_folder_sandbox() as sb:
        yield sb


def _component(sb: DefsFolderSandbox, environment_files: list[str], environments: str) -> Path:
    attributes = yaml.safe_load((PIPELINES / "churn.yaml").read_text())
    attributes["feature_group_files"] = [str(PIPELINES / "features.yaml")]
    attributes["environment_files"] = environment_files
    folder = sb.defs_folder_path / "churn"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "environments.yaml").write_text(environments)
    (folder / "defs.yaml").write_text(
        yaml.safe_dump(
            {"type": "mlops_dagster.MLPipelineComponent", "attributes": attributes}, sort_keys=False
        )
    )
    return folder


def test_component_builds_for_the_environment_mlops_env_names(
    sandbox: DefsFolderSandbox, tmp_path: Path, storage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    envs = f"environments:\n  prod:\n    storage: {tmp_path / 'prod'}\n"
    envs += "    compute: {candidate: {cpu: '3'}}\n"
    _component(sandbox, ["environments.yaml"], envs)
    monkeypatch.setenv("MLOPS_ENV", "prod")
    with sandbox.build_all_defs() as defs:
        assert (defs.resources or {})[IO_MANAGER_KEY].base_path == f"{tmp_path / 'prod'}/data"
        tags = defs.resolve_assets_def(dg.AssetKey(["churn", "candidate"])).op.tags
        assert (
            json.loads(tags["dagster-k8s/config"])["container_config"]["resources"]["requests"]["cpu"] == "3"
        )


@pytest.mark.parametrize(
    ("files", "environments", "expected"),
    [
        (
            ["missing.yaml"],
            "environments: {prod: {}}\n",
            "defs.yaml:{line} attributes.environment_files[0]: no such",
        ),
        (["environments.yaml"], "environments: {prod: {sensors: sometimes}}\n", "environments.prod.sensors"),
        (
            ["environments.yaml"],
            "feature_groups:\n  - {name: g, inputs: [churn], transform: 'a:b', entity: e, timestamp: t}\n",
            "environments.yaml:2 feature_groups[0]: holds no `environments:`",
        ),
    ],
)
def test_bad_environment_files_name_the_file_and_field(
    sandbox: DefsFolderSandbox, storage: Path, files: list[str], environments: str, expected: str
) -> None:
    folder = _component(sandbox, files, environments)
    line = next(
        i
        for i, text in enumerate((folder / "defs.yaml").read_text().splitlines(), 1)
        if "environment_files" in text
    )
    with pytest.raises(Exception) as info, sandbox.build_all_defs():
        pass
    error: BaseException | None = info.value
    while error is not None and not isinstance(error, SpecError):  # dagster wraps it in its tree error
        error = error.__cause__ or error.__context__
    assert isinstance(error, SpecError), info.value
    issues = [str(i) for i in error.issues]
    assert any(expected.format(line=line + 1) in i for i in issues), issues
