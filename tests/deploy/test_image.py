"""The user-code image: deploy/Dockerfile built offline (`make image`, wheelhouse mode) on the local
bookworm base, run with `--network host`, answers Dagster's gRPC API from the host.

The container runs the image's own command; only its port moves (`DAGSTER_GRPC_PORT`, which the
image's HEALTHCHECK follows too), so parallel tests never collide on 4000. Skips with the reason
when docker cannot run here.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.docker_support import docker_run, free_port, remove_container

ROOT = Path(__file__).resolve().parents[2]
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)


def _health_check(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DAGSTER, "api", "grpc-health-check", "-h", "127.0.0.1", "-p", str(port)],
        capture_output=True, text=True, timeout=60, check=False,
    )


def _wait_until_healthy(image: str, name: str, port: int, env: dict[str, str], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _health_check(port).returncode == 0:
            return
        running = _docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
        if running != "true":
            # --rm took its logs with it: run the same command in the foreground to show why.
            _, output = docker_run(image, env=env, timeout=90)
            pytest.fail(f"the code server container exited before it was healthy:\n{output[-3000:]}")
        time.sleep(1)
    logs = _docker("logs", name)
    output = (logs.stdout + logs.stderr)[-3000:]
    pytest.fail(f"no healthy code server on port {port} after {timeout:.0f}s:\n{output}")


@pytest.fixture(scope="module")
def code_server(user_code_image: str) -> Iterator[tuple[str, int]]:
    """The image's code server on a free host port; yields (container name, port)."""
    name, port = f"mlops-code-server-{uuid.uuid4().hex[:8]}", free_port()
    env = {"DAGSTER_GRPC_PORT": str(port), "DAGSTER_CURRENT_IMAGE": user_code_image}
    try:
        rc, out = docker_run(user_code_image, name=name, env=env, detach=True)
        assert rc == 0, f"docker run failed:\n{out}"
        _wait_until_healthy(user_code_image, name, port, env)
        yield name, port
    finally:
        remove_container(name)


def test_code_server_lists_the_demo_repository(code_server: tuple[str, int], user_code_image: str) -> None:
    import dagster as dg

    # Private: Dagster has no public gRPC client (the webserver and daemon use this one), nor public
    # types for what it answers.
    from dagster._core.remote_origin import GrpcServerCodeLocationOrigin, RemoteRepositoryOrigin
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._grpc.client import DagsterGrpcClient
    from dagster._grpc.types import ListRepositoriesResponse

    _, port = code_server
    health = _health_check(port)
    assert health.returncode == 0 and "gRPC connection successful" in health.stdout, health.stdout

    client = DagsterGrpcClient(port=port, host="127.0.0.1")
    # as_type: a SerializableErrorInfo (the definitions failed to load) raises, naming what it got.
    listing = dg.deserialize_value(client.list_repositories(), ListRepositoriesResponse)
    names = [symbol.repository_name for symbol in listing.repository_symbols]
    assert len(names) == 1, names
    # What run launchers put in their pods and tasks: this image, and the image's own interpreter.
    assert listing.container_image == user_code_image
    assert (listing.executable_path or "").startswith("/opt/venv/"), listing.executable_path

    origin = RemoteRepositoryOrigin(GrpcServerCodeLocationOrigin(host="127.0.0.1", port=port), names[0])
    snapshot = dg.deserialize_value(client.external_repository(origin), RepositorySnap)
    keys = {node.asset_key.to_user_string() for node in snapshot.asset_nodes}
    assert {"churn/champion", "demand/champion", "churn/dataset", "features/customer_activity"} <= keys, keys
    jobs = {job.name for job in snapshot.job_datas or []}
    assert "churn__retrain" in jobs, jobs


def test_image_runs_as_non_root_with_telemetry_off(
    code_server: tuple[str, int], user_code_image: str
) -> None:
    name, _ = code_server
    config = json.loads(_docker("image", "inspect", "--format", "{{json .Config}}", user_code_image).stdout)
    assert config["User"] == "10001:10001"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["BENTOML_DO_NOT_TRACK"] == "true"
    assert env["GX_ANALYTICS_ENABLED"] == "false"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
    assert "4000/tcp" in config["ExposedPorts"]
    assert not config.get("Entrypoint"), "launchers set the command; an ENTRYPOINT would wrap it"
    assert config["Cmd"][:3] == ["dagster", "api", "grpc"]
    assert "grpc-health-check" in " ".join(config["Healthcheck"]["Test"])

    status = _docker("exec", name, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert uids == ["10001"] * 4, f"the code server (PID 1) runs as {uids}"

    # The instance the code server would use reads telemetry off; asking for it writes no id.
    probe = "import dagster; print(dagster.DagsterInstance.get().telemetry_enabled)"
    answer = _docker("exec", name, "python", "-c", probe, timeout=120)
    assert answer.returncode == 0 and answer.stdout.strip().splitlines()[-1] == "False", answer.stderr
    shell = 'ls -A "$DAGSTER_HOME" "$HOME" && ls -A "$HOME/.dagster" || true'
    listing = _docker("exec", name, "sh", "-c", shell)
    assert listing.returncode == 0, listing.stderr
    assert ".telemetry" not in listing.stdout, listing.stdout
    assert "dagster.yaml" in listing.stdout

    # Multi-stage: the wheels and the build tree never reach the image.
    leftovers = _docker("exec", name, "sh", "-c", "ls /tmp/install /tmp/dist /tmp/src 2>/dev/null | wc -l")
    assert leftovers.stdout.strip() == "0", leftovers.stdout


@pytest.mark.parametrize("case", ["empty", "missing"])
def test_offline_build_takes_nothing_but_the_wheelhouse(base_image: str, tmp_path: Path, case: str) -> None:
    """Wheelhouse mode uses `--no-index`: a package absent from the wheelhouse fails the build even
    with the network there, and an empty wheelhouse is refused with the command that fills it."""
    context = tmp_path / "context"
    (context / "wheelhouse").mkdir(parents=True)
    (context / "wheelhouse" / ".gitignore").write_text("*\n")
    (context / "requirements.lock").write_text("six==1.17.0\n")
    if case == "missing":  # pip reads find-links by file name: a placeholder wheel is enough
        (context / "wheelhouse" / "placeholder-1.0-py3-none-any.whl").write_bytes(b"")
    proc = subprocess.run(
        [
            "docker", "build", "--network", "host", "--force-rm", "-f", str(ROOT / "deploy" / "Dockerfile"),
            "--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", "WHEELHOUSE=wheelhouse", str(context),
        ],
        capture_output=True, text=True, timeout=600, check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-2000:]
    if case == "empty":
        assert "no wheels in wheelhouse/: run 'make wheelhouse'" in output, output[-2000:]
    else:
        assert "No matching distribution found for six==1.17.0" in output, output[-2000:]
