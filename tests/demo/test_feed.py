"""The demo project's synthetic feed (`assets.feed`) and feature transform (`assets.features`)."""

from __future__ import annotations

import json
import sys
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # the demo project (assets/) lives at the repo root
    sys.path.insert(0, str(REPO_ROOT))

from assets import feed  # noqa: E402
from assets.features import customer_activity  # noqa: E402

START = date(2026, 1, 1)
CHURN_COLUMNS = [
    "customer_id",
    "event_time",
    "tenure_months",
    "monthly_charges",
    "support_calls",
    "plan",
    "region",
    "email",
    "churned",
]
DEMAND_COLUMNS = ["customer_id", "event_time", "price", "promo", "day_of_week", "plan", "units"]
FEATURES = ["avg_charges_7d", "support_calls_7d", "active_days_7d"]
ACTIVITY_COLUMNS = ["customer_id", "event_time", *FEATURES, "email"]


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_DEMO_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def days(n: int, first: date = START) -> list[date]:
    return [first + timedelta(days=i) for i in range(n)]


def churn_frame(n_days: int, first: date = START, scenario: str = "normal") -> pd.DataFrame:
    batches = [feed.generate_batch("churn", d, scenario) for d in days(n_days, first)]
    return pd.concat(batches, ignore_index=True)


