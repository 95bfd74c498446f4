"""The live-performance rule on plain values: thresholds, the window, evidence, and the champion's own
score read from a `live_performance` record where several versions served."""

from __future__ import annotations

import dagster as dg
import pytest

from mlops_dagster.keys import Meta
from mlops_dagster.monitoring.performance import (
    PartitionScore,
    PerformanceSettings,
    champion_score,
    decide_performance,
)
from mlops_dagster.registry.records import VersionRecord, performance_rollbacks, rollback_target

DAYS = [f"2026-02-{d:02d}" for d in range(1, 11)]


def _scores(*values: float | None, samples: int = 100) -> list[PartitionScore]:
    return [PartitionScore(day, value, samples) for day, value in zip(DAYS, values, strict=False)]


@pytest.mark.parametrize(
    ("values", "settings", "holdout", "act"),
    [
        # `min`: the last 3 partitions below 0.7
        ((0.8, 0.6, 0.6, 0.6), PerformanceSettings("roc_auc", min=0.7, window=3), None, True),
        ((0.6, 0.6, 0.8, 0.6), PerformanceSettings("roc_auc", min=0.7, window=3), None, False),  # one passes
        ((0.6, 0.6), PerformanceSettings("roc_auc", min=0.7, window=3), None, False),  # too few partitions
        ((0.7, 0.7, 0.7), PerformanceSettings("roc_auc", min=0.7, window=3), None, False),  # at the floor
        # `max_drop` below the champion's holdout score 0.9: floor 0.85
        ((0.84, 0.84), PerformanceSettings("roc_auc", max_drop=0.05, window=2), 0.9, True),
        ((0.86, 0.84), PerformanceSettings("roc_auc", max_drop=0.05, window=2), 0.9, False),
        ((0.84, 0.84), PerformanceSettings("roc_auc", max_drop=0.05, window=2), None, False),  # no holdout
        # both: the higher floor applies (holdout 0.9 - 0.05 = 0.85 > min 0.5)
        ((0.8,), PerformanceSettings("roc_auc", min=0.5, max_drop=0.05, window=1), 0.9, True),
        ((0.8,), PerformanceSettings("roc_auc", min=0.5, max_drop=0.2, window=1), 0.9, False),
    ],
)
def test_thresholds_and_window(
    values: tuple[float, ...], settings: PerformanceSettings, holdout: float | None, act: bool
) -> None:
    decision = decide_performance(_scores(*values), settings, holdout)
    assert decision.act is act
    if act:
        assert decision.breached == DAYS[len(values) - settings.window : len(values)]


def test_too_few_samples_is_no_evidence_neither_breach_nor_break() -> None:
    settings = PerformanceSettings("roc_auc", min=0.7, window=3, min_samples=50)
    scores = [
        PartitionScore(DAYS[0], 0.6, 100),
        PartitionScore(DAYS[1], 0.9, 10),  # good, but 10 labels: does not break the run of breaches
        PartitionScore(DAYS[2], 0.6, 100),
        PartitionScore(DAYS[3], 0.2, 49),  # bad, but 49 labels: not a breach either
        PartitionScore(DAYS[4], 0.6, 50),
    ]
    decision = decide_performance(scores, settings, None)
    assert decision.act
    assert decision.breached == [DAYS[0], DAYS[2], DAYS[4]]
    assert [v.evidence for v in decision.verdicts] == [True, False, True, False, True]
    assert "2 partition(s) without evidence skipped" in decision.reason

    # Only no-evidence partitions after a single breach: not enough to act.
    sparse = [PartitionScore(DAYS[0], 0.6, 100), *(PartitionScore(d, 0.1, 5) for d in DAYS[1:6])]
    assert not decide_performance(sparse, settings, None).act


def test_partition_order_not_input_order_and_the_reason_is_readable() -> None:
    settings = PerformanceSettings("roc_auc", min=0.7, max_drop=0.1, window=2, min_samples=20)
    scores = [
        PartitionScore(DAYS[2], 0.61, 40),
        PartitionScore(DAYS[0], 0.95, 40),
        PartitionScore(DAYS[1], 0.65, 30),
    ]
    decision = decide_performance(scores, settings, holdout=0.82)
    assert decision.act and decision.breached == [DAYS[1], DAYS[2]]
    assert decision.floor == pytest.approx(0.72)
    for text in (
        DAYS[1],
        DAYS[2],
        "0.6500 (n=30)",
        "0.6100 (n=40)",
        "min 0.7",
        "holdout 0.8200",
        "max_drop 0.1",
    ):
        assert text in decision.reason


def _record(**metadata: object) -> dict[str, object]:
    return {Meta.METRIC_NAME: "roc_auc", **metadata}


def _table(*rows: tuple[str, float, int]) -> dg.TableMetadataValue:
    return dg.MetadataValue.table(
        records=[dg.TableRecord({"version": v, "metric": m, "samples": n}) for v, m, n in rows],
        schema=dg.TableSchema(
            columns=[
                dg.TableColumn("version", "string"),
                dg.TableColumn("metric", "float"),
                dg.TableColumn("samples", "int"),
            ]
        ),
    )


