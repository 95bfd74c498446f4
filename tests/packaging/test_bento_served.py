"""The cloud bento, served for real: `bentoml serve` of the built bento in a subprocess, queried over HTTP.

One model is trained and stored the way the candidate asset does it, one bento is built from it, and one
server runs for the whole module (torn down, process group and all, whatever happens).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_dagster.errors import PackagingError, RegistryError
from mlops_dagster.packaging.bento import MAX_ROWS, BentoResult, build_bento, docker_available, service_config
from mlops_dagster.packaging.service_template import (
    field_type,
    load_checked_model,
    predict_rows,
    request_model,
)
from mlops_dagster.registry.store import StoredVersion, load_version, save_version
from mlops_dagster.spec.models import PipelineSpec
from mlops_dagster.training.train import prepare_frame, train_candidate

PIPELINE = "bento_churn"
FEATURES = ["age", "visits", "plan", "region"]
READY_TIMEOUT = 90.0


@dataclass(frozen=True)
class Trained:
    stored: StoredVersion
    spec: PipelineSpec
    data: pd.DataFrame


def _dataset(n: int = 240) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    df = pd.DataFrame(
        {
            "id": np.arange(n),
            "ts": pd.date_range("2026-01-01", periods=n, freq="h"),
            "age": rng.normal(40, 12, n).round(2),
            "visits": rng.integers(0, 30, n),
            "plan": rng.choice(["basic", "pro", "team"], n),
            "region": rng.choice(np.array(["eu", "us", None], dtype=object), n),
        }
    )
    df.loc[::17, "age"] = np.nan
    df["churn"] = ((df["age"].fillna(40) > 45) ^ (df["plan"] == "pro")).astype(int)
    return df


@pytest.fixture(scope="module")
def trained() -> Trained:
    spec = PipelineSpec.model_validate(
        {
            "name": PIPELINE,
            "dataset": {"source": {"uri": "x.parquet"}, "entity": "id", "timestamp": "ts", "label": "churn"},
            "model": {
                "task": "classification",
                "estimator": "sklearn.ensemble.RandomForestClassifier",
                "params": {"n_estimators": 25, "random_state": 0, "n_jobs": 2},
                "metric": "roc_auc",
            },
        }
    )
    data = _dataset()
    result = train_candidate(spec, data, FEATURES)
    card = {
        "features": result.features,
        "feature_schema": result.schema,
        "task": spec.model.task,
        "estimator": spec.model.estimator,
    }
    return Trained(save_version(PIPELINE, result.model, card, "# {version}"), spec, data)


@pytest.fixture(scope="module")
def bento(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> BentoResult:
    s = trained.stored
    return build_bento(s.pipeline, s.version, s.sha256, build_dir=tmp_path_factory.mktemp("bento-build"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> tuple[int, Message, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def _post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, Message, Any]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.headers, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, json.loads(e.read())


@pytest.fixture(scope="module")
def server(bento: BentoResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`bentoml serve <bento tag>` on 127.0.0.1, ready; killed (whole process group) afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("bento-serve") / "serve.log"
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "1"}  # BENTOML_HOME: conftest's
    cmd = [sys.executable, "-m", "bentoml", "serve", bento.tag, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                pytest.fail(f"bentoml serve exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if _get(f"{url}/readyz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"not ready after {READY_TIMEOUT:.0f} s:\n{log.read_text()[-4000:]}")
            time.sleep(0.25)
        yield url
    finally:
        for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue


def _json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them: plain JSON values, null for missing ones."""

    def plain(value: Any) -> Any:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        return value.item() if hasattr(value, "item") else value

    return [{k: plain(v) for k, v in row.items()} for row in frame[FEATURES].to_dict("records")]


def _expected(trained: Trained, frame: pd.DataFrame) -> tuple[list[Any], np.ndarray]:
    s = trained.stored
    model = load_version(s.pipeline, s.version, s.sha256)
    X, _ = prepare_frame(trained.spec, frame, FEATURES)
    return model.predict(X).tolist(), model.predict_proba(X)


def _rows(trained: Trained, n: int = 60) -> pd.DataFrame:
    frame = trained.data.tail(n).reset_index(drop=True)
    assert frame["region"].isna().any() and frame["age"].isna().any()  # nulls travel too
    return frame


def test_predictions_over_bentoml_client_match_the_model(server: str, trained: Trained) -> None:
    import bentoml

    frame = _rows(trained)
    predictions, probabilities = _expected(trained, frame)
    with bentoml.SyncHTTPClient(server, timeout=30) as client:
        out = client.predict(rows=_json_rows(frame))
    assert out["predictions"] == predictions
    np.testing.assert_allclose(out["probabilities"], probabilities, rtol=0, atol=1e-12)
    assert out["classes"] == [0, 1]
    assert out["model_version"] == trained.stored.version


