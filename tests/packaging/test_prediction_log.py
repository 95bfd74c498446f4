"""Prediction logging: the bounded queue and its Parquet writer, the edge predictor and the served bento.

The queue is driven with writers the test holds or breaks (no timing assertions); the bento is served
for real (`bentoml serve` on 127.0.0.1, as in test_bento_served.py) and stopped with SIGTERM, so its
shutdown hook must write what is queued.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mlops_dagster.packaging import convert_to_onnx, write_bundle
from mlops_dagster.packaging.bento import BentoResult, build_bento
from mlops_dagster.packaging.edge_predictor import Predictor
from mlops_dagster.packaging.prediction_log import ROOT_ENV, PredictionLog, settings_for
from mlops_dagster.packaging.service_template import predict_rows, predict_rows_onnx, request_model
from mlops_dagster.quality.pii import hash_value
from mlops_dagster.registry.store import StoredVersion, load_version, read_card, save_version
from mlops_dagster.spec.models import PipelineSpec
from mlops_dagster.training.train import train_candidate
from tests.s3_server import local_s3, moto_server

PIPELINE = "plog_churn"
FEATURES = ["age", "plan"]
COLUMNS = ["id", "ts", "prediction", "proba_0", "proba_1", "model_version", "partition"]
WAIT = 60.0  # seconds a test waits for a thread before it fails (never a speed assertion)


def _log(root: Path | str, **kwargs: Any) -> PredictionLog:
    kwargs.setdefault("flush_interval", 3600.0)  # only flush_rows, flush() and close() write
    return PredictionLog(str(root), PIPELINE, entity="id", timestamp="ts", **kwargs)


def _served(root: Path) -> pd.DataFrame:
    folder = root / PIPELINE / "predictions" / "served"
    return pd.read_parquet(folder) if folder.exists() else pd.DataFrame()


class HeldWriter:
    """A store that blocks inside its first write until released."""

    def __init__(self) -> None:
        self.entered, self.release = threading.Event(), threading.Event()
        self.paths: list[str] = []

    def __call__(self, path: str, data: bytes) -> None:
        self.entered.set()
        assert self.release.wait(WAIT)
        self.paths.append(path)


def test_a_full_queue_drops_and_counts_rows_without_blocking(tmp_path: Path) -> None:
    writer = HeldWriter()
    log = _log(tmp_path, queue_size=5, flush_rows=1, write=writer)
    assert log.log({"id": 0}, [1], version="v")  # wakes the writer, which holds it
    assert writer.entered.wait(WAIT)
    answers: list[bool] = []
    caller = threading.Thread(
        target=lambda: answers.extend(log.log({"id": i}, [1], version="v") for i in range(8))
    )
    caller.start()
    caller.join(WAIT)
    assert not caller.is_alive()  # every call returned while the store was still held
    assert answers == [True] * 5 + [False] * 3
    assert log.log([{"id": 9}, {"id": 10}], [0, 1], version="v") is False  # a call is kept or dropped whole
    stats = log.stats()
    assert (stats["rows_dropped"], stats["rows_queued"], stats["rows_written"]) == (5, 5, 0)
    writer.release.set()
    log.close()
    stats = log.stats()
    assert (stats["rows_written"], stats["rows_dropped"], stats["rows_queued"]) == (6, 5, 0)


def test_background_writes_are_readable_parquet_in_daily_partitions(tmp_path: Path) -> None:
    log = _log(tmp_path)
    before = datetime.now(UTC).date().isoformat()
    rows = [
        {"id": 7, "ts": "2026-03-01T23:30:00Z", "age": 40.0},
        {"id": "c-8", "ts": "2026-03-02T01:00:00+02:00"},  # 2026-03-01 23:00 UTC
        {"id": 9, "ts": datetime(2026, 3, 2, 8, 0)},
        {"age": 1.0},  # no entity, no timestamp: null entity, the request's time
    ]
    assert log.log(
        rows, [1, 0, 1, 0], [[0.2, 0.8], [0.9, 0.1], [0.4, 0.6], [0.7, 0.3]], version="v1", classes=[0, 1]
    )
    assert log.flush(WAIT)
    after = datetime.now(UTC).date().isoformat()
    frame = _served(tmp_path).sort_values("prediction", kind="stable")
    assert list(frame.columns) == COLUMNS  # the shape of batch predictions; no feature is logged
    days = sorted(p.name for p in (tmp_path / PIPELINE / "predictions" / "served").iterdir())
    assert days[:2] == ["2026-03-01", "2026-03-02"] and days[2] in {before, after}
    by_id = {row["id"]: row for row in frame.to_dict("records")}
    assert by_id["7"]["ts"] == pd.Timestamp("2026-03-01 23:30") and by_id["7"]["partition"] == "2026-03-01"
    assert (
        by_id["c-8"]["ts"] == pd.Timestamp("2026-03-01 23:00") and by_id["c-8"]["partition"] == "2026-03-01"
    )
    assert by_id["9"]["partition"] == "2026-03-02" and by_id["9"]["proba_1"] == 0.6
    missing = frame[frame["id"].isna()].iloc[0]
    assert (
        missing["partition"] in {before, after} and missing["ts"].date().isoformat() == missing["partition"]
    )
    assert set(frame["model_version"]) == {"v1"} and frame["prediction"].dtype == np.int64
    log.close()


def test_close_writes_what_is_queued_and_later_calls_are_dropped(tmp_path: Path) -> None:
    log = _log(tmp_path, flush_rows=4)
    for i in range(10):
        log.log([{"id": i, "ts": "2026-01-05T10:00:00"}], [float(i)], version="v2")  # a regressor
    log.close()
    frame = _served(tmp_path)
    assert sorted(frame["prediction"]) == [float(i) for i in range(10)]
    assert list(frame.columns) == ["id", "ts", "prediction", "model_version", "partition"]
    assert all(len(pd.read_parquet(p)) <= 4 for p in (tmp_path / PIPELINE).rglob("*.parquet"))
    assert log.log({"id": 11}, [1.0], version="v2") is False
    assert log.stats()["rows_dropped"] == 1 and log.stats()["rows_written"] == 10


def test_each_file_holds_one_model_version(tmp_path: Path) -> None:
    log = _log(tmp_path)
    for version in ("v1", "v2", "v1"):  # a log outliving a model swap
        log.log({"id": 1, "ts": "2026-01-05T10:00:00"}, [1], [[0.4, 0.6]], version=version, classes=[0, 1])
    log.close()
    files = [pd.read_parquet(p) for p in (tmp_path / PIPELINE).rglob("*.parquet")]
    assert sorted(list(f["model_version"]) for f in files) == [["v1"], ["v1"], ["v2"]]


@pytest.mark.parametrize("classes", [[0.0, 1.0], [False, True], ["churn", "stay"]])
def test_probability_columns_are_named_as_in_batch_predictions(tmp_path: Path, classes: list[Any]) -> None:
    from mlops_dagster.factory.predictions import proba_column

    log = _log(tmp_path)
    log.log({"id": 1}, [classes[1]], [[0.25, 0.75]], version="v", classes=classes)
    log.close()
    frame = _served(tmp_path)
    assert [c for c in frame.columns if c.startswith("proba_")] == [proba_column(c) for c in classes]
    assert frame["prediction"].tolist() == [classes[1]]


def test_a_failing_store_is_logged_and_counted_and_the_writer_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[str] = []

    def flaky(path: str, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 1:
            raise OSError("the store is down")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)

    log = _log(tmp_path, write=flaky)
    assert log.log({"id": 1, "ts": "2026-01-01T00:00:00"}, [1.0], version="v")
    assert log.flush(WAIT)
    assert log.log({"id": 2, "ts": "2026-01-01T00:00:00"}, [2.0], version="v")
    log.close()
    stats = log.stats()
    assert (stats["write_errors"], stats["rows_failed"], stats["rows_written"]) == (1, 1, 1)
    assert list(_served(tmp_path)["id"]) == ["2"]
    assert "the store is down" in caplog.text


def test_pii_entities_are_hashed_as_the_dataset_stores_them(tmp_path: Path) -> None:
    log = _log(tmp_path, hash_entity=True)
    log.log([{"id": 100_001}, {"id": "ann@example.com"}], [1, 0], version="v", classes=[0, 1])
    log.close()
    assert sorted(_served(tmp_path)["id"]) == sorted([hash_value(100_001), hash_value("ann@example.com")])
    raw = b"".join(p.read_bytes() for p in tmp_path.rglob("*.parquet"))
    assert b"ann@example.com" not in raw and b"100001" not in raw


def _spec(**serving: Any) -> PipelineSpec:
    return PipelineSpec.model_validate(
        {
            "name": PIPELINE,
            "dataset": {
                "source": {"uri": "x.parquet"},
                "entity": "id",
                "timestamp": "ts",
                "label": "churn",
                "pii": ["id"],
            },
            "model": {
                "task": "classification",
                "estimator": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 500},
                "metric": "roc_auc",
                "features": FEATURES,
            },
            "serving": {"targets": ["cloud", "edge"], **serving},
        }
    )


def test_settings_follow_the_spec_and_the_root_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = settings_for(_spec(), None)
    assert off["enabled"] is False and PredictionLog.from_settings(off) is None
    on = settings_for(
        _spec(prediction_log={"enabled": True, "queue_size": 50, "flush_interval": "2m"}), "/baked"
    )
    assert (on["root"], on["queue_size"], on["flush_interval"]) == ("/baked", 50, 120.0)
    assert on["hash_entity"] is True and on["ignore_timestamp"] is False
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "override"))
    log = PredictionLog.from_settings(on)
    assert log is not None and log.folder == f"{tmp_path}/override/{PIPELINE}/predictions/served"
    log.close()


def test_an_s3_root_gets_the_environments_encryption(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mlops_dagster.environments import select_environment
    from mlops_dagster.spec.environments import EnvironmentSpec

    with moto_server() as endpoint, local_s3(endpoint, monkeypatch, tmp_path) as s3:
        bucket = s3.new_bucket()
        env = EnvironmentSpec.model_validate(
            {"name": "prod", "storage": f"s3://{bucket}/mlops", "encryption": {"sse": "s3"}}
        )
        spec = _spec(prediction_log={"enabled": True}).in_environment(select_environment([env], "prod"), {})
        # No environment is active in this process (as in a bento): the settings carry the encryption.
        settings = settings_for(spec, f"s3://{bucket}/mlops/data")
        assert settings["storage_options"] == {"s3_additional_kwargs": {"ServerSideEncryption": "AES256"}}
        log = PredictionLog.from_settings(settings)
        assert log is not None
        log.log([{"id": 1, "ts": "2026-02-01T10:00:00"}], [1], [[0.3, 0.7]], version="v", classes=[0, 1])
        log.close()
        (key,) = s3.keys(bucket)
        assert key.startswith(f"mlops/data/{PIPELINE}/predictions/served/2026-02-01/")
        assert s3.client.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"
        frame = pd.read_parquet(f"s3://{bucket}/{key}")
        assert list(frame.columns) == COLUMNS and frame["id"].tolist() == [hash_value(1)]


# ------------------------------------------------------------------------------ edge and served


@dataclass(frozen=True)
class Model:
    stored: StoredVersion
    bundle: Path
    data: pd.DataFrame


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    rng = np.random.default_rng(3)
    n = 200
    data = pd.DataFrame(
        {
            "id": np.arange(n),
            "ts": pd.date_range("2026-01-01", periods=n, freq="h"),
            "age": rng.normal(40, 10, n).round(1),
            "plan": rng.choice(["basic", "pro"], n),
        }
    )
    data["churn"] = ((data["age"] > 42) ^ (data["plan"] == "pro")).astype(int)
    spec = _spec()
    result = train_candidate(spec, data, FEATURES)
    card = {"features": result.features, "feature_schema": result.schema, "task": "classification"}
    stored = save_version(PIPELINE, result.model, card, "# {version}")
    fitted = load_version(stored.pipeline, stored.version, stored.sha256)
    schema = dict(read_card(stored.pipeline, stored.version)["feature_schema"])
    bundle = write_bundle(
        tmp_path_factory.mktemp("edge") / "bundle",
        convert_to_onnx(fitted, schema, "classification"),
        pipeline=PIPELINE,
        version=stored.version,
        model_sha256=stored.sha256,
        features=FEATURES,
        feature_schema=schema,
        task="classification",
        classes=fitted.classes_,
    )
    return Model(stored, bundle, data)


def _requests(model: Model, n: int = 6) -> list[dict[str, Any]]:
    rows = model.data.tail(n)
    return [
        {"id": int(r.id), "ts": r.ts.isoformat(), "age": float(r.age), "plan": str(r.plan)}
        for r in rows.itertuples()
    ]


def test_the_edge_predictor_logs_what_it_predicts(model: Model, tmp_path: Path) -> None:
    plain = Predictor(model.bundle)
    log = _log(tmp_path)
    logged = Predictor(model.bundle, prediction_log=log)
    rows = _requests(model)
    assert logged.predict_with_proba(rows) == plain.predict_with_proba(rows)
    assert logged.predict(rows[0]) == plain.predict(rows[0])
    assert logged.predict_proba(rows[1:3]) == plain.predict_proba(rows[1:3])
    log.close()
    frame = _served(tmp_path)
    assert len(frame) == 6 + 1 + 2 and set(frame["model_version"]) == {model.stored.version}
    labels, probabilities = plain.predict_with_proba(rows)
    first = frame[frame["id"] == str(rows[0]["id"])].iloc[0]
    assert first["prediction"] == labels[0] and first["proba_1"] == pytest.approx(probabilities[0][1])


def test_a_failing_store_never_fails_a_prediction(model: Model, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the root's folder should be")
    log = _log(blocker, flush_rows=1)  # the real store: every write fails (its root is a file)
    predictor = Predictor(model.bundle, prediction_log=log)
    rows = _requests(model)
    assert predictor.predict_with_proba(rows) == Predictor(model.bundle).predict_with_proba(rows)
    log.close()
    assert log.stats()["rows_failed"] == len(rows) and log.stats()["write_errors"] >= 1


@pytest.mark.parametrize("runtime", ["onnx", "sklearn"])
def test_the_service_logs_validated_rows_in_both_runtimes(model: Model, tmp_path: Path, runtime: str) -> None:
    """The service's predict functions in process: the request's entity and timestamp reach the log."""
    config = {
        "version": model.stored.version,
        "task": "classification",
        "features": FEATURES,
        "feature_schema": dict(read_card(PIPELINE, model.stored.version)["feature_schema"]),
        "max_rows": 10,
        "prediction_log": settings_for(_spec(), None),
    }
    rows = request_model(config).model_validate({"rows": _requests(model, 3)}).rows
    log = _log(tmp_path, row_attributes=("entity", "timestamp"))
    if runtime == "onnx":
        answer = predict_rows_onnx(Predictor(model.bundle), rows, config, log)
    else:
        answer = predict_rows(
            load_version(PIPELINE, model.stored.version, model.stored.sha256), rows, config, log
        )
    log.close()
    frame = _served(tmp_path).sort_values("ts")
    assert frame["id"].tolist() == [str(r["id"]) for r in _requests(model, 3)]
    assert frame["prediction"].tolist() == answer["predictions"]
    assert frame["ts"].tolist() == [pd.Timestamp(r["ts"]) for r in _requests(model, 3)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _call(url: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())


def _serve(bento: BentoResult, env: dict[str, str], log: Path, work: Callable[[str], Any]) -> Any:
    """`bentoml serve` the bento, run `work(url)` once it is ready, then stop it with SIGTERM (a clean
    stop: the workers' shutdown hooks run) and wait for it to exit."""
    port = _free_port()
    cmd = [sys.executable, "-m", "bentoml", "serve", bento.tag, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()[-4000:]
            try:
                if urllib.request.urlopen(f"{url}/readyz", timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()[-4000:]
            time.sleep(0.25)
        return work(url)
    finally:
        for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 5)):
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=wait)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue


