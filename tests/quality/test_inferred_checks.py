"""Checks inferred from the champion's training profile: presence (nulls), domain, range.

They run on `<p>/dataset` beside the schema guard, for columns no user rule mentions: presence and
domain refuse the batch by default, range warns (unless `blocking`). Without a champion they pass with
a note. The demo's normal and drift days pass them; its quality-incident day is still refused.
"""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mlops_dagster.factory.quality_checks import check_specs
from mlops_dagster.keys import Meta, dataset_key
from mlops_dagster.quality.baseline import Baseline, build_profile
from mlops_dagster.quality.builtin_checks import (
    DOMAIN_CHECK_NAME,
    PRESENCE_CHECK_NAME,
    RANGE_CHECK_NAME,
    domain_outcome,
    presence_outcome,
    range_outcome,
)
from mlops_dagster.registry import records
from mlops_dagster.spec.models import (
    DomainCheckSpec,
    PipelineSpec,
    PresenceCheckSpec,
    QualitySpec,
    RangeCheckSpec,
)
from tests.quality.small_pipeline import GOOD_DAYS, Env, evaluations, good_frame, module_env, spec_text
from tests.run_output import failure_text

DEFAULT, TUNED = "inferred_default", "inferred_tuned"
TUNED_QUALITY = """  inferred:
    presence: {enabled: false}
    domain: {max_unseen_share: 0.2}
    range: {tolerance: 0.5, blocking: true}"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    base = tmp_path_factory.mktemp("inferred_checks")
    specs = {
        DEFAULT: spec_text(DEFAULT, f'{{uri: "{DEFAULT}/{{partition}}.parquet"}}'),
        TUNED: spec_text(TUNED, f'{{uri: "{TUNED}/{{partition}}.parquet"}}', quality=TUNED_QUALITY),
    }
    with module_env(base, specs) as env:
        for pipeline in (DEFAULT, TUNED):
            for day in GOOD_DAYS:
                env.land(pipeline, day, good_frame(day))
                result = env.load(pipeline, day)
                assert result.success, failure_text(result)
                if day == GOOD_DAYS[0]:  # no champion yet: the inferred checks pass with a note
                    for name in (PRESENCE_CHECK_NAME, DOMAIN_CHECK_NAME, RANGE_CHECK_NAME):
                        found = evaluations(result).get(name)
                        if found is not None:
                            assert found.passed and "no champion yet" in found.description
            result = env.train(pipeline)
            assert result.success, failure_text(result)
        yield env


def test_the_profile_is_recorded_with_the_candidate(env: Env) -> None:
    champion = records.current_champion(env.instance, DEFAULT)
    assert champion is not None
    record = records.candidate_metadata(env.instance, DEFAULT, champion.version)
    assert record is not None and record[Meta.CLASSES] == [0, 1]
    columns = record[Meta.DATASET_PROFILE]["columns"]
    assert set(columns) == {"tenure_months", "monthly_charges", "plan"}
    assert columns["plan"]["domain"] == ["basic", "premium", "standard"]
    assert columns["monthly_charges"]["null_share"] == 0.0
    assert 10 <= columns["monthly_charges"]["min"] < columns["monthly_charges"]["max"] <= 150


def test_half_null_feature_no_rule_mentions_is_refused(env: Env) -> None:
    day = "2026-01-10"
    batch = good_frame(day).assign(monthly_charges=lambda f: f["monthly_charges"].where(f.index % 2 == 0))
    env.land(DEFAULT, day, batch)
    result = env.load(DEFAULT, day)
    assert not result.success
    presence = evaluations(result)[PRESENCE_CHECK_NAME]
    assert not presence.passed and presence.severity == dg.AssetCheckSeverity.ERROR
    assert f"partition {day}: column `monthly_charges`: 50.0% null" in presence.description
    assert evaluations(result)["mlops_schema_guard"].passed  # not all null: the guard lets it through
    assert day not in env.materialized(DEFAULT)
    assert env.quarantine.get(dataset_key(DEFAULT), day) is not None

    # presence: {enabled: false} turns the check off (it is not even declared).
    env.land(TUNED, day, batch)
    tuned = env.load(TUNED, day)
    assert tuned.success, failure_text(tuned)
    assert PRESENCE_CHECK_NAME not in evaluations(tuned)


def test_unseen_category_is_refused_unless_within_the_allowed_share(env: Env) -> None:
    day = "2026-01-11"
    batch = good_frame(day).assign(plan=lambda f: f["plan"].where(f.index % 10 != 0, "enterprise"))
    env.land(DEFAULT, day, batch)
    result = env.load(DEFAULT, day)
    assert not result.success
    domain = evaluations(result)[DOMAIN_CHECK_NAME]
    assert "column `plan`: 6 value(s) (10.0%) the champion never saw: 'enterprise' (6)" in domain.description

    env.land(TUNED, day, batch)  # max_unseen_share: 0.2
    tuned = env.load(TUNED, day)
    assert tuned.success, failure_text(tuned)
    assert evaluations(tuned)[DOMAIN_CHECK_NAME].passed


def test_out_of_range_numbers_warn_by_default_and_block_when_asked(env: Env) -> None:
    day = "2026-01-12"
    batch = good_frame(day).assign(tenure_months=lambda f: f["tenure_months"].where(f.index >= 2, 500))
    env.land(DEFAULT, day, batch)
    result = env.load(DEFAULT, day)
    assert result.success, failure_text(result)  # a warning refuses nothing
    warning = evaluations(result)[RANGE_CHECK_NAME]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    assert "column `tenure_months`: 2 value(s)" in warning.description
    assert day in env.materialized(DEFAULT)
    spec = env.defs.resolve_assets_def(dataset_key(DEFAULT)).check_specs_by_output_name
    assert {s.name: s.blocking for s in spec.values()}[RANGE_CHECK_NAME] is False

    env.land(TUNED, day, batch)  # range: {blocking: true}
    tuned = env.load(TUNED, day)
    assert not tuned.success
    assert evaluations(tuned)[RANGE_CHECK_NAME].severity == dg.AssetCheckSeverity.ERROR
    assert day not in env.materialized(TUNED)


def test_outcomes_on_plain_frames() -> None:
    train = pd.DataFrame(
        {
            "x": np.arange(100.0),
            "c": ["a", "b"] * 50,
            "id": [f"u{i}" for i in range(100)],
            "email": [f"p{i}@example.com" for i in range(100)],
        }
    )
    profile = build_profile(train, ["x", "c", "id", "email"], exclude={"email"})
    cols = profile["columns"]
    assert cols["c"]["domain"] == ["a", "b"] and "domain" not in cols["id"]  # ids get no domain
    assert cols["email"] == {"dtype": "object", "null_share": 0.0}  # pii: no value recorded
    assert (cols["x"]["min"], cols["x"]["max"]) == (0.0, 99.0)
    base = Baseline(version="v", profile=profile)

    batch = pd.DataFrame({"x": [None, 1.0, 120.0, 2.0], "c": ["a", "z", "b", "a"], "id": ["q"] * 4})
    assert presence_outcome(batch, base, PresenceCheckSpec(max_null_increase=0.3)).passed  # 25% null
    presence = presence_outcome(batch, base, PresenceCheckSpec(max_null_increase=0.2))
    assert presence.problems == [
        "column `x`: 25.0% null (champion's training data 0.0%; allowed up to 20.0%)"
    ]
    assert not domain_outcome(batch, base, DomainCheckSpec()).passed
    assert domain_outcome(batch, base, DomainCheckSpec(max_unseen_share=0.25)).passed
    assert not range_outcome(batch, base, RangeCheckSpec(tolerance=0.1)).passed  # 120 > 99 + 9.9
    assert range_outcome(batch, base, RangeCheckSpec(tolerance=0.25)).passed
    note = presence_outcome(batch, Baseline(version="v"), PresenceCheckSpec()).note
    assert note is not None and "recorded no training profile" in note


@pytest.mark.parametrize(
    "inferred",
    [
        {"presence": {"max_null_increase": float("nan")}},
        {"range": {"tolerance": float("nan")}},
        {"domain": {"max_unseen_share": 1.5}},
        {"range": {"tolerance": -0.1}},
        {"presence": {"enabled": True, "threshold": 0.1}},
        {"ranges": {}},
    ],
)
def test_bad_inferred_settings_are_refused(inferred: dict) -> None:
    with pytest.raises(ValidationError):
        QualitySpec.model_validate({"inferred": inferred})


def test_disabled_checks_are_not_declared() -> None:
    spec = PipelineSpec.model_validate(
        {
            "name": "p",
            "dataset": {"source": {"uri": "x.parquet"}, "entity": "id", "timestamp": "ts", "label": "y"},
            "quality": {"inferred": {"presence": {"enabled": False}, "range": {"enabled": False}}},
            "model": {"task": "regression", "estimator": "sklearn.linear_model.Ridge", "metric": "r2"},
        }
    )
    names = {s.name for s in check_specs(dg.AssetKey(["p", "dataset"]), [], None, True, spec)}
    assert names == {"mlops_schema_guard", "mlops_label", DOMAIN_CHECK_NAME}


def test_demo_normal_and_drift_days_pass_and_the_incident_is_refused(demo_defs, helpers) -> None:  # type: ignore[no-untyped-def]
    from assets import feed

    instance = dg.DagsterInstance.ephemeral()
    for p in ("churn", "demand"):
        assert helpers.range(
            demo_defs, instance, [dg.AssetKey([p, "dataset"])], "2026-01-01", "2026-01-05"
        ).success
    for p in ("churn", "demand"):
        keys = [dg.AssetKey(["features", "customer_activity"])] + [
            dg.AssetKey([p, k]) for k in ("training_set", "candidate", "champion")
        ]
        result = helpers.keys(demo_defs, instance, keys, raise_on_error=False)
        assert result.success, failure_text(result)
        assert records.current_champion(instance, p) is not None
    for day, scenario, ok in (
        ("2026-01-06", "normal", True),
        ("2026-01-07", "drift", True),
        ("2026-01-08", "quality_incident", False),
    ):
        for p in ("churn", "demand"):
            feed.write_batch(p, day, scenario)
            result = dg.materialize(
                list(demo_defs.assets),
                selection=[dg.AssetKey([p, "dataset"])],
                instance=instance,
                resources=demo_defs.resources,
                partition_key=day,
                raise_on_error=False,
            )
            checks = evaluations(result)
            assert result.success is ok, f"{p} {day} ({scenario}): {failure_text(result)}"
            if ok:
                for name in (PRESENCE_CHECK_NAME, DOMAIN_CHECK_NAME):
                    assert checks[name].passed and not checks[name].description, (p, day, name)
