"""`<p>/feedback`: late labels pass the dataset's kind of blocking checks, and a failing batch is
quarantined and audited as a dataset batch is; the quality sensor alerts on it but retrains nothing
when it passes again (labels train nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import dagster as dg
import pandas as pd
import pytest

from mlops_dagster import Notifier
from mlops_dagster.audit import read_log
from mlops_dagster.keys import feedback_key
from mlops_dagster.quality.builtin_checks import LABEL_CHECK_NAME
from mlops_dagster.quality.schema_guard import GUARD_CHECK_NAME
from tests.governance.live_pipeline import Live, labels_for, spec_text
from tests.quality.small_pipeline import evaluations, good_frame, module_env
from tests.run_output import failure_text

NAME, FRESH = "fb", "fb_fresh"
KEY = feedback_key(NAME)
ROWS_EXPECTATION = "[{type: expect_table_row_count_to_be_between, min_value: 5}]"


class Recording(Notifier):
    """Keeps the alerts it is given."""

    sent: ClassVar[list[Any]] = []

    def send(self, alert, log=None, deadline=None):  # type: ignore[no-untyped-def, override]
        type(self).sent.append(alert)
        return True


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    specs = {
        NAME: spec_text(NAME, expectations=ROWS_EXPECTATION),
        FRESH: spec_text(FRESH),
    }
    with module_env(tmp_path_factory.mktemp("feedback"), specs) as env:
        live = Live(env)
        live.first_days(NAME)
        yield live


def _labels(day: str, **changes: Any) -> pd.DataFrame:
    return labels_for(good_frame(day), share=0.5).assign(**changes)


def _feedback(
    live: Live, day: str, labels: pd.DataFrame | bytes, name: str = NAME
) -> dg.ExecuteInProcessResult:
    live.land_labels(name, day, labels)
    return live.run([feedback_key(name)], day)


def _audited(action: str, day: str) -> list[dict[str, Any]]:
    return [
        r
        for r in read_log(NAME)
        if r["action"] == action and r.get("asset") == KEY.to_user_string() and r.get("partition") == day
    ]


def test_good_feedback_is_stored_after_its_checks(live: Live) -> None:
    day = "2026-01-04"
    labels = _labels(day)
    result = _feedback(live, day, labels)
    assert result.success, failure_text(result)
    checks = evaluations(result)
    assert set(checks) == {GUARD_CHECK_NAME, LABEL_CHECK_NAME, "expect_table_row_count_to_be_between"}
    assert all(c.passed for c in checks.values())
    stored = live.feedback(NAME, day)
    assert list(stored.columns) == ["cust", "ts", "outcome"]
    assert pd.api.types.is_datetime64_any_dtype(stored["ts"])
    assert stored["cust"].tolist() == labels["cust"].tolist()
    assert stored["outcome"].tolist() == labels["outcome"].tolist()


def _shuffled_days(day: str) -> pd.DataFrame:
    labels = _labels(day)
    return labels.assign(ts=labels["ts"] + pd.Timedelta(days=1))


@pytest.mark.parametrize(
    ("day", "make", "check", "expected"),
    [
        (
            "2026-01-10",
            lambda d: _labels(d).assign(outcome=7),
            LABEL_CHECK_NAME,
            "label `outcome`: 30 value(s) outside the champion's classes [0, 1]: 7 (30)",
        ),
        (
            "2026-01-11",
            lambda d: _labels(d).assign(outcome="yes"),
            GUARD_CHECK_NAME,
            "column `outcome`: int64 -> object",
        ),
        (
            "2026-01-12",
            lambda d: pd.concat([_labels(d), _labels(d).head(2)]),
            GUARD_CHECK_NAME,
            "columns `cust` + `ts`: 2 duplicate row(s)",
        ),
        (
            "2026-01-13",
            lambda d: _labels(d).drop(columns="outcome"),
            GUARD_CHECK_NAME,
            "column `outcome` (label): missing from the batch",
        ),
        (
            "2026-01-14",
            _shuffled_days,
            GUARD_CHECK_NAME,
            "column `ts` (timestamp): 30 row(s) outside partition 2026-01-14",
        ),
        (
            "2026-01-15",
            lambda d: _labels(d).head(3),
            "expect_table_row_count_to_be_between",
            "expect_table_row_count_to_be_between failed",
        ),
        ("2026-01-16", lambda d: b'"unclosed,quote\n1,2,3\n4', GUARD_CHECK_NAME, "cannot read"),
    ],
    ids=["unknown class", "text label", "duplicate key", "no label", "outside partition", "GX", "unreadable"],
)
def test_bad_feedback_is_quarantined_and_audited(
    live: Live, day: str, make: Any, check: str, expected: str
) -> None:
    result = _feedback(live, day, make(day))
    assert not result.success
    failed = evaluations(result)[check]
    assert not failed.passed and f"partition {day}" in failed.description and expected in failed.description
    assert day not in live.instance.get_materialized_partitions(KEY)
    held = live.env.quarantine.get(KEY, day)
    assert held is not None and any(expected in r for r in held.reasons)
    assert len(_audited("quarantine", day)) == 1


def test_fixed_feedback_is_released_and_the_sensor_alerts_without_retraining(live: Live) -> None:
    day = "2026-01-20"
    assert not _feedback(live, day, _labels(day, outcome=7)).success
    sensor = live.defs.resolve_sensor_def(f"{NAME}__quality_sensor")
    Recording.sent = []
    first = sensor(dg.build_sensor_context(instance=live.instance, resources={"mlops_notifier": Recording()}))
    (alert,) = [a for a in Recording.sent if a.asset_key == KEY.to_user_string() and a.partition == day]
    assert "quarantined" in alert.text

    fixed = _feedback(live, day, _labels(day))
    assert fixed.success, failure_text(fixed)
    assert live.env.quarantine.get(KEY, day) is None
    assert len(_audited("release", day)) == 1
    second = sensor(
        dg.build_sensor_context(
            instance=live.instance, cursor=first.cursor, resources={"mlops_notifier": Recording()}
        )
    )
    assert second.run_requests == []  # labels train nothing: no retrain was held back
    assert f"{KEY.to_user_string()}|{day}" not in (second.cursor or "")


def test_missing_labels_fail_the_run_without_quarantine(live: Live) -> None:
    day = "2026-01-25"
    result = live.run([KEY], day)
    assert not result.success
    assert f"{NAME} feedback: source file" in failure_text(result) and "does not exist" in failure_text(
        result
    )
    assert live.env.quarantine.get(KEY, day) is None


def test_before_any_champion_labels_are_not_compared(live: Live) -> None:
    day = "2026-01-04"
    result = _feedback(live, day, _labels(day, outcome="yes"), name=FRESH)
    assert result.success, failure_text(result)
    label = evaluations(result)[LABEL_CHECK_NAME]
    assert label.passed and label.description == "no champion yet: any label value is accepted"