@pytest.fixture
def serve_env() -> dict[str, str]:
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
    env.pop(ROOT_ENV, None)
    return env


def test_the_served_bento_logs_real_requests(model: Model, tmp_path: Path, serve_env: dict[str, str]) -> None:
    root = tmp_path / "store"
    spec = _spec(prediction_log={"enabled": True})
    bento = build_bento(
        PIPELINE,
        model.stored.version,
        model.stored.sha256,
        onnx_bundle=model.bundle,
        build_dir=tmp_path / "build",
        prediction_log=settings_for(spec, str(root)),
    )
    assert any(r.startswith("pyarrow==") for r in bento.requirements)
    rows = _requests(model)
    with_keys, without_keys = rows[:4], [{k: r[k] for k in FEATURES} for r in rows[4:]]

    def work(url: str) -> dict[str, Any]:
        answers = [
            _call(f"{url}/predict", {"rows": with_keys}),
            _call(f"{url}/predict", {"rows": without_keys}),
        ]
        health = _call(f"{url}/healthz")
        assert health["prediction_log"]["rows_dropped"] == 0
        return {"predictions": answers[0]["predictions"] + answers[1]["predictions"]}

    answered = _serve(bento, serve_env, tmp_path / "serve.log", work)
    frame = _served(root)
    assert list(frame.columns) == COLUMNS and len(frame) == len(rows)
    assert sorted(frame["prediction"]) == sorted(answered["predictions"])
    assert set(frame["id"].dropna()) == {hash_value(r["id"]) for r in with_keys}  # pii: hashed
    assert frame["id"].isna().sum() == len(without_keys)
    logged_times = set(frame["ts"].dropna())
    assert {pd.Timestamp(r["ts"]) for r in with_keys} <= logged_times


def test_a_bento_with_logging_off_by_default_writes_nothing(
    model: Model, tmp_path: Path, serve_env: dict[str, str]
) -> None:
    root = tmp_path / "store"
    bento = build_bento(
        PIPELINE,
        model.stored.version,
        model.stored.sha256,
        build_dir=tmp_path / "build",
        prediction_log=settings_for(_spec(), None),  # the spec's default: off
    )
    assert not any(r.startswith("pyarrow==") for r in bento.requirements)

    def work(url: str) -> Any:
        answer = _call(f"{url}/predict", {"rows": _requests(model)})  # entity and timestamp accepted
        assert "prediction_log" not in _call(f"{url}/healthz")
        return answer

    answer = _serve(bento, {**serve_env, ROOT_ENV: str(root)}, tmp_path / "serve.log", work)
    assert len(answer["predictions"]) == 6
    assert not root.exists()