def test_predictions_over_raw_http_match_the_model_and_carry_the_version(
    server: str, trained: Trained
) -> None:
    frame = _rows(trained, 25)
    predictions, probabilities = _expected(trained, frame)
    status, headers, out = _post(f"{server}/predict", json.dumps({"rows": _json_rows(frame)}).encode())
    assert status == 200, out
    assert out["predictions"] == predictions
    np.testing.assert_allclose(out["probabilities"], probabilities, rtol=0, atol=1e-12)
    assert headers["X-Model-Version"] == trained.stored.version
    assert headers["X-Model-Sha256"] == trained.stored.sha256


def test_health_readiness_and_version_endpoints_report_the_model(server: str, trained: Trained) -> None:
    for path in ("/healthz", "/readyz", "/livez", "/version"):
        status, headers, body = _get(f"{server}{path}")
        assert status == 200, (path, body)
        assert headers["X-Model-Version"] == trained.stored.version, path
        assert headers["X-Model-Sha256"] == trained.stored.sha256, path
    version = json.loads(_get(f"{server}/version")[2])
    assert version["model_version"] == trained.stored.version
    assert version["model_sha256"] == trained.stored.sha256
    assert version["features"] == FEATURES and version["max_rows"] == MAX_ROWS
    assert json.loads(_get(f"{server}/healthz")[2])["status"] == "ok"


GOOD = {"age": 51.5, "visits": 3, "plan": "pro", "region": None}
NO_PLAN = {k: v for k, v in GOOD.items() if k != "plan"}
VALID = "Input should be a valid"
BAD_REQUESTS = [
    pytest.param({"rows": [{**GOOD, "age": "old"}]}, 400, f"rows[0].age: {VALID} number", id="wrong type"),
    pytest.param({"rows": [{**GOOD, "age": "51"}]}, 400, f"rows[0].age: {VALID} number", id="number as text"),
    pytest.param({"rows": [GOOD, {**GOOD, "plan": 7}]}, 400, f"rows[1].plan: {VALID} string", id="not a str"),
    pytest.param({"rows": [NO_PLAN]}, 400, "rows[0].plan: Field required", id="missing field"),
    pytest.param(
        {"rows": [{**GOOD, "colour": "red"}]},
        400,
        "rows[0].colour: Extra inputs are not permitted",
        id="extra",
    ),
    pytest.param({"rows": [GOOD], "debug": 1}, 400, "debug: Extra inputs are not permitted", id="extra key"),
    pytest.param({}, 400, "rows: Field required", id="no rows"),
    pytest.param({"rows": []}, 400, "rows: List should have at least 1 item", id="empty batch"),
    pytest.param(
        {"rows": [GOOD] * (MAX_ROWS + 1)},
        400,
        f"rows: List should have at most {MAX_ROWS} items",
        id="oversized",
    ),
    pytest.param(b"age=51&plan=pro", 400, "Invalid JSON", id="non-JSON body"),
]


def test_a_body_over_the_cap_is_refused_from_its_headers(server: str, trained: Trained) -> None:
    """The 413 comes from Content-Length alone; the body is never sent (sending it would race the close)."""
    import http.client
    from urllib.parse import urlparse

    where = urlparse(server)
    conn = http.client.HTTPConnection(where.hostname, where.port, timeout=30)
    try:
        conn.putrequest("POST", "/predict")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", str(2_000_002))
        conn.endheaders()
        resp = conn.getresponse()
        out = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 413, out
    assert f"send at most {MAX_ROWS} rows" in out["error"]
    assert resp.headers["X-Model-Version"] == trained.stored.version


