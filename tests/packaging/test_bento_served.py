"""The cloud bento, served for real: `bentoml serve` of the built bento in a subprocess, queried over HTTP.

One model is trained and stored the way the candidate asset does it, and one bento per runtime is built
from it: `onnx` (its edge bundle, run by onnxruntime) and `sklearn` (the pickled model). Every served test
runs against both; one server per runtime runs at a time (torn down, process group and all, whatever
happens).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
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
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_dagster.errors import IntegrityError, PackagingError, RegistryError
from mlops_dagster.packaging import convert_to_onnx, write_bundle
from mlops_dagster.packaging.bento import MAX_ROWS, BentoResult, build_bento, docker_available, service_config
from mlops_dagster.packaging.edge_predictor import Predictor
from mlops_dagster.packaging.service_template import (
    field_type,
    load_checked_bundle,
    load_checked_model,
    predict_rows,
    request_model,
)
from mlops_dagster.registry.store import StoredVersion, load_version, read_card, save_version
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


def _write_bundle(trained: Trained, where: Path, *, sha256: str | None = None) -> Path:
    """The stored model's edge bundle, as the packaging assets write it."""
    s = trained.stored
    model = load_version(s.pipeline, s.version, s.sha256)
    schema = dict(read_card(s.pipeline, s.version)["feature_schema"])
    return write_bundle(
        where,
        convert_to_onnx(model, schema, "classification"),
        pipeline=s.pipeline,
        version=s.version,
        model_sha256=sha256 or s.sha256,
        features=FEATURES,
        feature_schema=schema,
        task="classification",
        classes=model.classes_,
    )


