"""The notifier against a real HTTP receiver on 127.0.0.1: payloads, retries, failures, secrets, Dagster.

The receiver is a `ThreadingHTTPServer` in a thread that records every request and answers from a
script (status, headers, or hang until shutdown); it is always shut down by its fixture.
"""

import json
import logging
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

import dagster as dg
import pytest

from mlops_dagster.alerts import Alert, Notifier, NotifierConfigError
from mlops_dagster.alerts.delivery import MIN_ATTEMPT_SECONDS, post_json

TOKEN = "tok-5ecret-value-1234"
ALERT = Alert(
    title="churn/dataset 2026-01-05: 2 quality checks failed",
    text="expect_column_values_to_not_be_null__customer_id (5.1% unexpected), "
    "expect_column_values_to_be_between__tenure (0.4% unexpected)",
    severity="error",
    pipeline="churn",
    asset_key="churn/dataset",
    partition="2026-01-05",
    details={"failed": ["expect_column_values_to_not_be_null__customer_id"], "unexpected_percent": 5.1},
    dedupe_key="churn/dataset/2026-01-05/quality",
)


# ---------------------------------------------------------------------------------------- the receiver


@dataclass(frozen=True)
class Reply:
    """One scripted answer; `hang=True` answers nothing until the server shuts down."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    hang: bool = False


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Answers from `script`, then `default`; every request lands in `requests`."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.default = Reply()
        self.requests: list[Received] = []
        self.release = threading.Event()
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                    reply = receiver.script.popleft() if receiver.script else receiver.default
                if reply.hang:
                    receiver.release.wait(10)
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def refused_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: the connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def _fast(kind: Literal["webhook", "slack"], url: str, **fields: Any) -> Notifier:
    """A notifier with tiny backoff (tests stay fast) and a timeout well above local round trips."""
    settings: dict[str, Any] = {"backoff_seconds": 0.01, "timeout_seconds": 2.0, **fields}
    return Notifier(kind=kind, url=url, **settings)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


# ---------------------------------------------------------------------------------------- payloads


@pytest.mark.parametrize(("severity", "level"), [("info", logging.INFO), ("error", logging.ERROR)])
def test_log_kind_writes_one_structured_line(
    caplog: pytest.LogCaptureFixture, severity: str, level: int
) -> None:
    alert = Alert(title="t", text="line1\nline2", severity=severity, pipeline="churn")  # type: ignore[arg-type]
    with caplog.at_level(logging.DEBUG, logger="mlops_dagster.alerts"):
        assert Notifier().send(alert) is True
    [record] = caplog.records
    assert record.name == "mlops_dagster.alerts" and record.levelno == level
    message = record.getMessage()
    assert "\n" not in message and message.startswith("mlops alert {")
    assert json.loads(message.removeprefix("mlops alert ")) == alert.to_dict()


def test_log_kind_uses_the_given_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert Notifier(kind="log").send(ALERT, log=logging.getLogger("my.sensor"))
    assert [r.name for r in caplog.records] == ["my.sensor"]


def test_webhook_posts_the_alert_json_with_bearer_token(receiver: Receiver) -> None:
    assert _fast("webhook", receiver.url(), token=TOKEN).send(ALERT) is True
    [request] = receiver.requests
    assert request.path == "/hook"
    assert request.json() == ALERT.to_dict()
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Content-Type"].startswith("application/json")


def test_no_authorization_header_without_token(receiver: Receiver) -> None:
    assert _fast("webhook", receiver.url()).send(ALERT)
    assert "Authorization" not in receiver.requests[0].headers


def test_slack_payload_has_text_header_section_and_context(receiver: Receiver) -> None:
    alert = Alert(title="Drift on churn", text="psi 0.31 > 0.2 on <tenure> & fees", severity="warning",
                  pipeline="churn", asset_key="churn/drift_report")  # fmt: skip
    assert _fast("slack", receiver.url("/services/T0/B0/x")).send(alert)
    payload = receiver.requests[0].json()
    assert set(payload) == {"text", "blocks"}
    assert payload["text"].startswith(":warning: Drift on churn")
    header, section, context = payload["blocks"]
    assert header == {
        "type": "header",
        "text": {"type": "plain_text", "text": ":warning: Drift on churn", "emoji": True},
    }
    assert section == {
        "type": "section",
        "text": {"type": "mrkdwn", "text": "psi 0.31 &gt; 0.2 on &lt;tenure&gt; &amp; fees"},
    }
    assert context["type"] == "context"
    line = context["elements"][0]["text"]
    assert "*pipeline:* churn" in line and "*asset:* churn/drift_report" in line and "partition" not in line


def test_slack_payload_respects_block_limits(receiver: Receiver) -> None:
    alert = Alert(title="T" * 400, text="x" * 10_000, severity="info")
    assert _fast("slack", receiver.url()).send(alert)
    header, section, _ = receiver.requests[0].json()["blocks"]
    assert len(header["text"]["text"]) <= 150 and len(section["text"]["text"]) <= 3000


# ---------------------------------------------------------------------------------------- retries


def test_retries_5xx_with_backoff_then_succeeds(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.answer(Reply(500), Reply(503))
    with caplog.at_level(logging.DEBUG, logger="mlops_dagster.alerts"):
        assert _fast("webhook", receiver.url(), max_attempts=4).send(ALERT) is True
    assert len(receiver.requests) == 3
    assert len({r.body for r in receiver.requests}) == 1  # the same body every time
    retries = [r.getMessage() for r in caplog.records if "retry in" in r.getMessage()]
    assert len(retries) == 2 and "HTTP 500" in retries[0]
    assert _warnings(caplog) == []


def test_gives_up_after_max_attempts_without_raising(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.default = Reply(500, body=b"boom")
    with caplog.at_level(logging.WARNING, logger="mlops_dagster.alerts"):
        assert _fast("webhook", receiver.url(), max_attempts=3).send(ALERT) is False
    assert len(receiver.requests) == 3
    [warning] = _warnings(caplog)
    assert "after 3 attempt(s)" in warning and "HTTP 500" in warning and "boom" in warning
    assert ALERT.title in warning  # the alert itself is not lost


@pytest.mark.parametrize("status", [400, 401, 404, 302])
def test_no_retry_on_4xx_or_redirect(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    receiver.default = Reply(
        status, headers={"Location": "http://127.0.0.1:1/elsewhere"}, body=b"invalid_payload"
    )
    with caplog.at_level(logging.WARNING, logger="mlops_dagster.alerts"):
        assert _fast("slack", receiver.url(), token=TOKEN).send(ALERT) is False
    assert len(receiver.requests) == 1
    [warning] = _warnings(caplog)
    assert f"HTTP {status}" in warning and "after 1 attempt(s)" in warning


def _recorded_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make the notifier's waits instant and return the list they are recorded in."""
    from mlops_dagster.alerts import notifier as notifier_module

    slept: list[float] = []

    def post(*args: Any, **kwargs: Any) -> Any:
        return post_json(*args, **{"sleep": slept.append, **kwargs})

    monkeypatch.setattr(notifier_module, "post_json", post)
    return slept