@pytest.mark.parametrize(("body", "status", "message"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_naming_the_problem(
    server: str, trained: Trained, body: Any, status: int, message: str
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, headers, out = _post(f"{server}/predict", raw)
    assert got == status, out
    assert message in out["error"], out["error"]
    assert headers["X-Model-Version"] == trained.stored.version


def test_nulls_are_accepted_for_every_nullable_feature(server: str) -> None:
    status, _, out = _post(f"{server}/predict", json.dumps({"rows": [dict.fromkeys(FEATURES)]}).encode())
    assert status == 200, out
    assert len(out["predictions"]) == 1 and len(out["probabilities"][0]) == 2


def test_bento_has_a_dockerfile_with_the_pinned_requirements(bento: BentoResult, trained: Trained) -> None:
    dockerfile = Path(bento.dockerfile_path)
    assert dockerfile == Path(bento.path) / "env" / "docker" / "Dockerfile" and dockerfile.is_file()
    text = dockerfile.read_text()
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert f"python:{python}" in text and "env/python/requirements.txt" in text
    requirements = (Path(bento.path) / "env" / "python" / "requirements.txt").read_text().splitlines()
    for name in ("scikit-learn", "pandas", "numpy", "joblib", "pydantic", "bentoml"):
        assert f"{name}=={metadata.version(name)}" in requirements, name
    assert bento.python_version == python
    assert "OMP_NUM_THREADS=1" in text


def test_bento_is_self_contained_and_metadata_friendly(bento: BentoResult, trained: Trained) -> None:
    s = trained.stored
    assert bento.tag.startswith(f"{PIPELINE}:{s.version}-")
    assert (bento.model_tag, bento.model_version, bento.sha256) == (s.tag, s.version, s.sha256)
    assert bento.size_bytes > 0
    bento_yaml = (Path(bento.path) / "bento.yaml").read_text()
    assert f"tag: {s.tag}" in bento_yaml  # the model is a declared part of the bento
    sources = "\n".join(p.read_text() for p in (Path(bento.path) / "src").glob("*.py"))
    assert not re.search(r"^\s*(from|import) (mlops_dagster|dagster)\b", sources, re.M)
    row = bento.api_schema["$defs"]["Row"]
    assert row["required"] == FEATURES and row["additionalProperties"] is False
    assert bento.api_schema["properties"]["rows"]["maxItems"] == MAX_ROWS
    json.dumps(bento.to_dict())


def test_building_again_reuses_the_bento(bento: BentoResult, trained: Trained, tmp_path: Path) -> None:
    s = trained.stored
    again = build_bento(s.pipeline, s.version, s.sha256, build_dir=tmp_path, containerize=False)
    assert again.tag == bento.tag and again.containerize_note.startswith("containerize=False")


def test_containerize_is_skipped_without_a_docker_daemon(bento: BentoResult) -> None:
    if docker_available()[0]:
        pytest.skip("a Docker daemon answers here: build_bento containerized instead")
    assert bento.containerized is False
    assert bento.containerize_note.startswith("no Docker daemon:")
    assert f"bentoml containerize {bento.tag}" in bento.containerize_note


def test_service_refuses_a_model_not_hashing_to_the_build(trained: Trained) -> None:
    s = trained.stored
    config = {"model_tag": s.tag, "sha256": s.sha256}
    model = load_checked_model(config)
    assert model.get_params()["model__n_jobs"] == 1  # served single-threaded
    with pytest.raises(RuntimeError, match="refusing to load it"):
        load_checked_model({**config, "sha256": "0" * 64})


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        ("float64", float | None),
        ("int64", float | None),
        ("Int64", float | None),
        ("float32", float | None),
        ("object", str | None),
        ("string", str | None),
        ("category", str | None),
        ("bool", bool),
        ("boolean", bool | None),
    ],
)
def test_feature_dtypes_map_to_request_types(dtype: str, expected: Any) -> None:
    assert field_type(dtype) == expected


def test_unservable_schemas_are_refused_before_building() -> None:
    with pytest.raises(PackagingError, match=r"datetime64\[ns\]"):
        service_config(
            {"features": ["t"], "feature_schema": {"t": "datetime64[ns]"}, "task": "r"}, "p", "v", "s"
        )
    with pytest.raises(PackagingError, match="'u' has no dtype"):
        service_config({"features": ["t", "u"], "feature_schema": {"t": "int64"}, "task": "r"}, "p", "v", "s")
    with pytest.raises(RegistryError, match="no feature_schema"):
        service_config({"features": ["t"], "task": "regression"}, "p", "v", "s")


def test_regressors_answer_predictions_without_probabilities() -> None:
    from sklearn.linear_model import LinearRegression

    config = {
        "features": ["x", "kind"],
        "feature_schema": {"x": "float64", "kind": "object"},
        "max_rows": 3,
        "task": "regression",
        "version": "v1",
    }
    model = LinearRegression().fit(pd.DataFrame({"x": [0.0, 1.0, 2.0]}), [1.0, 3.0, 5.0])
    request = request_model(config).model_validate({"rows": [{"x": 4, "kind": None}]})
    out = predict_rows(_OnlyX(model), request.rows, config)
    assert out == {"predictions": [pytest.approx(9.0)], "model_version": "v1"}


class _OnlyX:
    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, frame: pd.DataFrame) -> Any:
        assert frame["x"].dtype == "float64" and frame["kind"].tolist() == [None]
        return self.model.predict(frame[["x"]])
