"""`<p>__quality_sensor`: alerts once per failing partition; retrains once when it passes again."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import dagster as dg
import pytest

from assets import feed
from mlops_dagster import Notifier
from mlops_dagster.alerts import Alert
from mlops_dagster.alerts.delivery import MIN_ATTEMPT_SECONDS
from mlops_dagster.io.parquet import ParquetIOManager
from mlops_dagster.io.quarantine import Quarantine
from mlops_dagster.sensors import quality
from tests.alerts.test_notifier import Receiver, Reply

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


# ---------------------------------------------------------------------------- the alert time budget


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SlowNotifier:
    """Stands in for `Notifier`: records each alert and its deadline; each send costs `cost` fake seconds."""

    def __init__(self, clock: FakeClock, cost: float) -> None:
        self.clock, self.cost = clock, cost
        self.sent: list[tuple[Alert, float | None]] = []

    def send(self, alert: Alert, log: Any = None, *, deadline: float | None = None) -> bool:
        self.sent.append((alert, deadline))
        self.clock.now += self.cost
        return True

    @property
    def partitions(self) -> list[str | None]:
        return [alert.partition for alert, _ in self.sent]


def _slot(day: str) -> str:
    return f"churn/dataset|{day}"


def _pending(cursor: str) -> list[str]:
    return sorted(slot for slot, entry in json.loads(cursor)["failing"].items() if "pending" in entry)


def _without_pending(cursor: str) -> str:
    """The cursor as the sensor wrote it before alerts could be deferred."""
    data = json.loads(cursor)
    for entry in data["failing"].values():
        entry.pop("pending", None)
    return json.dumps(data)


def test_budget_defers_alerts_to_later_ticks_and_sends_each_once(demo_defs, monkeypatch):  # type: ignore[no-untyped-def]
    clock = FakeClock()
    monkeypatch.setattr(quality, "_clock", clock)
    notifier = SlowNotifier(clock, cost=20.0)  # 30 s budget: two sends per tick
    instance = dg.DagsterInstance.ephemeral()
    days = ["2026-01-02", "2026-01-03", "2026-01-04"]
    for day in days:
        assert not _land(demo_defs, instance, day, "quality_incident")

    first = _tick(demo_defs, instance, notifier, None)
    assert notifier.partitions == days[:2]  # oldest first
    assert [deadline for _, deadline in notifier.sent] == [30.0, 30.0]  # one deadline for the tick
    assert sorted(json.loads(first.cursor)["failing"]) == [_slot(d) for d in days]
    assert _pending(first.cursor) == [_slot(days[2])]
    # The cursor is past every evaluation: without the pending alert, there is nothing left to do.
    assert isinstance(_tick(demo_defs, instance, notifier, _without_pending(first.cursor)), dg.SkipReason)
    assert len(notifier.sent) == 2

    second = _tick(demo_defs, instance, notifier, first.cursor)  # no new evaluations, an alert pending
    assert isinstance(second, dg.SensorResult) and second.run_requests == []
    assert notifier.partitions == days
    assert notifier.sent[2][1] == 40.0 + 30.0  # the second tick's own deadline
    assert (
        _pending(second.cursor) == []
        and json.loads(second.cursor)["last_id"] == json.loads(first.cursor)["last_id"]
    )
    assert isinstance(_tick(demo_defs, instance, notifier, second.cursor), dg.SkipReason)
    assert notifier.partitions == days  # each partition alerted exactly once

    # The deferred alert is the one an unhurried tick sends right away.
    unhurried = SlowNotifier(clock, cost=0.0)
    _tick(demo_defs, instance, unhurried, None)
    assert [alert for alert, _ in unhurried.sent] == [alert for alert, _ in notifier.sent]


def test_a_long_backlog_keeps_check_names_but_not_descriptions(demo_defs, monkeypatch):  # type: ignore[no-untyped-def]
    clock = FakeClock()
    monkeypatch.setattr(quality, "_clock", clock)
    monkeypatch.setattr(quality, "MAX_DESCRIBED_PENDING", 1)
    notifier = SlowNotifier(clock, cost=40.0)  # the first send spends the whole budget
    instance = dg.DagsterInstance.ephemeral()
    days = ["2026-01-02", "2026-01-03", "2026-01-04"]
    for day in days:
        assert not _land(demo_defs, instance, day, "quality_incident")

    first = _tick(demo_defs, instance, notifier, None)
    assert notifier.partitions == days[:1]
    failing = json.loads(first.cursor)["failing"]
    assert _pending(first.cursor) == [_slot(d) for d in days[1:]]
    for day in days[1:]:  # beyond the cap: no descriptions kept, the check names are
        assert "descriptions" not in failing[_slot(day)]["pending"] and failing[_slot(day)]["checks"]

    _tick(demo_defs, instance, notifier, first.cursor)
    alert = notifier.sent[1][0]
    assert alert.partition == days[1]
    assert "mlops_schema_guard: failed" in alert.text  # named, without the (dropped) description
    assert alert.details["failed_checks"] == failing[_slot(days[1])]["checks"]


def test_deferred_alert_of_a_recovered_partition_is_dropped(demo_defs, monkeypatch):  # type: ignore[no-untyped-def]
    clock = FakeClock()
    monkeypatch.setattr(quality, "_clock", clock)
    notifier = SlowNotifier(clock, cost=30.0)  # the first send spends the whole budget
    instance = dg.DagsterInstance.ephemeral()
    assert not _land(demo_defs, instance, "2026-01-02", "quality_incident")
    assert not _land(demo_defs, instance, "2026-01-03", "quality_incident")
    first = _tick(demo_defs, instance, notifier, None)
    assert notifier.partitions == ["2026-01-02"] and _pending(first.cursor) == [_slot("2026-01-03")]

    assert _land(demo_defs, instance, "2026-01-03", "normal")
    second = _tick(demo_defs, instance, notifier, first.cursor)
    assert notifier.partitions == ["2026-01-02"]  # never alerted: it passes now
    [request] = second.run_requests
    assert request.run_key.startswith("quality-recovered:churn/dataset:2026-01-03:")
    assert sorted(json.loads(second.cursor)["failing"]) == [_slot("2026-01-02")]
    assert isinstance(_tick(demo_defs, instance, notifier, second.cursor), dg.SkipReason)
    assert notifier.partitions == ["2026-01-02"]


def test_cursor_without_pending_fields_parses() -> None:
    old = {
        "last_id": 42,
        "failing": {_slot("2026-01-02"): {"run_id": "r1", "checks": ["mlops_schema_guard"]}},
    }
    cursor = quality.QualityCursor.parse(json.dumps(old))
    assert cursor.last_id == 42 and cursor.pending() == []
    assert json.loads(cursor.dump()) == old
    assert quality.QualityCursor.parse(None).pending() == []


def test_a_send_always_gets_its_first_attempt() -> None:
    """The sensor sends only with more time left than the notifier needs to start an attempt, so a
    send it counts as done (and will not retry) was really tried."""
    assert quality.MIN_SEND_SECONDS > MIN_ATTEMPT_SECONDS
    assert quality.ALERT_BUDGET_SECONDS <= 45  # Dagster ends a tick after 60 s


@pytest.fixture
def receiver():  # type: ignore[no-untyped-def]
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


def test_hanging_receiver_cannot_hold_a_tick_past_its_budget(demo_defs, monkeypatch, receiver):  # type: ignore[no-untyped-def]
    instance = dg.DagsterInstance.ephemeral()
    days = ["2026-01-02", "2026-01-03"]
    for day in days:
        assert not _land(demo_defs, instance, day, "quality_incident")
    receiver.default = Reply(hang=True)
    notifier = Notifier(kind="webhook", url=receiver.url(), timeout_seconds=5.0, max_attempts=4)
    monkeypatch.setattr(quality, "ALERT_BUDGET_SECONDS", 1.5)
    first = _tick(demo_defs, instance, notifier, None)
    tried = [r.json()["partition"] for r in receiver.requests]
    # Unbounded, the tick would make 2 alerts x 4 attempts; the budget allows the one hung attempt.
    assert len(tried) <= 1 and _pending(first.cursor)  # the hung attempt ended at the deadline
    assert sorted(tried + [slot.split("|")[1] for slot in _pending(first.cursor)]) == days

    receiver.default = Reply(200)
    monkeypatch.setattr(quality, "ALERT_BUDGET_SECONDS", 30.0)
    second = _tick(demo_defs, instance, notifier, first.cursor)
    assert _pending(second.cursor) == []
    assert sorted(r.json()["partition"] for r in receiver.requests) == days  # each once


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
