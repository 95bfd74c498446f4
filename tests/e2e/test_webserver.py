"""What `make dev` serves: the demo graph via the webserver's GraphQL API; `dagster definitions validate`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
BIN = Path(sys.executable).parent


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "BENTOML_DO_NOT_TRACK": "true",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(port: int, query: str) -> dict:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["data"]


def test_definitions_validate(storage):  # type: ignore[no-untyped-def]
    out = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=_env(storage),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.fixture
def webserver(storage):  # type: ignore[no-untyped-def]
    port = _free_port()
    proc = subprocess.Popen(
        [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=_env(storage),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"webserver exited: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("webserver did not answer within 120 s")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_ui_shows_the_demo_graph(webserver):  # type: ignore[no-untyped-def]
    data = _graphql(webserver, "{ assetNodes { assetKey { path } groupName kinds dependencyKeys { path } } }")
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert set(nodes) == {
        f"{p}/{a}"
        for p in ("churn", "demand")
        for a in ("dataset", "training_set", "candidate", "champion", "drift_report", "bento", "edge_bundle")
    } | {"features/customer_activity", "churn/predictions", "churn/feedback", "churn/live_performance"}
    assert nodes["features/customer_activity"]["groupName"] == "features"
    assert nodes["churn/dataset"]["groupName"] == "churn"
    shared = [
        k for k, n in nodes.items() if {"path": ["features", "customer_activity"]} in n["dependencyKeys"]
    ]
    # one group, two consumers (churn's batch predictions join it as its training set does)
    assert sorted(shared) == ["churn/predictions", "churn/training_set", "demand/training_set"]
    repos = _graphql(
        webserver,
        "{ repositoriesOrError { ... on RepositoryConnection { nodes { "
        "jobs { name } sensors { name } } } } }",
    )
    repo = repos["repositoriesOrError"]["nodes"][0]
    assert {"churn__retrain", "demand__retrain", "demo__advance_day"} <= {j["name"] for j in repo["jobs"]}
    assert "demo__landing_sensor" in {s["name"] for s in repo["sensors"]}
