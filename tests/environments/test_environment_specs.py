"""`environments:` files and `compute:`: parsed with the other spec files, every error at file:line."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from mlops_dagster.cli import main
from mlops_dagster.errors import SpecError
from mlops_dagster.spec import load_specs, read_spec_files

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "pipelines"

ENVIRONMENTS = """\
environments:
  staging:
    storage: s3://ml-staging/mlops
    sensors: stopped
  prod:
    storage: /srv/mlops/prod
    sensors: running
    gates:
      churn: {min: {roc_auc: 0.8}, max_regression: 0.0}
    compute:
      default: {cpu: 250m, memory: 512Mi}
      candidate: {cpu: 4, memory: 16Gi, gpu: 1}
    notifier: {kind: slack, url_env: MLOPS_SLACK_URL}
    approval: required
    signing: optional
"""


def _project(tmp_path: Path, environments: str) -> Path:
    folder = tmp_path / "specs"
    shutil.copytree(DEMO, folder)
    (folder / "environments.yaml").write_text(environments)
    return folder


def _issues(folder: Path) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_specs(folder)
    return [str(issue) for issue in info.value.issues]


def test_environments_file_is_read_with_the_specs(tmp_path: Path) -> None:
    files = read_spec_files(_project(tmp_path, ENVIRONMENTS))
    envs = {e.name: e for e in files.environments}
    assert set(envs) == {"staging", "prod"}
    prod = envs["prod"]
    assert prod.storage == "/srv/mlops/prod" and prod.sensors == "running"
    assert prod.gates["churn"].min == {"roc_auc": 0.8} and prod.gates["churn"].max_regression == 0.0
    assert prod.compute["candidate"].cpu == "4" and prod.compute["candidate"].gpu == 1
    assert prod.notifier is not None and prod.notifier.url_env == "MLOPS_SLACK_URL"
    assert (prod.approval, prod.signing) == ("required", "optional")
    assert envs["staging"].approval == "none" and envs["staging"].signing == "off"
    assert [s.name for s in load_specs(_project(tmp_path / "again", ENVIRONMENTS))] == ["churn", "demand"]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "storage: s3://ml-staging/mlops",
            "storage: gs://bucket/x",
            "environments.yaml:3 environments.staging.storage",
        ),
        ("storage: s3://ml-staging/mlops", "storage: s3:///x", "names no bucket"),
        ("sensors: stopped", "sensors: paused", "environments.yaml:4 environments.staging.sensors"),
        ("sensors: stopped", "sensor: stopped", "unknown key"),
        (
            "churn: {min:",
            "chrun: {min:",
            "environments.yaml:9 environments.prod.gates.chrun: unknown pipeline 'chrun'",
        ),
        ("cpu: 4,", "cpu: 4 cores,", "environments.yaml:12 environments.prod.compute.candidate.cpu"),
        ("memory: 16Gi", "memory: 16GB", "memory must be a Kubernetes quantity"),
        ("gpu: 1", "gpu: 0", "environments.prod.compute.candidate.gpu"),
        ("candidate: {cpu", "trainer: {cpu", "unknown asset 'trainer' in compute"),
        ("url_env: MLOPS_SLACK_URL", "url_env: null", "notifier kind 'slack' needs url_env"),
        (
            "url_env: MLOPS_SLACK_URL",
            "url_env: https://hooks.example/x",
            "environments.prod.notifier.url_env",
        ),
        ("approval: required", "approval: always", "environments.yaml:14 environments.prod.approval"),
        ("signing: optional", "signing: yes", "environments.prod.signing"),
        ("  staging:\n", "  Staging!:\n", "environments.Staging!.name"),
        (
            "    sensors: stopped\n",
            "    sensors: stopped\n    name: other\n",
            "environments.staging.name: unknown key",
        ),
    ],
)
def test_bad_environment_names_file_line_and_field(tmp_path: Path, old: str, new: str, expected: str) -> None:
    assert old in ENVIRONMENTS
    issues = _issues(_project(tmp_path, ENVIRONMENTS.replace(old, new, 1)))
    assert any(expected in issue for issue in issues), issues


def test_one_bad_environment_spoils_no_other_and_all_issues_are_listed(tmp_path: Path) -> None:
    text = ENVIRONMENTS.replace("sensors: stopped", "sensors: paused").replace(
        "approval: required", "approval: x"
    )
    issues = _issues(_project(tmp_path, text))
    assert len([i for i in issues if "environments.yaml" in i]) == 2, issues


def test_an_environment_declared_twice_names_both_places(tmp_path: Path) -> None:
    folder = _project(tmp_path, ENVIRONMENTS)
    (folder / "more_environments.yaml").write_text("environments:\n  prod: {}\n")
    issues = _issues(folder)
    assert any(
        "more_environments.yaml:2" in i and "duplicate environment 'prod'" in i and "environments.yaml:5" in i
        for i in issues
    ), issues


def test_an_empty_environments_mapping_is_an_error(tmp_path: Path) -> None:
    issues = _issues(_project(tmp_path, "environments: {}\n"))
    assert any("environments.yaml:1 environments" in i for i in issues), issues


def test_validate_reports_environment_errors_one_per_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _project(tmp_path, ENVIRONMENTS.replace("sensors: stopped", "sensors: paused"))
    assert main(["validate", str(folder)]) == 1
    err = capsys.readouterr().err
    assert "environments.yaml:4 environments.staging.sensors" in err and "Traceback" not in err


PIPELINE_COMPUTE = """\
compute:
  default: {cpu: 500m, memory: 1Gi}
  candidate: {cpu: "2", memory: 4Gi, gpu: 2}
