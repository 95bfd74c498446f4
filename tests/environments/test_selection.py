"""Choosing the environment and what it changes in the definitions: storage, sensors, gates, compute."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from mlops_dagster import build_definitions
from mlops_dagster.environments import active, select_environment
from mlops_dagster.errors import SpecError
from mlops_dagster.keys import IO_MANAGER_KEY, NOTIFIER_KEY
from mlops_dagster.spec import read_spec_files

ROOT = Path(__file__).resolve().parents[2]
K = dg.AssetKey
CLOUD = ("DAGSTER_CLOUD_DEPLOYMENT_NAME", "DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT", "DAGSTER_CLOUD_GIT_BRANCH")


@pytest.fixture
def specs(tmp_path: Path, storage: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for var in ("MLOPS_ENV", *CLOUD):
        monkeypatch.delenv(var, raising=False)
    folder = tmp_path / "specs"
    shutil.copytree(ROOT / "pipelines", folder)
    (folder / "environments.yaml").write_text(
        f"""\
environments:
  staging:
    storage: {tmp_path / "staging-store"}
    sensors: stopped
  prod:
    storage: {tmp_path / "prod-store"}
    sensors: running
    gates:
      churn: {{min: {{roc_auc: 0.91, accuracy: 0.6}}, max_regression: 0.0}}
    compute:
      default: {{memory: 2Gi}}
      candidate: {{cpu: "8", gpu: 1}}
    notifier: {{kind: webhook, url_env: PROD_ALERT_URL, token_env: PROD_ALERT_TOKEN}}
    approval: required
