"""The alert data object and the pure helpers of delivery: JSON, backoff, Retry-After, URL redaction."""

import json
import time

import pytest

import mlops_dagster
from mlops_dagster.alerts import Alert, Notifier
from mlops_dagster.alerts.delivery import backoff_delay, parse_retry_after, redact_url, scrub

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


def test_alert_to_json_is_one_line_with_every_field() -> None:
    text = ALERT.to_json()
    assert "\n" not in text
    assert json.loads(text) == {
        "title": ALERT.title,
        "text": ALERT.text,
        "severity": "error",
        "pipeline": "churn",
        "asset_key": "churn/dataset",
        "partition": "2026-01-05",
        "details": {
            "failed": ["expect_column_values_to_not_be_null__customer_id"],
            "unexpected_percent": 5.1,
        },
        "dedupe_key": "churn/dataset/2026-01-05/quality",
    }


def test_alert_is_frozen_hashable_and_checks_severity() -> None:
    details = {"n": 1}
    alert = Alert(title="t", text="x", severity="info", details=details)
    details["n"] = 2  # the caller's dict is not the alert's
    assert alert.details == {"n": 1}
    assert hash(alert) == hash(Alert(title="t", text="x", severity="info", details={"other": 1}))
    with pytest.raises(AttributeError):
        alert.title = "changed"  # type: ignore[misc]
    with pytest.raises(ValueError, match="severity"):
        Alert(title="t", text="x", severity="fatal")  # type: ignore[arg-type]
    odd = Alert(
        title="t", text="x\ny", severity="info", details={"mod": time, "s": {2, 1}, "f": float("nan")}
    )
    assert "\n" not in odd.to_json() and json.loads(odd.to_json())["text"] == "x\ny"
    assert json.loads(odd.to_json())["details"] == {"mod": str(time), "s": [1, 2], "f": "nan"}


def test_public_names_are_exported() -> None:
    assert mlops_dagster.Alert is Alert and mlops_dagster.Notifier is Notifier
    assert {"Alert", "Notifier"} <= set(mlops_dagster.__all__)


def test_backoff_is_exponential_jittered_and_capped() -> None:
    assert [backoff_delay(n, 1.0, rand=lambda: 1.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert [backoff_delay(n, 1.0, rand=lambda: 0.0) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert backoff_delay(60, 1.0, rand=lambda: 1.0) == 10.0
    assert backoff_delay(1, 0.5, retry_after=3.0) == 3.0
    assert backoff_delay(1, 0.5, retry_after=600.0, rand=lambda: 1.0) == 0.5
    assert (
        parse_retry_after("7") == 7.0
        and parse_retry_after("soon") is None
        and parse_retry_after(None) is None
    )
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_redact_url_keeps_only_scheme_host_and_port() -> None:
    assert redact_url("https://hooks.slack.com/services/T0/B0/XXXX") == "https://hooks.slack.com/***"
    assert redact_url("https://user:pw@example.com:8443/?token=abc") == "https://example.com:8443/***"
    assert redact_url("https://example.com") == "https://example.com"


def test_scrub_masks_tokens_and_secret_url_parts() -> None:
    url = "https://hooks.example.com/services/T0/B0/pathsecret?key=querysecret"
    text = f"failed {url} with Bearer tok-123456; key=querysecret, /services/T0/B0/pathsecret, querysecret"
    assert scrub(text, [url, "tok-123456"]) == "failed *** with Bearer ***; ***, ***, ***"