"""


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("cpu: 500m", "cpu: 500mi", "churn.yaml:{line} compute.default.cpu"),
        ("cpu: 500m", "cpu: -1", "compute.default.cpu"),
        ("cpu: 500m", "cpu: 0", "must be more than 0"),
        ("cpu: 500m", "cpu: 5000", "at most 1024 cores"),
        ("cpu: 500m", "cpu: .nan", "compute.default.cpu"),
        ("memory: 1Gi", "memory: 1 GiB", "compute.default.memory"),
        ("memory: 1Gi", "memory: 0Mi", "must be more than 0 bytes"),
        ("memory: 1Gi", "memory: 100Pi", "at most 64Ti"),
        ("gpu: 2", "gpu: 0.5", "compute.candidate.gpu"),
        ("gpu: 2", "gpu: true", "compute.candidate.gpu"),
        ("candidate: {", "model: {", "unknown asset 'model' in compute"),
        ("memory: 4Gi,", "memroy: 4Gi,", "compute.candidate.memroy: unknown key"),
    ],
)
def test_bad_compute_names_file_line_and_field(tmp_path: Path, old: str, new: str, expected: str) -> None:
    folder = tmp_path / "specs"
    shutil.copytree(DEMO, folder)
    churn = folder / "churn.yaml"
    text = churn.read_text()
    start = text.index("compute:")
    text = text[:start] + PIPELINE_COMPUTE.replace(old, new, 1)
    churn.write_text(text)
    line = text[: text.index(new)].count("\n") + 1  # the line of the edited entry
    issues = _issues(folder)
    assert any(expected.format(line=line) in issue for issue in issues), issues


def test_compute_quantities_parse_as_kubernetes_does() -> None:
    from mlops_dagster.spec.compute import ComputeSpec, cpu_cores, memory_bytes

    assert [str(cpu_cores(q)) for q in ("2", "0.5", "500m", "1500m")] == ["2", "0.5", "0.5", "1.5"]
    assert memory_bytes("4Gi") == 4 * 2**30 and memory_bytes("1G") == 10**9 and memory_bytes("512") == 512
    assert ComputeSpec.model_validate({"cpu": 2, "memory": "1Gi"}).cpu == "2"
    assert ComputeSpec.model_validate({"cpu": 0.25}).cpu == "0.25"


def test_unknown_top_level_kind_mentions_environments(tmp_path: Path) -> None:
    folder = tmp_path / "specs"
    folder.mkdir()
    (folder / "odd.yaml").write_text(textwrap.dedent("- a\n- b\n"))
    issues = _issues(folder)
    assert any("`environments:`" in i for i in issues), issues