def test_the_champion_s_own_score_where_several_versions_served() -> None:
    mixed = _record(
        **{
            Meta.LIVE_METRIC: 0.9,  # the partition as a whole looks fine ...
            Meta.SAMPLES: 300,
            Meta.MODEL_VERSIONS: dg.MetadataValue.json(["a" * 64, "b" * 64]),
            Meta.LIVE_BY_VERSION: _table(("a" * 64, 0.95, 250), ("b" * 64, 0.55, 50)),  # ... B does not
        }
    )
    assert champion_score(DAYS[0], mixed, "b" * 64, "roc_auc") == PartitionScore(DAYS[0], 0.55, 50)
    assert champion_score(DAYS[0], mixed, "a" * 64, "roc_auc") == PartitionScore(DAYS[0], 0.95, 250)

    only = _record(**{Meta.LIVE_METRIC: 0.61, Meta.SAMPLES: 80, Meta.MODEL_VERSIONS: "b" * 64})
    assert champion_score(DAYS[1], only, "b" * 64, "roc_auc") == PartitionScore(DAYS[1], 0.61, 80)

    elsewhere = champion_score(DAYS[2], only, "c" * 64, "roc_auc")  # C did not serve: no evidence about it
    assert elsewhere.metric is None and "did not serve" in elsewhere.note

    other_metric = champion_score(DAYS[3], {**only, Meta.METRIC_NAME: "accuracy"}, "b" * 64, "roc_auc")
    assert other_metric.metric is None and "accuracy" in other_metric.note

    broken = _record(
        **{Meta.LIVE_BY_VERSION: dg.MetadataValue.json([{"version": "b" * 64, "metric": "n/a"}])}
    )
    assert champion_score(DAYS[4], broken, "b" * 64, "roc_auc").metric is None  # unreadable: no evidence

    settings = PerformanceSettings("roc_auc", min=0.7, window=2, min_samples=50)
    scores = [champion_score(d, r, "b" * 64, "roc_auc") for d, r in ((DAYS[0], mixed), (DAYS[1], only))]
    assert decide_performance([*scores, elsewhere, _nan_score(DAYS[5])], settings, None).act


def _nan_score(day: str) -> PartitionScore:
    return champion_score(day, {Meta.LIVE_METRIC: float("nan")}, "b" * 64, "roc_auc")


def _rec(
    version: str, decision: str, t: float, previous: str | None = None, trigger: str | None = None
) -> VersionRecord:
    return VersionRecord("p", version, version * 4, t, f"run{t:g}", decision, ["why"], {}, previous, trigger)


@pytest.mark.parametrize(
    ("events", "target"),
    [
        # promote A, B, C; C rolled back for performance to B; B then fails too: back to A
        ([("A", "promote"), ("B", "promote"), ("C", "promote"), ("B", "rollback", "C", "performance")], "A"),
        # B was rolled back for performance, then promoted by hand; C promoted: a rollback skips B
        (
            [
                ("A", "promote"),
                ("B", "promote"),
                ("A", "rollback", "B", "performance"),
                ("B", "promote"),
                ("C", "promote"),
            ],
            "A",
        ),
        # ... and after that skip-rollback to A, nothing is left
        (
            [
                ("A", "promote"),
                ("B", "promote"),
                ("A", "rollback", "B", "performance"),
                ("B", "promote"),
                ("C", "promote"),
                ("A", "rollback", "C", "performance"),
            ],
            None,
        ),
        # a manual rollback does not exclude the version it left
        (
            [
                ("A", "promote"),
                ("B", "promote"),
                ("A", "rollback", "B", "cli"),
                ("B", "promote"),
                ("C", "promote"),
            ],
            "B",
        ),
        # C promoted after B failed: a rollback of C goes to A
        ([("A", "promote"), ("B", "promote"), ("A", "rollback", "B", "performance"), ("C", "promote")], "A"),
        # the only earlier version failed in service (B, promoted again by hand): nothing to roll back to
        (
            [
                ("A", "promote"),
                ("B", "promote"),
                ("A", "rollback", "B", "performance"),
                ("B", "promote"),
                ("A", "promote"),
            ],
            None,
        ),
    ],
)
def test_rollback_target_skips_versions_rolled_back_for_performance(
    events: list[tuple[str, ...]], target: str | None
) -> None:
    history = [_rec(*e[:2], float(i), *e[2:]) for i, e in enumerate(events)][::-1]  # newest first
    found = rollback_target(history)
    assert (found.version if found else None) == target


def test_performance_rollbacks_name_the_version_left_and_the_newest_rollback() -> None:
    history = [
        _rec("A", "rollback", 4.0, "B", "performance"),
        _rec("B", "promote", 3.0),
        _rec("A", "rollback", 2.0, "B", "performance"),
        _rec("A", "rollback", 1.5, "C", "manual"),
    ]
    found = performance_rollbacks(history)
    assert set(found) == {"B"} and found["B"].timestamp == 4.0