@pytest.fixture(scope="module")
def bundle(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_bundle(trained, tmp_path_factory.mktemp("edge") / "bundle")


@pytest.fixture(scope="module", params=["onnx", "sklearn"])
def bento(
    request: pytest.FixtureRequest, trained: Trained, bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> BentoResult:
    s = trained.stored
    onnx = bundle if request.param == "onnx" else None
    result = build_bento(
        s.pipeline, s.version, s.sha256, onnx_bundle=onnx, build_dir=tmp_path_factory.mktemp("bento-build")
    )
    assert result.runtime == request.param
    return result


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


@dataclass(frozen=True)
class Served:
    url: str
    log: Path  # the server's stdout and stderr (unbuffered)


@pytest.fixture(scope="module")
def served(bento: BentoResult, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`bentoml serve <bento tag>` on 127.0.0.1, ready; killed (whole process group) afterwards."""
    port = _free_port()
    log = tmp_path_factory.mktemp("bento-serve") / "serve.log"
    env = {  # BENTOML_HOME: conftest's
        **os.environ,
        "BENTOML_DO_NOT_TRACK": "true",
        "DO_NOT_TRACK": "1",
        "PYTHONUNBUFFERED": "1",
    }
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
        yield Served(url, log)
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


@pytest.fixture(scope="module")
def server(served: Served) -> str:
    return served.url


def _json_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as a client sends them: plain JSON values, null for missing ones."""

    def plain(value: Any) -> Any:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        return value.item() if hasattr(value, "item") else value

    return [{k: plain(v) for k, v in row.items()} for row in frame[FEATURES].to_dict("records")]


def _expected(
    trained: Trained, frame: pd.DataFrame, bento: BentoResult, bundle: Path
) -> tuple[list[Any], np.ndarray]:
    """What the bento must answer: the in-process model it serves (the ONNX bundle, or sklearn)."""
    if bento.runtime == "onnx":
        labels, probabilities = Predictor(bundle).predict_with_proba(_json_rows(frame))
        return labels, np.asarray(probabilities)
    s = trained.stored
    model = load_version(s.pipeline, s.version, s.sha256)
    X, _ = prepare_frame(trained.spec, frame, FEATURES)
    return model.predict(X).tolist(), model.predict_proba(X)


def _sklearn_probabilities(trained: Trained, frame: pd.DataFrame) -> np.ndarray:
    s = trained.stored
    X, _ = prepare_frame(trained.spec, frame, FEATURES)
    return np.asarray(load_version(s.pipeline, s.version, s.sha256).predict_proba(X))


def _rows(trained: Trained, n: int = 60) -> pd.DataFrame:
    frame = trained.data.tail(n).reset_index(drop=True)
    assert frame["region"].isna().any() and frame["age"].isna().any()  # nulls travel too
    return frame


def test_predictions_over_bentoml_client_match_the_model(
    server: str, trained: Trained, bento: BentoResult, bundle: Path
) -> None:
    import bentoml

    frame = _rows(trained)
    predictions, probabilities = _expected(trained, frame, bento, bundle)
    with bentoml.SyncHTTPClient(server, timeout=30) as client:
        out = client.predict(rows=_json_rows(frame))
    assert out["predictions"] == predictions
    np.testing.assert_allclose(out["probabilities"], probabilities, rtol=0, atol=1e-12)
    assert out["classes"] == [0, 1]
    assert out["model_version"] == trained.stored.version
    # Whatever the runtime, the answer is the champion's (the ONNX graph is float32 inside).
    np.testing.assert_allclose(
        out["probabilities"], _sklearn_probabilities(trained, frame), rtol=0, atol=1e-4
    )


def test_predictions_over_raw_http_match_the_model_and_carry_the_version(
    server: str, trained: Trained, bento: BentoResult, bundle: Path
) -> None:
    frame = _rows(trained, 25)
    predictions, probabilities = _expected(trained, frame, bento, bundle)
    status, headers, out = _post(f"{server}/predict", json.dumps({"rows": _json_rows(frame)}).encode())
    assert status == 200, out
    assert out["predictions"] == predictions
    np.testing.assert_allclose(out["probabilities"], probabilities, rtol=0, atol=1e-12)
    assert headers["X-Model-Version"] == trained.stored.version
    assert headers["X-Model-Sha256"] == trained.stored.sha256


def test_health_readiness_and_version_endpoints_report_the_model(
    server: str, trained: Trained, bento: BentoResult
) -> None:
    for path in ("/healthz", "/readyz", "/livez", "/version"):
        status, headers, body = _get(f"{server}{path}")
        assert status == 200, (path, body)
        assert headers["X-Model-Version"] == trained.stored.version, path
        assert headers["X-Model-Sha256"] == trained.stored.sha256, path
    version = json.loads(_get(f"{server}/version")[2])
    assert version["model_version"] == trained.stored.version
    assert version["model_sha256"] == trained.stored.sha256
    assert version["features"] == FEATURES and version["max_rows"] == MAX_ROWS
    assert (version["runtime"], version["served_model_tag"]) == (bento.runtime, bento.served_model_tag)
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
    *[
        pytest.param(
            b'{"rows": [{"age": %s, "visits": 3, "plan": "pro", "region": null}]}' % literal,
            400,
            "rows[0].age: Input should be a finite number",
            id=f"{literal.decode()} literal",
        )
        for literal in (b"NaN", b"Infinity", b"-Infinity", b"1e309", b"-1e309")
    ],
    pytest.param(
        {"rows": [GOOD, {**GOOD, "visits": float("inf")}]},
        400,
        "rows[1].visits: Input should be a finite number",
        id="json.dumps infinity",
    ),
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


def _raw_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, headers and body of one HTTP/1.1 answer read off `sock`, and whether the server then
    closed the connection (the next read is end-of-file)."""
    import http.client

    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    headers = {k.lower(): v for k, v in response.getheaders()}
    closed = sock.recv(1) == b""
    return response.status, headers, body, closed


def test_a_chunked_body_is_cut_off_at_the_cap(server: str, trained: Trained) -> None:
    """No Content-Length: the server counts the chunks it receives and answers 413 one byte past the cap,
    without waiting for the body to end (the final chunk is never sent), then closes the connection."""
    from urllib.parse import urlparse

    cap = json.loads(_get(f"{server}/version")[2])["max_body_bytes"]
    where = urlparse(server)
    with socket.create_connection((where.hostname, where.port), timeout=60) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        left = cap + 1
        while left:
            chunk = b" " * min(left, 65536)  # whitespace: valid JSON padding, were it ever parsed
            left -= len(chunk)
            # The last chunk's closing CRLF is not sent either: the server reads every byte sent (so it
            # closes cleanly, with nothing unread), and the body stays open: only a server that stops at
            # the cap answers at all.
            sock.sendall(b"%x\r\n%s%s" % (len(chunk), chunk, b"\r\n" if left else b""))
        status, headers, body, closed = _raw_response(sock)
    assert status == 413, body
    assert f"over the limit of {cap} bytes" in json.loads(body)["error"]
    assert headers["x-model-version"] == trained.stored.version
    assert closed


def test_a_chunked_body_within_the_cap_is_served(server: str, trained: Trained) -> None:
    """Chunked requests under the cap still work (the middleware hands the whole body on)."""
    from urllib.parse import urlparse

    body = json.dumps({"rows": [GOOD, NO_PLAN | {"plan": None}]}).encode()
    where = urlparse(server)
    with socket.create_connection((where.hostname, where.port), timeout=60) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        )
        for i in range(0, len(body), 7):
            sock.sendall(b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]))
        sock.sendall(b"0\r\n\r\n")
        status, _, answer, _ = _raw_response(sock)
    assert status == 200, answer
    assert len(json.loads(answer)["predictions"]) == 2


def test_a_400_for_a_huge_body_stays_small(server: str) -> None:
    """A row with 100 000 unknown keys: the answer names the first few and counts the rest."""
    row = {**GOOD, **{f"k{i}": 0 for i in range(100_000)}}
    raw = json.dumps({"rows": [row]}, separators=(",", ":")).encode()
    status, _, out = _post(f"{server}/predict", raw)
    assert status == 400
    assert len(json.dumps(out)) < 4000
    assert out["error"].startswith("invalid request (100000 errors): rows[0].k0: Extra inputs")
    assert out["error"].endswith("and 99995 more") and out["error_count"] == 100_000
    assert len(out["detail"]) == 5
    garbage = b"\xff{" + b"x" * 500_000
    status, _, out = _post(f"{server}/predict", garbage)
    assert status == 400 and len(json.dumps(out)) < 2000 and "Invalid JSON" in out["error"]


def test_a_number_too_large_for_float32_is_a_client_error(server: str) -> None:
    """1e39 is a finite JSON number, but the models compute in float32: a 400 naming the field."""
    status, _, out = _post(f"{server}/predict", json.dumps({"rows": [{**GOOD, "age": -1e39}]}).encode())
    assert status == 400, out
    assert "rows[0].age: Value error, -1e+39 is out of range: the model computes in float32" in out["error"]


def test_client_errors_are_logged_at_info_without_a_traceback(served: Served) -> None:
    """BentoML logs a handler's exception at ERROR with its stack; a client's mistake is one INFO line."""
    marker = "unknown_field_for_the_log"
    start = served.log.stat().st_size
    status, _, _ = _post(f"{served.url}/predict", json.dumps({"rows": [{**GOOD, marker: 1}]}).encode())
    assert status == 400

    def logged_since() -> str:
        with served.log.open("rb") as f:
            f.seek(start)
            return f.read().decode(errors="replace")

    deadline = time.monotonic() + READY_TIMEOUT  # the line is written before the answer; allow slow disks
    while marker not in logged_since():
        assert time.monotonic() < deadline, logged_since()[-4000:]
        time.sleep(0.1)
    lines = logged_since().splitlines()
    logged = [line for line in lines if marker in line]
    assert len(logged) == 1 and "client error 400" in logged[0] and "INFO" in logged[0], logged
    assert not any("Traceback" in line or "ERROR" in line for line in lines), "\n".join(lines[-40:])


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
    if bento.runtime == "onnx":
        needed, absent = ("onnxruntime", "numpy", "pydantic", "bentoml"), ("scikit-learn", "pandas", "joblib")
    else:
        needed, absent = (
            ("scikit-learn", "pandas", "numpy", "joblib", "pydantic", "bentoml"),
            ("onnxruntime",),
        )
    for name in needed:
        assert f"{name}=={metadata.version(name)}" in requirements, name
    for name in absent:
        assert not any(line.startswith(f"{name}==") for line in requirements), name
    assert bento.python_version == python
    assert "OMP_NUM_THREADS=1" in text


def test_bento_is_self_contained_and_metadata_friendly(bento: BentoResult, trained: Trained) -> None:
    s = trained.stored
    assert bento.tag.startswith(f"{PIPELINE}:{s.version}-")
    assert (bento.model_tag, bento.model_version, bento.sha256) == (s.tag, s.version, s.sha256)
    assert bento.size_bytes > 0
    bento_yaml = (Path(bento.path) / "bento.yaml").read_text()
    served = f"{s.pipeline}_edge:{s.version}" if bento.runtime == "onnx" else s.tag
    assert bento.served_model_tag == served
    assert f"tag: {served}" in bento_yaml  # the served model is a declared part of the bento
    sources = "\n".join(p.read_text() for p in (Path(bento.path) / "src").rglob("*.py"))
    assert not re.search(r"^\s*(from|import) (mlops_dagster|dagster)\b", sources, re.M)
    assert "from .service_http import" in sources and "from .edge_predictor import" in sources
    row = bento.api_schema["$defs"]["Row"]
    assert row["required"] == FEATURES and row["additionalProperties"] is False
    assert bento.api_schema["properties"]["rows"]["maxItems"] == MAX_ROWS
    json.dumps(bento.to_dict())


def test_building_again_reuses_the_bento(
    bento: BentoResult, trained: Trained, bundle: Path, tmp_path: Path
) -> None:
    s = trained.stored
    onnx = bundle if bento.runtime == "onnx" else None
    again = build_bento(
        s.pipeline, s.version, s.sha256, onnx_bundle=onnx, build_dir=tmp_path, containerize=False
    )
    assert again.tag == bento.tag and again.containerize_note.startswith("containerize=False")


def test_containerize_is_asked_for_and_skipped_without_a_docker_daemon(
    bento: BentoResult, trained: Trained, bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert bento.containerized is False and bento.containerize_note.startswith("containerize=False")
    monkeypatch.setenv("PATH", str(tmp_path))  # no `docker` CLI: as on a machine without Docker
    assert docker_available()[0] is False
    s = trained.stored
    onnx = bundle if bento.runtime == "onnx" else None
    asked = build_bento(
        s.pipeline, s.version, s.sha256, onnx_bundle=onnx, build_dir=tmp_path / "b", containerize=True
    )
    assert asked.tag == bento.tag and asked.containerized is False
    assert asked.containerize_note.startswith("no Docker daemon:")
    assert f"bentoml containerize {bento.tag}" in asked.containerize_note


def test_service_refuses_a_model_not_hashing_to_the_build(trained: Trained) -> None:
    s = trained.stored
    config = {"model_tag": s.tag, "sha256": s.sha256}
    model = load_checked_model(config)
    assert model.get_params()["model__n_jobs"] == 1  # served single-threaded
    with pytest.raises(RuntimeError, match="refusing to load it"):
        load_checked_model({**config, "sha256": "0" * 64})


def _onnx_config(trained: Trained, bundle: Path, build_dir: Path) -> dict[str, Any]:
    """The config a bento serving `bundle` runs with, as its build wrote it."""
    s = trained.stored
    built = build_bento(
        s.pipeline, s.version, s.sha256, onnx_bundle=bundle, build_dir=build_dir, containerize=False
    )
    return dict(json.loads((Path(built.path) / "src" / "bento_config.json").read_text()))


def test_service_refuses_a_bundle_not_matching_the_build(
    trained: Trained, bundle: Path, tmp_path: Path
) -> None:
    config = _onnx_config(trained, bundle, tmp_path)
    assert load_checked_bundle(config).predict(dict.fromkeys(FEATURES)) in ([0], [1])
    with pytest.raises(RuntimeError, match="model_sha256 is .*expected '0000.*refusing to serve it"):
        load_checked_bundle({**config, "sha256": "0" * 64})
    with pytest.raises(RuntimeError, match="version is .*expected 'v0'.*refusing to serve it"):
        load_checked_bundle({**config, "version": "v0"})
    with pytest.raises(RuntimeError, match="model.onnx has sha256 .*built for 1111"):
        load_checked_bundle({**config, "onnx_sha256": "1" * 64})
    with pytest.raises(RuntimeError, match="manifest.json is .*recorded with 2222.*refusing to serve it"):
        load_checked_bundle({**config, "bundle_manifest_sha256": "2" * 64})


def _store_copy(config: dict[str, Any], where: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the stored bundle that the service's `bentoml.models.get` finds instead of the original."""
    import bentoml

    copy = where / "stored"
    shutil.copytree(bentoml.models.get(config["onnx_model_tag"]).path, copy)
    assert (copy / "model.yaml").is_file()  # BentoML's record, tolerated next to the bundle's files
    monkeypatch.setattr(bentoml.models, "get", lambda tag: SimpleNamespace(path=str(copy), tag=tag))
    return copy


@pytest.mark.parametrize("how", ["predictor only", "predictor and manifest", "extra module"])
def test_service_runs_no_code_from_a_tampered_bundle(
    how: str, trained: Trained, bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line appended to the stored predictor.py never runs, even with the manifest rewritten to match."""
    config = _onnx_config(trained, bundle, tmp_path / "build")
    stored = _store_copy(config, tmp_path, monkeypatch)
    assert load_checked_bundle(config).predict(dict.fromkeys(FEATURES)) in ([0], [1])  # the copy serves
    marker = tmp_path / "marker"
    line = f"\nimport pathlib; pathlib.Path({str(marker)!r}).write_text('ran')\n"
    if how == "extra module":
        (stored / "sitecustomize.py").write_text(line)
        expected = "sitecustomize.py is not named in manifest.json"
    else:
        with (stored / "predictor.py").open("a") as f:
            f.write(line)
        expected = "sha256 of .*predictor.py is "
    if how == "predictor and manifest":
        manifest = json.loads((stored / "manifest.json").read_text())
        manifest["files"]["predictor.py"] = hashlib.sha256((stored / "predictor.py").read_bytes()).hexdigest()
        (stored / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        expected = "sha256 of .*manifest.json is .*the bundle was recorded with"
    with pytest.raises(RuntimeError, match=expected) as info:
        load_checked_bundle(config)
    assert "refusing to serve it" in str(info.value)
    assert not marker.exists()


def test_a_bundle_of_another_model_is_refused_before_building(trained: Trained, tmp_path: Path) -> None:
    s = trained.stored
    other = _write_bundle(trained, tmp_path / "other", sha256="f" * 64)
    with pytest.raises(
        IntegrityError, match=f"packages model sha256 {'f' * 64}, not {s.pipeline}:{s.version}"
    ):
        build_bento(
            s.pipeline, s.version, s.sha256, onnx_bundle=other, build_dir=tmp_path / "b", containerize=False
        )
    with pytest.raises(PackagingError, match="at least 1 worker"):
        build_bento(s.pipeline, s.version, s.sha256, workers=0, build_dir=tmp_path / "c", containerize=False)


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


def test_concurrent_requests_each_get_their_own_answer(
    server: str, trained: Trained, bento: BentoResult, bundle: Path
) -> None:
    """16 clients at once, each with its own row: no answer is another request's (buffers are reused)."""
    from concurrent.futures import ThreadPoolExecutor

    frame = _rows(trained, 48)
    rows = _json_rows(frame)
    _, probabilities = _expected(trained, frame, bento, bundle)

    def ask(i: int) -> tuple[int, list[float]]:
        status, _, out = _post(f"{server}/predict", json.dumps({"rows": [rows[i]]}).encode())
        assert status == 200, out
        return i, out["probabilities"][0]

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(ask, [i % len(rows) for i in range(96)]))
    for i, got in answers:
        np.testing.assert_allclose(got, probabilities[i], rtol=0, atol=1e-6, err_msg=f"row {i}")
