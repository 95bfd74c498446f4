"""`<p>__quality_sensor`: alerts once per failing partition; retrains once when it passes again."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dagster as dg
import pytest

from assets import feed
from mlops_dagster import Notifier
from mlops_dagster.io.parquet import ParquetIOManager
from mlops_dagster.io.quarantine import Quarantine

DATASET = dg.AssetKey(["churn", "dataset"])


class _Recorder(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook():  # type: ignore[no-untyped-def]
    _Recorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Recorder.received
    server.shutdown()
    server.server_close()


def _tick(defs, instance, notifier, cursor):  # type: ignore[no-untyped-def]
    sensor = defs.resolve_sensor_def("churn__quality_sensor")
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"mlops_notifier": notifier}
    )
    return sensor(context)


def _land(defs, instance, day: str, scenario: str) -> bool:  # type: ignore[no-untyped-def]
    feed.write_batch("churn", day, scenario)
    result = dg.materialize(
        list(defs.assets),
        selection=[DATASET],
        instance=instance,
        resources=defs.resources,
        partition_key=day,
        raise_on_error=False,
    )
    return result.success


def test_alert_once_then_retrain_once_after_recovery(demo_defs, webhook):  # type: ignore[no-untyped-def]
    url, received = webhook
    notifier = Notifier(kind="webhook", url=url, backoff_seconds=0.01)
    instance = dg.DagsterInstance.ephemeral()
    sensor = demo_defs.resolve_sensor_def("churn__quality_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.job_name == "churn__retrain"

    assert isinstance(_tick(demo_defs, instance, notifier, None), dg.SkipReason)  # nothing evaluated yet
    assert _land(demo_defs, instance, "2026-01-01", "normal")
    first = _tick(demo_defs, instance, notifier, None)
    assert first.run_requests == [] and received == []

    assert not _land(demo_defs, instance, "2026-01-02", "quality_incident")
    failing = _tick(demo_defs, instance, notifier, first.cursor)
    assert failing.run_requests == []
    assert len(received) == 1
    alert = received[0]
    assert alert["partition"] == "2026-01-02" and alert["severity"] == "error"
    assert "expect_column_values_to_not_be_null__customer_id" in alert["details"]["failed_checks"]
    assert "mlops_schema_guard" in alert["details"]["failed_checks"]  # tenure_months int64 -> object
    assert Quarantine(ParquetIOManager().root()).get(DATASET, "2026-01-02") is not None

    # The same partition failing again is not a new incident: no second alert.
    assert not _land(demo_defs, instance, "2026-01-02", "quality_incident")
    again = _tick(demo_defs, instance, notifier, failing.cursor)
    assert again.run_requests == [] and len(received) == 1
    assert isinstance(_tick(demo_defs, instance, notifier, again.cursor), dg.SkipReason)

    # Fixed data passes: the quarantine is released and one retrain is requested, once.
    assert _land(demo_defs, instance, "2026-01-02", "normal")
    assert Quarantine(ParquetIOManager().root()).get(DATASET, "2026-01-02") is None
    recovered = _tick(demo_defs, instance, notifier, again.cursor)
    assert len(recovered.run_requests) == 1
    request = recovered.run_requests[0]
    assert request.run_key.startswith("quality-recovered:churn/dataset:2026-01-02:")
    assert request.tags["mlops/trigger"] == "quality_recovered"
    assert isinstance(_tick(demo_defs, instance, notifier, recovered.cursor), dg.SkipReason)
    assert len(received) == 1


def test_delivery_failure_never_fails_the_tick(demo_defs):  # type: ignore[no-untyped-def]
    notifier = Notifier(
        kind="webhook", url="http://127.0.0.1:9/unreachable", max_attempts=2, backoff_seconds=0.01
    )
    instance = dg.DagsterInstance.ephemeral()
    assert not _land(demo_defs, instance, "2026-01-05", "quality_incident")
    result = _tick(demo_defs, instance, notifier, None)
    assert json.loads(result.cursor)["failing"]  # the failure is still tracked


def test_spec_can_turn_the_sensor_off(tmp_path):  # type: ignore[no-untyped-def]
    from pathlib import Path

    from mlops_dagster import build_definitions

    root = Path(__file__).parents[2] / "pipelines"
    for name in ("churn.yaml", "demand.yaml", "features.yaml"):
        text = (root / name).read_text()
        if name == "churn.yaml":
            text = text.replace("monitoring:\n", "monitoring:\n  quality_sensor: false\n")
        (tmp_path / name).write_text(text)
    defs = build_definitions(tmp_path)
    assert defs.resolve_sensor_def("churn__quality_sensor").default_status == dg.DefaultSensorStatus.STOPPED
    assert defs.resolve_sensor_def("demand__quality_sensor").default_status == dg.DefaultSensorStatus.RUNNING
