"""`mlops-dagster deploy render` and `deploy check`: rendered configuration for Kubernetes (Helm), ECS
and Dagster+, validated offline by each tool's own schema or config system.

Every target is rendered for the demo's `prod` and `staging` environments and must pass `deploy check`;
then each file is tampered with (a key typo, a wrong type, a missing required field, a Kubernetes
object with an unknown field) and `deploy check` must fail naming the file and the key. Secrets are
set to sentinel values in the environment before rendering and must appear in no rendered file.
`dagster-cloud ci init` / `set-build-output` read the rendered build.yaml as a second, independent
reader (both run offline).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_dagster.cli import main

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "pipelines"
IMAGE = "registry.example.com/ml/mlops:1.4.0"
TARGETS = [
    ("k8s", []), ("ecs", []), ("dagster-plus", ["--agent", "k8s"]), ("dagster-plus", ["--agent", "ecs"])
]  # fmt: skip
SENTINELS = {
    "MLOPS_SLACK_WEBHOOK_URL": "https://hooks.example.invalid/SENTINEL-WEBHOOK-4f1c",
    "MLOPS_ALERT_TOKEN": "SENTINEL-TOKEN-77aa",
    "AWS_ACCESS_KEY_ID": "AKIASENTINEL0000KEY",
    "AWS_SECRET_ACCESS_KEY": "SENTINEL/secret/access/key/9d3e",
    "DAGSTER_PG_PASSWORD": "SENTINEL-pg-password-51b2",
}
# A deployed environment as a platform team writes it: S3 storage, a notifier with a token, sizes.
DEPLOYED_ENVS = """
environments:
  prod:
    storage: s3://ml-prod/mlops
    sensors: running
    compute:
      default: {cpu: "1", memory: 2Gi}
      candidate: {cpu: "2", memory: 8Gi}
    notifier: {kind: webhook, url_env: MLOPS_SLACK_WEBHOOK_URL, token_env: MLOPS_ALERT_TOKEN}
  odd:
    storage: s3://ml-odd
    compute:
      candidate: {cpu: "1.5", memory: 3Gi}