def demand_frame(n_days: int, first: date = START, scenario: str = "normal") -> pd.DataFrame:
    batches = [feed.generate_batch("demand", d, scenario) for d in days(n_days, first)]
    return pd.concat(batches, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# generate_batch
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline", ["churn", "demand"])
@pytest.mark.parametrize("scenario", ["normal", "drift", "quality_incident"])
def test_generate_batch_is_deterministic(pipeline, scenario):
    a = feed.generate_batch(pipeline, date(2026, 2, 3), scenario)
    b = feed.generate_batch(pipeline, "2026-02-03", scenario)
    pd.testing.assert_frame_equal(a, b)
    other_day = feed.generate_batch(pipeline, date(2026, 2, 4), scenario)
    assert not a.equals(other_day)


def test_generate_batch_seed_is_stable_across_processes():
    # crc32-seeded, not hash()-seeded: pin a few values so a change of seeding shows up.
    import subprocess

    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from assets.feed import generate_batch; "
        "df = generate_batch('churn', '2026-03-01'); print(df['customer_id'].sum(), df['churned'].sum())"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code, str(REPO_ROOT)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(runs) == 1
    df = feed.generate_batch("churn", "2026-03-01")
    assert runs.pop().split() == [str(df["customer_id"].sum()), str(df["churned"].sum())]


def test_churn_schema_and_ranges():
    df = feed.generate_batch("churn", "2026-01-10")
    assert list(df.columns) == CHURN_COLUMNS
    assert len(df) == 300
    assert str(df["customer_id"].dtype) == "int64"
    assert str(df["event_time"].dtype) == "datetime64[ns]"
    for col in ["tenure_months", "support_calls", "churned"]:
        assert str(df[col].dtype) == "int64", col
    assert str(df["monthly_charges"].dtype) == "float64"
    assert (df["event_time"].dt.normalize() == pd.Timestamp("2026-01-10")).all()
    assert df["customer_id"].between(100_001, 102_000).all()
    assert df["tenure_months"].between(0, 120).all()
    assert df["monthly_charges"].between(20, 150).all()
    assert df["support_calls"].between(0, 10).all()
    assert set(df["plan"]) <= {"basic", "standard", "premium"}
    assert set(df["region"]) <= {"north", "south", "east", "west"}
    assert set(df["churned"]) == {0, 1}
    assert (df["email"] == "user" + df["customer_id"].astype(str) + "@example.com").all()


def test_demand_schema_and_ranges():
    df = feed.generate_batch("demand", "2026-01-10")
    assert list(df.columns) == DEMAND_COLUMNS
    assert str(df["customer_id"].dtype) == "int64"
    assert str(df["event_time"].dtype) == "datetime64[ns]"
    for col in ["promo", "day_of_week"]:
        assert str(df[col].dtype) == "int64", col
    for col in ["price", "units"]:
        assert str(df[col].dtype) == "float64", col
    assert df["price"].between(5, 50).all()
    assert set(df["promo"]) == {0, 1}
    assert (df["day_of_week"] == df["event_time"].dt.dayofweek).all()
    assert set(df["plan"]) <= {"basic", "standard", "premium"}
    assert (df["units"] >= 0).all()


def test_customers_come_from_one_shared_pool_with_stable_attributes():
    churn, demand = churn_frame(10), demand_frame(10)
    ids = set(churn["customer_id"]) | set(demand["customer_id"])
    assert len(ids) <= 2_000
    assert len(set(churn["customer_id"]) & set(demand["customer_id"])) > 500
    assert churn.groupby("customer_id")["region"].nunique().max() == 1
    assert churn.groupby("customer_id")["plan"].nunique().max() == 1


def test_rows_argument():
    assert len(feed.generate_batch("demand", START, rows=50)) == 50
    with pytest.raises(ValueError, match="rows"):
        feed.generate_batch("demand", START, rows=0)


def test_drift_moves_the_means():
    normal, drift = churn_frame(5), churn_frame(5, scenario="drift")
    assert drift["monthly_charges"].mean() > 1.25 * normal["monthly_charges"].mean()
    assert drift["tenure_months"].mean() < 0.65 * normal["tenure_months"].mean()
    assert drift["support_calls"].mean() > 1.6 * normal["support_calls"].mean()
    assert (drift["plan"] == "basic").mean() > (normal["plan"] == "basic").mean() + 0.15
    assert drift["churned"].mean() > normal["churned"].mean()

    d_normal, d_drift = demand_frame(5), demand_frame(5, scenario="drift")
    assert d_drift["price"].mean() > 1.35 * d_normal["price"].mean()
    assert d_drift["promo"].mean() > d_normal["promo"].mean() + 0.25
    assert d_drift["price"].max() > 50


@pytest.mark.parametrize("pipeline, column", [("churn", "tenure_months"), ("demand", "price")])
def test_quality_incident_breaks_nulls_dtypes_and_ranges(pipeline, column):
    df = pd.concat([feed.generate_batch(pipeline, d, "quality_incident") for d in days(5)], ignore_index=True)
    null_share = df["customer_id"].isna().mean()
    assert 0.02 < null_share < 0.09
    assert df[column].dtype == object
    assert all(isinstance(v, str) for v in df[column])
    values = pd.to_numeric(df[column])
    if pipeline == "churn":
        assert set(values[(values < 0) | (values > 600)]) == {-5, 9999}
    else:
        assert (values < 0).any()
    # everything else keeps its normal shape
    normal = feed.generate_batch(pipeline, START)
    assert list(df.columns) == list(normal.columns)


@pytest.mark.parametrize(
    "call",
    [
        lambda: feed.generate_batch("churn", START, "meteor"),
        lambda: feed.advance_day("meteor"),
    ],
)
def test_unknown_scenario_names_the_valid_ones(call):
    with pytest.raises(ValueError, match="meteor") as err:
        call()
    for name in ("normal", "drift", "quality_incident"):
        assert name in str(err.value)


def test_unknown_pipeline_names_the_valid_ones():
    with pytest.raises(ValueError, match="fraud") as err:
        feed.generate_batch("fraud", START)
    assert "churn" in str(err.value) and "demand" in str(err.value)


def test_bad_day():
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        feed.generate_batch("churn", "yesterday")


# ---------------------------------------------------------------------------------------------
# Landing folder and simulated clock
# ---------------------------------------------------------------------------------------------


def test_landing_dir_follows_the_environment(data_dir, monkeypatch):
    assert feed.landing_dir() == data_dir / "landing"
    assert feed.state_path() == data_dir / "feed_state.json"
    monkeypatch.delenv("MLOPS_DEMO_DATA")
    assert feed.landing_dir() == REPO_ROOT / "data" / "landing"


def test_write_batch_is_atomic_and_round_trips(data_dir):
    path = feed.write_batch("demand", "2026-01-07", "drift")
    assert path == data_dir / "landing" / "demand" / "2026-01-07.parquet"
    assert [p.name for p in path.parent.iterdir()] == ["2026-01-07.parquet"]  # no tmp file left behind
    pd.testing.assert_frame_equal(pd.read_parquet(path), feed.generate_batch("demand", "2026-01-07", "drift"))


def test_advance_day_starts_the_calendar_and_records_state(data_dir):
    assert feed.current_day() is None
    assert feed.advance_day() == START
    assert feed.advance_day("drift") == START + timedelta(days=1)
    assert feed.current_day() == START + timedelta(days=1)
    state = json.loads((data_dir / "feed_state.json").read_text())
    assert state == {"today": "2026-01-02", "scenarios": {"2026-01-01": "normal", "2026-01-02": "drift"}}
    for pipeline in ("churn", "demand"):
        landed = sorted(p.name for p in (data_dir / "landing" / pipeline).glob("*.parquet"))
        assert landed == ["2026-01-01.parquet", "2026-01-02.parquet"]
        pd.testing.assert_frame_equal(
            pd.read_parquet(data_dir / "landing" / pipeline / "2026-01-02.parquet"),
            feed.generate_batch(pipeline, "2026-01-02", "drift"),
        )
    assert feed.scenario_of("2026-01-02") == "drift"


def test_bootstrap_is_idempotent_and_advance_continues(data_dir):
    landed = feed.bootstrap(days=5)
    assert landed == days(5)
    assert feed.current_day() == date(2026, 1, 5)
    assert feed.bootstrap(days=28) == []  # state exists: no-op
    assert feed.current_day() == date(2026, 1, 5)
    assert len(list((data_dir / "landing" / "churn").glob("*.parquet"))) == 5
    assert feed.advance_day("quality_incident") == date(2026, 1, 6)
    state = json.loads(feed.state_path().read_text())
    assert state["today"] == "2026-01-06"
    assert state["scenarios"]["2026-01-06"] == "quality_incident"
    assert [state["scenarios"][d.isoformat()] for d in days(5)] == ["normal"] * 5


def test_bootstrap_rejects_bad_day_counts(data_dir):
    with pytest.raises(ValueError):
        feed.bootstrap(days=0)
    with pytest.raises(ValueError):
        feed.bootstrap(days=500)
    assert feed.current_day() is None


def test_advance_day_stops_at_the_end_of_the_calendar(data_dir):
    feed.state_path().parent.mkdir(parents=True, exist_ok=True)
    feed.state_path().write_text(json.dumps({"today": "2026-06-29", "scenarios": {}}))
    assert feed.advance_day() == date(2026, 6, 30)
    with pytest.raises(ValueError, match="2026-06-30"):
        feed.advance_day()
    assert feed.current_day() == date(2026, 6, 30)


# ---------------------------------------------------------------------------------------------
# Loaders (dataset.source.python)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pipeline, loader", [("churn", feed.load_churn), ("demand", feed.load_demand)])
def test_loader_reads_the_landed_file(data_dir, pipeline, loader):
    feed.write_batch(pipeline, "2026-01-03", "drift")  # what arrived that day was a drifted batch
    df = loader(SimpleNamespace(partition_key="2026-01-03"))
    pd.testing.assert_frame_equal(df, feed.generate_batch(pipeline, "2026-01-03", "drift"))


@pytest.mark.parametrize("pipeline, loader", [("churn", feed.load_churn), ("demand", feed.load_demand)])
def test_loader_generates_and_lands_a_missing_partition(data_dir, pipeline, loader):
    path = data_dir / "landing" / pipeline / "2026-02-10.parquet"
    assert not path.exists()
    df = loader(SimpleNamespace(partition_key="2026-02-10"))
    assert path.exists()
    pd.testing.assert_frame_equal(df, feed.generate_batch(pipeline, "2026-02-10", "normal"))
    other = "demand" if pipeline == "churn" else "churn"
    assert not (data_dir / "landing" / other / "2026-02-10.parquet").exists()  # one batch per call
    assert feed.current_day() is None  # the clock is not moved by a loader


def test_loader_regenerates_the_recorded_scenario_if_its_file_went_missing(data_dir):
    feed.bootstrap(days=2)
    feed.advance_day("drift")
    (data_dir / "landing" / "churn" / "2026-01-03.parquet").unlink()
    df = feed.load_churn(SimpleNamespace(partition_key="2026-01-03"))
    pd.testing.assert_frame_equal(df, feed.generate_batch("churn", "2026-01-03", "drift"))


def test_loader_with_a_dagster_context(data_dir):
    dg = pytest.importorskip("dagster")
    df = feed.load_demand(dg.build_asset_context(partition_key="2026-01-15"))
    pd.testing.assert_frame_equal(df, feed.generate_batch("demand", "2026-01-15"))


def test_loaders_resolve_from_the_pipeline_specs():
    import yaml

    refs = {}
    for path in sorted((REPO_ROOT / "pipelines").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if "dataset" in doc:
            refs[doc["name"]] = doc["dataset"]["source"]["python"]
        for group in doc.get("feature_groups", []):
            refs[group["name"]] = group["transform"]
    assert refs == {
        "churn": "assets.feed:load_churn",
        "demand": "assets.feed:load_demand",
        "customer_activity": "assets.features:customer_activity",
    }
    import importlib

    for ref in refs.values():
        module, _, attr = ref.partition(":")
        assert callable(getattr(importlib.import_module(module), attr))


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------


def test_cli(data_dir, capsys):
    assert feed.main(["status"]) == 0
    assert "not started" in capsys.readouterr().out
    feed.main(["bootstrap", "--days", "3"])
    assert "2026-01-01 .. 2026-01-03" in capsys.readouterr().out
    feed.main(["bootstrap", "--days", "3"])
    assert "nothing to do" in capsys.readouterr().out
    feed.main(["advance", "--scenario", "drift"])
    assert "2026-01-04 (drift)" in capsys.readouterr().out
    feed.main(["status"])
    out = capsys.readouterr().out
    assert "today:   2026-01-04" in out and "2026-01-04=drift" in out and "4 batch(es)" in out
    with pytest.raises(SystemExit):
        feed.main(["advance", "--scenario", "meteor"])


def test_cli_as_a_module(data_dir):
    import os
    import subprocess

    env = {**os.environ, "MLOPS_DEMO_DATA": str(data_dir)}
    out = subprocess.run(
        [sys.executable, "-m", "assets.feed", "advance"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "landed 2026-01-01 (normal)" in out
    assert (data_dir / "landing" / "churn" / "2026-01-01.parquet").exists()


# ---------------------------------------------------------------------------------------------
# Features: customer_activity
# ---------------------------------------------------------------------------------------------


def _brute_force(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for cid, t in zip(df["customer_id"], df["event_time"], strict=True):
        mine = df[(df["customer_id"] == cid) & (df["event_time"] <= t)]
        window = mine[mine["event_time"] > t - pd.Timedelta(days=7)]
        recent_days = mine["event_time"].dt.normalize()
        rows.append(
            (
                window["monthly_charges"].mean(),
                float(window["support_calls"].sum()),
                float(recent_days[recent_days > t.normalize() - pd.Timedelta(days=7)].nunique()),
            )
        )
    return pd.DataFrame(rows, columns=FEATURES, index=df.index)


def test_customer_activity_columns_rows_and_order():
    df = churn_frame(3)
    shuffled = df.sample(frac=1.0, random_state=0)
    out = customer_activity(shuffled)
    assert list(out.columns) == ACTIVITY_COLUMNS
    assert len(out) == len(shuffled)
    assert out.index.equals(shuffled.index)
    assert (out["customer_id"].to_numpy() == shuffled["customer_id"].to_numpy()).all()
    assert (out["email"].to_numpy() == shuffled["email"].to_numpy()).all()
    # the input order does not matter
    pd.testing.assert_frame_equal(out.sort_index(), customer_activity(df))


def test_customer_activity_matches_a_brute_force_computation():
    t0 = pd.Timestamp("2026-01-01 12:00")
    df = pd.DataFrame(
        {
            "customer_id": [1, 1, 1, 1, 1, 2, 2],
            "event_time": [
                t0,
                t0 + pd.Timedelta("1D"),
                t0 + pd.Timedelta("6D 23h"),
                t0 + pd.Timedelta("7D"),
                t0 + pd.Timedelta("8D 13h"),
                t0,
                t0 + pd.Timedelta("30D"),
            ],
            "monthly_charges": [10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0],
            "support_calls": [1, 2, 3, 4, 5, 6, 7],
            "email": [f"user{i}@example.com" for i in [1, 1, 1, 1, 1, 2, 2]],
        }
    )
    out = customer_activity(df)
    expected = _brute_force(df)
    pd.testing.assert_frame_equal(out[expected.columns], expected)
    # (t - 7D, t]: the first event drops out exactly 7 days later
    assert out.loc[3, "avg_charges_7d"] == pytest.approx((20 + 30 + 40) / 3)
    assert out.loc[3, "support_calls_7d"] == 9
    # day 8 13h: events on Jan 2, Jan 8, Jan 8, Jan 10 -> distinct days Jan 4..Jan 10 = {Jan 8, Jan 10}
    assert out.loc[4, "active_days_7d"] == 2


def test_customer_activity_matches_brute_force_on_generated_data():
    df = churn_frame(12)
    df = df[df["customer_id"] % 10 == 0].reset_index(drop=True)  # keep the brute force quick
    out = customer_activity(df)
    pd.testing.assert_frame_equal(
        out[["avg_charges_7d", "support_calls_7d", "active_days_7d"]], _brute_force(df)
    )


def test_customer_activity_is_point_in_time():
    past = churn_frame(10)
    future = churn_frame(5, first=START + timedelta(days=10))
    # appending later days leaves every earlier row's features as they were
    before = customer_activity(past)
    after = customer_activity(pd.concat([past, future], ignore_index=True))
    pd.testing.assert_frame_equal(after.iloc[: len(past)], before)
    # and so does having later rows (same customers, interleaved with the earlier ones) in the frame at all
    cut = past["event_time"].quantile(0.5)
    early = past[past["event_time"] <= cut]
    pd.testing.assert_frame_equal(customer_activity(past).loc[early.index], customer_activity(early))


def test_customer_activity_duplicate_timestamps_are_order_independent():
    t = pd.Timestamp("2026-01-05 09:00")
    df = pd.DataFrame(
        {
            "customer_id": [7, 7, 7, 8],
            "event_time": [t - pd.Timedelta("1D"), t, t, t],
            "monthly_charges": [10.0, 20.0, 60.0, 5.0],
            "support_calls": [1, 2, 4, 0],
            "email": ["a", "b", "c", "d"],
        }
    )
    out = customer_activity(df)
    reversed_out = customer_activity(df.iloc[::-1]).loc[df.index]
    pd.testing.assert_frame_equal(out, reversed_out)
    assert out.loc[1, "avg_charges_7d"] == out.loc[2, "avg_charges_7d"] == pytest.approx(30.0)
    assert out.loc[1, "support_calls_7d"] == out.loc[2, "support_calls_7d"] == 7
    assert out.loc[1, "active_days_7d"] == 2
    assert out.loc[3, "support_calls_7d"] == 0


def test_customer_activity_keeps_rows_without_a_customer():
    df = pd.concat([feed.generate_batch("churn", d, "quality_incident") for d in days(3)], ignore_index=True)
    out = customer_activity(df)
    assert len(out) == len(df)
    no_id = df["customer_id"].isna()
    assert no_id.any()
    assert out.loc[no_id, ["avg_charges_7d", "support_calls_7d", "active_days_7d"]].isna().all().all()
    assert out.loc[~no_id, ["avg_charges_7d", "support_calls_7d", "active_days_7d"]].notna().all().all()


def test_customer_activity_accepts_a_repeated_index():
    a, b = feed.generate_batch("churn", START), feed.generate_batch("churn", START + timedelta(days=1))
    out = customer_activity(pd.concat([a, b]))  # index 0..299 twice
    expected = customer_activity(pd.concat([a, b], ignore_index=True))
    pd.testing.assert_frame_equal(out.reset_index(drop=True), expected)


@pytest.mark.parametrize("column", ["customer_id", "event_time", "monthly_charges", "support_calls", "email"])
def test_customer_activity_names_a_missing_column(column):
    df = feed.generate_batch("churn", START).drop(columns=[column])
    with pytest.raises((KeyError, ValueError), match=column):
        customer_activity(df)


def test_customer_activity_scales_to_a_month_of_rows():
    # Its speed is measured in benchmarks, not asserted here (the suite runs on loaded machines).
    df = pd.concat([feed.generate_batch("churn", d, rows=3_400) for d in days(30)], ignore_index=True)
    assert len(df) >= 100_000
    out = customer_activity(df)
    assert len(out) == len(df)
    assert out.index.equals(df.index)


# ---------------------------------------------------------------------------------------------
# Learnability: the demo models have something to learn
# ---------------------------------------------------------------------------------------------


def test_churn_is_learnable():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    features = ["tenure_months", "monthly_charges", "support_calls", "plan", "region"]

    def xy(df):
        x = df[features].astype({"plan": "category", "region": "category"})
        return x, df["churned"]

    train, holdout = churn_frame(20), churn_frame(7, first=START + timedelta(days=30))
    model = HistGradientBoostingClassifier(max_iter=100, random_state=0).fit(*xy(train))
    x_test, y_test = xy(holdout)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert auc > 0.7, auc
    assert 0.1 < train["churned"].mean() < 0.5


def test_demand_is_learnable():
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    features = ["price", "promo", "day_of_week"]
    train, holdout = demand_frame(20), demand_frame(7, first=START + timedelta(days=30))
    model = Ridge(alpha=1.0).fit(train[features], train["units"])
    r2 = r2_score(holdout["units"], model.predict(holdout[features]))
    assert r2 > 0.4, r2
    assert model.coef_[0] < 0 < model.coef_[1]  # price lowers units, promo raises them


def test_restated_history_leaks_the_label_into_support_calls_only(data_dir):
    feed.bootstrap(days=3)
    before = feed.load_churn(SimpleNamespace(partition_key="2026-01-02"))
    feed.restate_with_leak(days(3))
    after = feed.load_churn(SimpleNamespace(partition_key="2026-01-02"))
    pd.testing.assert_frame_equal(after.drop(columns="support_calls"), before.drop(columns="support_calls"))
    churners = after["churned"] == 1
    assert churners.any() and (~churners).any()
    assert after.loc[churners, "support_calls"].min() >= 7  # the outcome shows in the feature
    assert after.loc[~churners, "support_calls"].max() <= 3
    assert not before["support_calls"].equals(after["support_calls"])
    feed.restate_with_leak(days(3))  # idempotent: the same re-delivery again
    pd.testing.assert_frame_equal(feed.load_churn(SimpleNamespace(partition_key="2026-01-02")), after)


def test_restating_a_day_that_never_landed_is_refused(data_dir):
    feed.bootstrap(days=1)
    with pytest.raises(ValueError, match="2026-01-05"):
        feed.restate_with_leak([date(2026, 1, 5)])


def test_feedback_is_the_outcome_of_the_days_batch_before_and_after_a_restatement(data_dir):
    feed.bootstrap(days=2)
    context = SimpleNamespace(partition_key="2026-01-02")
    labels = feed.load_churn_feedback(context)
    assert list(labels.columns) == ["customer_id", "event_time", "churned"]
    batch = feed.load_churn(context)
    pd.testing.assert_frame_equal(labels, batch[["customer_id", "event_time", "churned"]])
    feed.restate_with_leak(days(2))
    pd.testing.assert_frame_equal(feed.load_churn_feedback(context), labels)