"""
    )
    return folder


def _envs(folder: Path):  # type: ignore[no-untyped-def]
    return read_spec_files(folder).environments


def test_argument_beats_mlops_env_beats_the_dagster_plus_deployment(specs: Path) -> None:
    envs = _envs(specs)
    environ = {"MLOPS_ENV": "staging", "DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod"}
    assert select_environment(envs, "prod", environ).chosen_by == "argument"
    assert select_environment(envs, None, environ).name == "staging"
    chosen = select_environment(envs, None, {"DAGSTER_CLOUD_DEPLOYMENT_NAME": "prod"})
    assert (chosen.name, chosen.chosen_by) == ("prod", "DAGSTER_CLOUD_DEPLOYMENT_NAME")
    default = select_environment(envs, None, {})
    assert default.name is None and default.spec is None and default.sensors is None


def test_an_undeclared_name_is_refused_unless_it_is_a_dagster_plus_deployment(
    specs: Path, storage: Path
) -> None:
    envs = _envs(specs)
    for explicit, environ in (("prd", {}), (None, {"MLOPS_ENV": "prd"})):
        with pytest.raises(SpecError, match=r"unknown environment 'prd'.*declared: prod, staging"):
            select_environment(envs, explicit, environ)
    cloud = select_environment(envs, None, {"DAGSTER_CLOUD_DEPLOYMENT_NAME": "qa"})
    assert cloud.spec is None and cloud.storage_root == str(storage / "mlops" / "qa")
    # With no environments file at all, any name gets the defaults in its own folder.
    assert select_environment([], "dev", {}).storage_root == str(storage / "mlops" / "dev")


def test_a_branch_deployment_writes_under_its_own_prefix(specs: Path, tmp_path: Path) -> None:
    environ = {
        "MLOPS_ENV": "staging",
        "DAGSTER_CLOUD_DEPLOYMENT_NAME": "staging-pr-42",
        "DAGSTER_CLOUD_IS_BRANCH_DEPLOYMENT": "1",
        "DAGSTER_CLOUD_GIT_BRANCH": "feature/New Model",
    }
    env = select_environment(_envs(specs), None, environ)
    assert env.storage_root == f"{tmp_path / 'staging-store'}/branches/feature-new-model"
    assert env.data_root.startswith(env.storage_root + "/")
    assert env.sensors == "stopped" and env.describe()["mlops/branch"] == "feature/New Model"
    s3 = select_environment([], None, {**environ, "MLOPS_ENV": "qa"})
    assert s3.storage_root.endswith("/qa/branches/feature-new-model")


def test_the_default_root_follows_dagster_home(storage: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert active().storage_root == str(storage / "mlops")
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.chdir(storage)
    assert active().storage_root == str(storage / ".mlops_dagster")


def test_definitions_for_prod_carry_its_storage_sensors_gates_compute_and_notifier(
    specs: Path, tmp_path: Path
) -> None:
    defs = build_definitions(specs, environment="prod")
    assert active().name == "prod"
    resources = defs.resources or {}
    assert resources[IO_MANAGER_KEY].base_path == f"{tmp_path / 'prod-store'}/data"
    notifier = resources[NOTIFIER_KEY]
    assert notifier.kind == "webhook" and isinstance(notifier.url, dg.EnvVar)
    assert (notifier.url.env_var_name, notifier.token.env_var_name) == ("PROD_ALERT_URL", "PROD_ALERT_TOKEN")
    assert {s.name: s.default_status for s in defs.sensors or []} == {
        name: dg.DefaultSensorStatus.RUNNING
        for p in ("churn", "demand")
        for name in (f"{p}__quality_sensor", f"{p}__drift_sensor", f"{p}__packaging_sensor")
    } | {
        name: dg.DefaultSensorStatus.RUNNING
        for name in ("churn__automation_sensor", "churn__performance_sensor")
    }
    champion = defs.resolve_assets_def(K(["churn", "champion"]))
    assert "'roc_auc': 0.91" in (champion.descriptions_by_key[K(["churn", "champion"])] or "")
    assert "'accuracy': 0.6" in (champion.descriptions_by_key[K(["churn", "champion"])] or "")
    meta = champion.metadata_by_key[K(["churn", "champion"])]
    assert meta["mlops/environment"] == "prod" and meta["mlops/approval"] == "required"
    # The demand pipeline keeps its own gates: prod names only churn's.
    demand = defs.resolve_assets_def(K(["demand", "champion"])).descriptions_by_key[K(["demand", "champion"])]
    assert "0.91" not in (demand or "")
    tags = defs.resolve_assets_def(K(["churn", "candidate"])).op.tags
    # prod's candidate entry (cpu 8, gpu 1) over churn.yaml's candidate (cpu 2, 4Gi), field by field
    resources_k8s = json.loads(tags["dagster-k8s/config"])["container_config"]["resources"]
    assert resources_k8s == {
        "requests": {"cpu": "8", "memory": "4Gi"},
        "limits": {"memory": "4Gi", "nvidia.com/gpu": 1},
    }
    assert (tags["ecs/cpu"], tags["ecs/memory"]) == ("8192", "4096")
    # prod's default memory (2Gi) over churn's default (500m, 1Gi) for the other assets
    dataset_tags = defs.resolve_assets_def(K(["churn", "dataset"])).op.tags
    assert json.loads(dataset_tags["dagster-k8s/config"])["container_config"]["resources"]["requests"] == {
        "cpu": "500m",
        "memory": "2Gi",
    }


def test_staging_stops_every_sensor_and_keeps_the_spec_gates(specs: Path) -> None:
    defs = build_definitions(specs, environment="staging")
    assert {s.default_status for s in defs.sensors or []} == {dg.DefaultSensorStatus.STOPPED}
    champion = defs.resolve_assets_def(K(["churn", "champion"]))
    assert "'roc_auc': 0.7" in (champion.descriptions_by_key[K(["churn", "champion"])] or "")


def test_the_retrain_job_asks_for_the_largest_step(specs: Path) -> None:
    job = build_definitions(specs).resolve_job_def("churn__retrain")
    resources = json.loads(job.tags["dagster-k8s/config"])["container_config"]["resources"]
    assert resources["requests"] == {"cpu": "2", "memory": "4Gi"}  # the candidate's, from churn.yaml
    assert (job.tags["ecs/cpu"], job.tags["ecs/memory"]) == ("2048", "4096")
    # demand declares no compute: no resource tags at all (the launcher's defaults)
    demand = build_definitions(specs).resolve_job_def("demand__retrain")
    assert "dagster-k8s/config" not in demand.tags and "ecs/cpu" not in demand.tags


def test_mlops_env_selects_and_data_lands_only_in_that_environment(  # type: ignore[no-untyped-def]
    specs: Path, tmp_path: Path, storage: Path, monkeypatch: pytest.MonkeyPatch, helpers
) -> None:
    monkeypatch.setenv("MLOPS_ENV", "staging")
    defs = build_definitions(specs)
    instance = dg.DagsterInstance.ephemeral()
    assert helpers.range(defs, instance, [K(["churn", "dataset"])], "2026-01-01", "2026-01-02").success
    staged = sorted(p.relative_to(tmp_path) for p in (tmp_path / "staging-store").rglob("*.parquet"))
    assert [str(p) for p in staged] == [
        f"staging-store/data/churn/dataset/2026-01-0{day}.parquet" for day in (1, 2)
    ]
    assert not (tmp_path / "prod-store").exists()
    assert not (Path(str(storage)) / "mlops").exists()  # nothing in the embedded default root either


def test_gates_for_a_pipeline_built_in_python_are_checked_against_it(specs: Path) -> None:
    (specs / "environments.yaml").write_text(
        "environments:\n  prod:\n    gates: {nope: {max_regression: 0}}\n"
    )
    with pytest.raises(SpecError, match="environments.yaml:3 environments.prod.gates.nope: unknown pipeline"):
        build_definitions(specs, environment="prod")


@pytest.mark.parametrize(("kind", "name"), [("k8s", "k8s"), ("ecs", "ecs"), ("in_process", "in_process")])
def test_the_environment_chooses_the_executor(specs: Path, kind: str, name: str) -> None:
    (specs / "environments.yaml").write_text(f"environments:\n  prod:\n    executor: {kind}\n")
    defs = build_definitions(specs, environment="prod")
    assert defs.resolve_job_def("churn__retrain").executor_def.name == name
    default = build_definitions(specs)  # no environment: Dagster's own default executor
    assert default.resolve_job_def("churn__retrain").executor_def.name == "multi_or_in_process_executor"


@pytest.mark.parametrize("name", ["../../etc", "Prod", "a b", "x/y", "-x"])
def test_a_name_that_is_no_folder_name_is_refused_wherever_it_comes_from(name: str) -> None:
    for explicit, environ in (
        (name, {}),
        (None, {"MLOPS_ENV": name}),
        (None, {"DAGSTER_CLOUD_DEPLOYMENT_NAME": name}),
    ):
        with pytest.raises(SpecError, match="must match"):
            select_environment([], explicit, environ)