"""


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _render(out: Path, target: str, env: str, extra: list[str], specs: Path = PIPELINES) -> list[str]:
    return ["deploy", "render", "--target", target, "--env", env, "--image", IMAGE, "--out", str(out),
            "--specs", str(specs), *extra]  # fmt: skip


@pytest.fixture
def deployed_specs(tmp_path: Path) -> Path:
    folder = tmp_path / "specs"
    shutil.copytree(PIPELINES, folder)
    (folder / "environments.yaml").write_text(DEPLOYED_ENVS)
    return folder


@pytest.mark.parametrize("env", ["prod", "staging"])
@pytest.mark.parametrize(("target", "extra"), TARGETS, ids=["k8s", "ecs", "plus-k8s", "plus-ecs"])
def test_demo_environments_render_and_check(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], target: str, extra: list[str], env: str
) -> None:
    out = tmp_path / "out"
    code, stdout, err = _run(_render(out, target, env, extra), capsys)
    assert code == 0, err
    # The demo's environments have no `storage:`: rendering works, with the warning.
    assert "warning:" in err and "local disk" in err
    names = sorted(p.name for p in out.iterdir())
    assert "NOTES.md" in names and len(names) == 3
    code, stdout, err = _run(["deploy", "check", str(out)], capsys)
    assert code == 0, err
    assert stdout.count("checked ") == 2 and "ok: 2 file(s) valid" in stdout


def test_helm_values_match_the_environment(
    tmp_path: Path, deployed_specs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "k8s"
    assert _run(_render(out, "k8s", "prod", [], deployed_specs), capsys)[0] == 0
    values = yaml.safe_load((out / "values.yaml").read_text())
    (dep,) = values["dagster-user-deployments"]["deployments"]
    repository = "registry.example.com/ml/mlops"
    assert dep["image"] == {"repository": repository, "tag": "1.4.0", "pullPolicy": "IfNotPresent"}
    assert dep["port"] == 4000
    assert dep["dagsterApiGrpcArgs"] == [
        "--python-file", "/opt/dagster/app/definitions.py", "--working-directory", "/opt/dagster/app"
    ]  # fmt: skip
    env = {e["name"]: e for e in dep["env"]}
    assert env["MLOPS_ENV"]["value"] == "prod" and env["DO_NOT_TRACK"]["value"] == "1"
    assert env["GX_ANALYTICS_ENABLED"]["value"] == "false" and env["BENTOML_DO_NOT_TRACK"]["value"] == "true"
    ref = env["MLOPS_SLACK_WEBHOOK_URL"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "mlops-prod-secrets", "key": "MLOPS_SLACK_WEBHOOK_URL"}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["optional"] is True
    # The environment's compute default sizes the runs (the candidate's own size is its op tag).
    assert dep["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"memory": "2Gi"}}
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False and "postgresqlPassword" not in values["postgresql"]
    assert values["global"]["postgresqlSecretName"] == "mlops-prod-postgresql"
    assert values["computeLogManager"] == {
        "type": "S3ComputeLogManager",
        "config": {"s3ComputeLogManager": {"bucket": "ml-prod", "prefix": "mlops/compute-logs"}},
    }
    assert values["telemetry"] == {"enabled": False}
    notes = (out / "NOTES.md").read_text()
    assert 'kubectl -n mlops-prod create secret generic mlops-prod-secrets' in notes
    assert '--from-literal=MLOPS_SLACK_WEBHOOK_URL="$MLOPS_SLACK_WEBHOOK_URL"' in notes
    assert yaml.safe_load((out / "namespace.yaml").read_text())["metadata"]["name"] == "mlops-prod"
    assert _run(["deploy", "check", str(out)], capsys)[0] == 0


def test_ecs_and_dagster_plus_match_the_environment(
    tmp_path: Path, deployed_specs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ecs = tmp_path / "ecs"
    assert _run(_render(ecs, "ecs", "prod", [], deployed_specs), capsys)[0] == 0
    instance = yaml.safe_load((ecs / "dagster.yaml").read_text())
    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_aws.ecs", "EcsRunLauncher")
    assert launcher["config"]["run_resources"] == {"cpu": "1024", "memory": "2048"}
    assert launcher["config"]["container_name"] == "run"
    webhook = {"name": "MLOPS_SLACK_WEBHOOK_URL", "valueFrom": "/mlops-dagster/prod/MLOPS_SLACK_WEBHOOK_URL"}
    assert webhook in launcher["config"]["secrets"]
    assert "MLOPS_ENV=prod" in launcher["config"]["env_vars"]
    assert instance["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert instance["compute_logs"]["config"] == {"bucket": "ml-prod", "prefix": "mlops/compute-logs"}
    task = json.loads((ecs / "task-definition.json").read_text())
    assert task["containerDefinitions"][0]["image"] == IMAGE
    assert _run(["deploy", "check", str(ecs)], capsys)[0] == 0

    plus = tmp_path / "plus"
    assert _run(_render(plus, "dagster-plus", "prod", ["--agent", "ecs"], deployed_specs), capsys)[0] == 0
    (location,) = yaml.safe_load((plus / "build.yaml").read_text())["locations"]
    assert location["build"]["registry"] == "registry.example.com/ml/mlops"
    assert location["code_source"] == {"python_file": "definitions.py"}
    context = yaml.safe_load((plus / "container_context.yaml").read_text())
    assert context == location["container_context"]
    assert context["ecs"]["run_resources"] == {"cpu": "1024", "memory": "2048"}
    assert _run(["deploy", "check", str(plus)], capsys)[0] == 0


def test_dagster_cloud_ci_reads_build_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real `dagster-cloud ci` records `<registry>:<tag>` from our build.yaml (both steps offline)."""
    out = tmp_path / "plus"
    assert _run(_render(out, "dagster-plus", "prod", []), capsys)[0] == 0
    cli = Path(sys.executable).parent / "dagster-cloud"
    env = {**os.environ, "DAGSTER_BUILD_STATEDIR": str(tmp_path / "state"),
           "DAGSTER_CLOUD_ORGANIZATION": "example", "DAGSTER_CLOUD_API_TOKEN": "user:offline"}  # fmt: skip
    for args in (
        ["ci", "init", "--project-dir", str(ROOT), "--deployment", "prod",
         "--dagster-cloud-yaml-path", str(out / "build.yaml")],  # fmt: skip
        ["ci", "set-build-output", "--image-tag", "1.4.0"],
    ):
        proc = subprocess.run([str(cli), *args], env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    state = json.loads((tmp_path / "state" / "location-mlops.json").read_text())
    assert state["deployment_name"] == "prod" and state["build_output"]["image"] == IMAGE


def test_secrets_are_never_written(
    tmp_path: Path, deployed_specs: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SENTINELS.items():
        monkeypatch.setenv(name, value)
    files: list[Path] = []
    for target, extra in TARGETS:
        out = tmp_path / f"{target}-{'-'.join(extra)}"
        code, _, err = _run(_render(out, target, "prod", extra, deployed_specs), capsys)
        assert code == 0, err
        files.extend(out.iterdir())
    texts = {p: p.read_text() for p in files}
    assert len(texts) == 12
    for path, text in texts.items():
        for value in SENTINELS.values():
            assert value not in text, f"{path} holds the value of a secret"
    # ...while every target does reference them, by name.
    joined = "\n".join(texts.values())
    for name in SENTINELS:
        assert name in joined


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


def _rename(path: tuple[Any, ...], new: str) -> Callable[[Any], None]:
    def mutate(data: Any) -> None:
        for key in path[:-1]:
            data = data[key]
        data[new] = data.pop(path[-1])

    return mutate


def _drop(path: tuple[Any, ...]) -> Callable[[Any], None]:
    def mutate(data: Any) -> None:
        for key in path[:-1]:
            data = data[key]
        del data[path[-1]]

    return mutate


UD = ("dagster-user-deployments", "deployments", 0)
LAUNCHER = ("run_launcher", "config")
K8S_LAUNCHER = ("runLauncher", "config", "k8sRunLauncher")
NO_S3_CONFIG = {"type": "S3ComputeLogManager", "config": {}}
TAMPERS = [  # (target, file, mutation, what `deploy check` must name)
    ("k8s", "values.yaml", _rename((*UD, "dagsterApiGrpcArgs"), "dagsterApiGrpArgs"),
     "deployments[0].dagsterApiGrpArgs: unknown key (did you mean dagsterApiGrpcArgs?)"),
    ("k8s", "values.yaml", lambda d: _set(d, (*K8S_LAUNCHER, "loadInclusterConfig"), "yes"),
     "runLauncher.config.k8sRunLauncher.loadInclusterConfig: Invalid scalar"),
    ("k8s", "values.yaml", _drop((*UD, "port")), "deployments[0].port: required field is missing"),
    ("k8s", "values.yaml", lambda d: d[UD[0]][UD[1]][0]["env"].append({"name": "X", "valeu": "1"}),
     "deployments[0].env[8]: Additional properties are not allowed ('valeu'"),
    ("k8s", "values.yaml", lambda d: _set(d, (*UD, "resources", "requests", "cpu"), [1]),
     "deployments[0].resources.requests.cpu:"),
    ("k8s", "values.yaml", lambda d: _set(d, ("computeLogManager",), NO_S3_CONFIG),
     "computeLogManager.config.s3ComputeLogManager: required"),
    ("k8s", "values.yaml", lambda d: _set(d, ("postgresql", "postgresqlPassword"), "hunter2"),
     "postgresql.postgresqlPassword: a password written in values"),
    ("k8s", "values.yaml", lambda d: _set(d, ("dagsterWebservr",), {}), "dagsterWebservr: unknown key"),
    ("k8s", "namespace.yaml", lambda d: _set(d, ("metadata", "nmae"), "x"),
     "metadata: Additional properties"),
    ("ecs", "dagster.yaml", _rename((*LAUNCHER, "container_name"), "containr_name"),
     "run_launcher.config.containr_name: unknown key"),
    ("ecs", "dagster.yaml", lambda d: _set(d, (*LAUNCHER, "use_current_ecs_task_config"), "no"),
     "run_launcher.config.use_current_ecs_task_config: Invalid scalar"),
    ("ecs", "dagster.yaml", _drop(("run_launcher", "module")),
     "run_launcher.module: required field is missing"),
    ("ecs", "dagster.yaml", lambda d: _set(d, ("run_launcher", "class"), "EcsRunLaunchr"),
     "run_launcher.class: dagster_aws.ecs has no class EcsRunLaunchr"),
    ("ecs", "task-definition.json", lambda d: _set(d, ("cpu",), 512), "cpu: Invalid type for parameter cpu"),
    ("ecs", "task-definition.json", _rename(("containerDefinitions", 0, "portMappings"), "portMapping"),
     'containerDefinitions[0]: Unknown parameter in containerDefinitions[0]: "portMapping"'),
    ("ecs", "task-definition.json", _drop(("family",)), 'Missing required parameter in input: "family"'),
    ("dagster-plus", "build.yaml", _rename(("locations", 0, "code_source", "python_file"), "python_fil"),
     "locations[0].code_source.python_fil: unknown key"),
    ("dagster-plus", "build.yaml", _drop(("locations", 0, "location_name")),
     "locations[0].location_name: required field is missing"),
    ("dagster-plus", "container_context.yaml", _rename(("k8s", "env_vars"), "env_var"),
     "k8s.env_var: unknown key"),
    ("dagster-plus", "container_context.yaml", lambda d: _set(d, ("k8s", "run_k8s_config"), 5),
     "k8s.run_k8s_config:"),
]  # fmt: skip


@pytest.mark.parametrize(("target", "name", "mutate", "expected"), TAMPERS)
def test_check_names_file_and_key_of_each_problem(
    tmp_path: Path, deployed_specs: Path, capsys: pytest.CaptureFixture[str],
    target: str, name: str, mutate: Callable[[Any], None], expected: str,
) -> None:  # fmt: skip
    out = tmp_path / "out"
    assert _run(_render(out, target, "prod", [], deployed_specs), capsys)[0] == 0
    path = out / name
    is_json = name.endswith(".json")
    data = json.loads(path.read_text()) if is_json else yaml.safe_load(path.read_text())
    mutate(data)
    path.write_text(json.dumps(data, indent=2) if is_json else yaml.safe_dump(data, sort_keys=False))
    code, _, err = _run(["deploy", "check", str(out)], capsys)
    assert code == 1
    problems = [line for line in err.splitlines() if line.startswith(str(path))]
    assert problems, f"no problem reported for {name}:\n{err}"
    assert any(expected in line for line in problems), err
    assert "error:" in err.splitlines()[-1]


def test_fargate_sizes_are_checked_for_ecs_only(
    tmp_path: Path, deployed_specs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(_render(tmp_path / "ecs", "ecs", "odd", [], deployed_specs), capsys)
    assert code == 0
    assert "churn/candidate: cpu 1.5 / memory 3Gi is not a Fargate task size: cpu 1536" in err
    code, _, err = _run(_render(tmp_path / "k8s", "k8s", "odd", [], deployed_specs), capsys)
    assert code == 0 and "Fargate" not in err
    assert _run(["deploy", "check", str(tmp_path / "ecs")], capsys)[0] == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--env", "nope"], "unknown environment 'nope'; declared: dev, prod, staging"),
        (["--image", "registry.example.com/ml/mlops"], "has no tag"),
        (["--image", "Registry/UPPER:1"], "not a valid image repository"),
        (["--location", "Bad_Name"], "--location 'Bad_Name'"),
    ],
)
def test_render_refuses_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    base = dict(zip(["--env", "--image"], ["prod", IMAGE], strict=True))
    base.update(dict(zip(argv[::2], argv[1::2], strict=True)))
    args = ["deploy", "render", "--target", "k8s", "--out", str(tmp_path / "out"), "--specs", str(PIPELINES)]
    args += [x for kv in base.items() for x in kv]
    code, _, err = _run(args, capsys)
    assert code == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_render_refuses_missing_parent_bad_target_and_no_environments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(_render(tmp_path / "missing" / "out", "k8s", "prod", []), capsys)
    assert code == 1 and f"parent folder {tmp_path / 'missing'} does not exist" in err
    with pytest.raises(SystemExit) as exit_info:
        main(_render(tmp_path / "out", "nomad", "prod", []))
    assert exit_info.value.code == 2 and "invalid choice: 'nomad'" in capsys.readouterr().err
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(PIPELINES / "churn.yaml", bare)
    shutil.copy(PIPELINES / "features.yaml", bare)
    code, _, err = _run(_render(tmp_path / "out", "k8s", "prod", [], bare), capsys)
    assert code == 1 and "no environments are declared" in err


def test_check_refuses_a_folder_without_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(["deploy", "check", str(tmp_path / "absent")], capsys)
    assert code == 1 and "is not a folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = _run(["deploy", "check", str(tmp_path / "empty")], capsys)
    assert code == 1 and "holds no rendered configuration" in err


def test_render_defaults_to_the_pipelines_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    args = ["deploy", "render", "--target", "ecs", "--env", "staging", "--image", IMAGE]
    args += ["--out", str(tmp_path / "o")]
    code, out, err = _run(args, capsys)
    assert code == 0, err
    assert "MLOPS_ENV=staging" in (tmp_path / "o" / "dagster.yaml").read_text()


def test_help_loads_no_deployment_tool() -> None:
    """`mlops-dagster --help` stays fast: the deploy tools load only inside the commands."""
    probe = (
        "import sys\nfrom mlops_dagster.cli import build_parser\n"
        "try:\n    build_parser().parse_args(['deploy', 'render', '--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = {'dagster_k8s', 'dagster_aws', 'kubernetes_validate', 'botocore', 'dagster_cloud_cli',"
        " 'mlops_dagster.deploy'}\n"
        "print(sorted(m for m in sys.modules if m in heavy))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "--target" in proc.stdout  # the probe did build and print the parser
    assert proc.stdout.strip().splitlines()[-1] == "[]"