def test_429_waits_for_a_small_retry_after(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    receiver.answer(Reply(429, headers={"Retry-After": "1"}))
    slept = _recorded_sleeps(monkeypatch)
    assert _fast("webhook", receiver.url()).send(ALERT) is True
    assert slept == [1.0]  # backoff alone would be ~0.01 s
    assert len(receiver.requests) == 2


def test_429_with_a_large_retry_after_falls_back_to_backoff(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.answer(Reply(429, headers={"Retry-After": "3600"}))
    slept = _recorded_sleeps(monkeypatch)
    assert _fast("webhook", receiver.url()).send(ALERT) is True
    assert len(slept) == 1 and slept[0] < 1.0  # the backoff, not the hour the server asked for


def test_timeout_is_retried_then_given_up(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.default = Reply(hang=True)
    notifier = Notifier(
        kind="webhook", url=receiver.url(), timeout_seconds=0.2, max_attempts=2, backoff_seconds=0.01
    )
    with caplog.at_level(logging.WARNING, logger="mlops_dagster.alerts"):
        assert notifier.send(ALERT) is False
    assert len(receiver.requests) == 2
    [warning] = _warnings(caplog)
    assert "timed out after 0.2s" in warning


def test_timeout_then_success(receiver: Receiver) -> None:
    receiver.answer(Reply(hang=True))
    notifier = Notifier(kind="webhook", url=receiver.url(), timeout_seconds=0.2, backoff_seconds=0.01)
    assert notifier.send(ALERT) is True and len(receiver.requests) == 2


def test_connection_refused_is_retried_then_given_up(
    refused_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="mlops_dagster.alerts"):
        assert _fast("webhook", refused_url, max_attempts=3).send(ALERT) is False
    assert sum("retry in" in r.getMessage() for r in caplog.records) == 2
    [warning] = _warnings(caplog)
    assert "connection failed" in warning and "after 3 attempt(s)" in warning


# ---------------------------------------------------------------------------------------- time budget


class FakeTime:
    """A clock that only moves when slept on: the waits are recorded, never spent."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _post(url: str, fake: FakeTime, **fields: Any) -> Any:
    settings: dict[str, Any] = {
        "headers": {"Content-Type": "application/json"},
        "timeout": 2.0,
        "max_attempts": 10,
        "backoff_seconds": 0.01,
        "clock": fake.clock,
        "sleep": fake.sleep,
        **fields,
    }
    return post_json(url, b"{}", **settings)


def test_deadline_stops_retries_before_max_attempts(receiver: Receiver) -> None:
    receiver.default = Reply(503, headers={"Retry-After": "1"})  # every wait is exactly 1 s
    fake = FakeTime()
    delivery = _post(receiver.url(), fake, deadline=2.9)
    # Attempts at t=0, 1, 2; a third wait would leave no time for an attempt (2 + 1 + floor > 2.9).
    assert len(receiver.requests) == 3 and delivery.attempts == 3
    assert fake.slept == [1.0, 1.0] and fake.now < 2.9
    assert not delivery.ok and delivery.out_of_time and delivery.status == 503
    assert delivery.reason.startswith("time budget ran out") and "HTTP 503" in delivery.reason


def test_no_attempt_with_less_than_the_floor_left(receiver: Receiver) -> None:
    receiver.default = Reply(503)
    fake = FakeTime(now=10.0)
    delivery = _post(receiver.url(), fake, deadline=10.0 + MIN_ATTEMPT_SECONDS / 2)
    assert receiver.requests == [] and delivery.attempts == 0 and delivery.out_of_time
    # ...unless the whole attempt fits: a timeout below the floor is a full attempt.
    delivery = _post(receiver.url(), fake, deadline=10.0 + 0.3, timeout=0.2, max_attempts=1)
    assert len(receiver.requests) == 1 and delivery.attempts == 1 and not delivery.out_of_time


def test_without_deadline_the_clock_is_never_read(receiver: Receiver) -> None:
    receiver.answer(Reply(503), Reply(503))

    def clock() -> float:
        raise AssertionError("the clock is read without a deadline")

    fake = FakeTime()
    delivery = _post(receiver.url(), fake, clock=clock, max_attempts=4)
    assert delivery.ok and delivery.attempts == 3 and len(fake.slept) == 2


def test_send_with_a_past_deadline_sends_nothing(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="mlops_dagster.alerts"):
        assert _fast("webhook", receiver.url()).send(ALERT, deadline=time.monotonic() - 1) is False
    assert receiver.requests == []
    [warning] = _warnings(caplog)
    assert "not sent" in warning and "time budget ran out" in warning and ALERT.title in warning


def test_send_gives_up_when_the_next_retry_would_pass_the_deadline(
    receiver: Receiver, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    receiver.default = Reply(503, headers={"Retry-After": "1"})
    notifier = _fast("webhook", receiver.url(), max_attempts=10)
    slept = _recorded_sleeps(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="mlops_dagster.alerts"):
        assert notifier.send(ALERT, deadline=time.monotonic() + 1.2) is False
    assert slept == []  # the 1 s wait was not even started
    assert len(receiver.requests) == 1
    [warning] = _warnings(caplog)
    assert "after 1 attempt(s)" in warning and "time budget ran out" in warning and "HTTP 503" in warning


def test_deadline_cuts_a_hanging_attempt_short(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.default = Reply(hang=True)
    notifier = Notifier(kind="webhook", url=receiver.url(), timeout_seconds=5.0, max_attempts=4)
    with caplog.at_level(logging.WARNING, logger="mlops_dagster.alerts"):
        assert notifier.send(ALERT, deadline=time.monotonic() + 0.6) is False
    assert len(receiver.requests) == 1  # not 4 attempts; the warning says the attempt was cut short
    [warning] = _warnings(caplog)
    assert re.search(r"timed out after 0\.\d+s", warning) and "time budget ran out" in warning


def test_log_kind_ignores_the_deadline(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="mlops_dagster.alerts"):
        assert Notifier().send(ALERT, deadline=time.monotonic() - 1) is True
    assert len(caplog.records) == 1


# ------------------------------------------------------------------------------ configuration, secrets


def _setup_error(notifier: Notifier) -> NotifierConfigError:
    """The error that setting the resource up raises (Dagster wraps it: the cause is ours)."""
    with pytest.raises(dg.DagsterResourceFunctionError) as info:
        with dg.build_resources({"notifier": notifier}):
            pass
    assert isinstance(info.value.__cause__, NotifierConfigError)
    return info.value.__cause__


@pytest.mark.parametrize("kind", ["webhook", "slack"])
@pytest.mark.parametrize("url", [None, "", "  "])
def test_missing_url_is_a_clear_configuration_error(kind: str, url: str | None) -> None:
    error = _setup_error(Notifier(kind=kind, url=url))  # type: ignore[arg-type]
    assert f"Notifier(kind='{kind}') needs `url`" in str(error)
    assert 'url=dg.EnvVar("MLOPS_ALERT_WEBHOOK_URL")' in str(error)


def test_missing_url_fails_the_run_at_resource_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_TEST_WEBHOOK", "")
    with pytest.raises(dg.DagsterResourceFunctionError) as info:
        dg.materialize(
            [_alerting_asset],
            resources={"notifier": Notifier(kind="webhook", url=dg.EnvVar("MLOPS_TEST_WEBHOOK"))},
        )
    assert isinstance(info.value.__cause__, NotifierConfigError)
    assert "needs `url`" in str(info.value.__cause__)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "webhook", "url": "file:///etc/passwd"}, "http:// or https://"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout_seconds": 0}, "timeout_seconds"),
    ],
)
def test_other_configuration_errors(fields: dict[str, Any], message: str) -> None:
    assert message in str(_setup_error(Notifier(**fields)))


def test_unconfigured_notifier_used_directly_returns_false(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mlops_dagster.alerts"):
        assert Notifier(kind="slack").send(ALERT) is False
    [warning] = _warnings(caplog)
    assert "needs `url`" in warning and ALERT.title in warning


def test_envvar_settings_work_outside_dagster(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MLOPS_TEST_WEBHOOK", receiver.url("/direct"))
    monkeypatch.setenv("MLOPS_TEST_TOKEN", TOKEN)
    notifier = Notifier(
        kind="webhook", url=dg.EnvVar("MLOPS_TEST_WEBHOOK"), token=dg.EnvVar("MLOPS_TEST_TOKEN")
    )
    assert notifier.send(ALERT) is True
    assert receiver.requests[0].path == "/direct"
    assert receiver.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    monkeypatch.delenv("MLOPS_TEST_WEBHOOK")
    with caplog.at_level(logging.WARNING, logger="mlops_dagster.alerts"):
        assert notifier.send(ALERT) is False
    [warning] = _warnings(caplog)
    assert "url=dg.EnvVar('MLOPS_TEST_WEBHOOK') is unset or empty" in warning


def test_secrets_never_reach_the_log(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.default = Reply(500, body=f"echo Authorization: Bearer {TOKEN}".encode())
    url = receiver.url("/services/T0/B0/pathsecret9?key=querysecret9")
    notifier = _fast("webhook", url, token=TOKEN, max_attempts=2)
    with caplog.at_level(logging.DEBUG):
        assert notifier.send(ALERT) is False
    assert receiver.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"  # it was sent...
    logged = caplog.text + " ".join(r.getMessage() for r in caplog.records)
    assert "HTTP 500" in logged  # ...the failure was logged...
    for secret in (TOKEN, "pathsecret9", "querysecret9"):  # ...without any secret
        assert secret not in logged
    assert f"http://127.0.0.1:{receiver.port}/***" in logged
    assert TOKEN not in repr(notifier) and "querysecret9" not in repr(notifier)


# ---------------------------------------------------------------------------------------- in a Dagster run


@dg.asset
def _alerting_asset(context: dg.AssetExecutionContext, notifier: Notifier) -> bool:
    return notifier.send(ALERT, log=context.log)


def _run(**fields: Any) -> tuple[dg.ExecuteInProcessResult, str]:
    instance = dg.DagsterInstance.ephemeral()
    notifier = Notifier(kind="webhook", url=dg.EnvVar("MLOPS_TEST_WEBHOOK"), **fields)
    result = dg.materialize([_alerting_asset], resources={"notifier": notifier}, instance=instance)
    logs = " ".join(entry.user_message for entry in instance.all_logs(result.run_id))
    return result, logs


def test_envvar_url_is_resolved_in_a_run(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_TEST_WEBHOOK", receiver.url("/from-env"))
    monkeypatch.setenv("MLOPS_TEST_TOKEN", TOKEN)
    instance = dg.DagsterInstance.ephemeral()
    notifier = Notifier(
        kind="webhook", url=dg.EnvVar("MLOPS_TEST_WEBHOOK"), token=dg.EnvVar("MLOPS_TEST_TOKEN")
    )
    result = dg.materialize([_alerting_asset], resources={"notifier": notifier}, instance=instance)
    assert result.success and result.output_for_node("_alerting_asset") is True
    [request] = receiver.requests
    assert request.path == "/from-env" and request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.json()["partition"] == "2026-01-05"


def test_run_succeeds_when_the_receiver_is_down(refused_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_TEST_WEBHOOK", refused_url + "?key=querysecret9")
    result, logs = _run(token=TOKEN, max_attempts=2, backoff_seconds=0.01)
    assert result.success
    assert result.output_for_node("_alerting_asset") is False
    assert "mlops alert not delivered" in logs and "connection failed" in logs
    assert TOKEN not in logs and "querysecret9" not in logs
