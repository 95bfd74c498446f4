"""`mlops_dagster.drift` on plain data: profiles, their integrity, bad inputs, options, exactness of the
tests against scipy, and no Evidently import. (Agreement with Evidently: test_drift_agreement.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops_dagster.drift import DriftProfile, build_profile, detect_drift, load_profile, save_profile
from mlops_dagster.errors import DataError, IntegrityError
from mlops_dagster.monitoring.stattests import CurrentNumbers, binned_percents, sturges_edges

ROOT = Path(__file__).resolve().parents[2]


def _frame(n: int, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(shift, 1.0, n),
            "visits": rng.poisson(20, n),
            "level": rng.integers(0, 4, n),
            "flag": rng.random(n) < 0.3,
            "city": rng.choice(["paris", "lyon", "nice"], n).astype(object),
        }
    )


@pytest.fixture(scope="module")
def reference() -> pd.DataFrame:
    return _frame(5000)


@pytest.fixture(scope="module")
def profile(reference: pd.DataFrame) -> DriftProfile:
    return build_profile(reference)


# --- profile: content, JSON, sha256, integrity --------------------------------------------------------


def test_profile_describes_the_reference(reference: pd.DataFrame, profile: DriftProfile) -> None:
    assert profile.rows == 5000
    assert profile.names == ["amount", "visits", "level", "flag", "city"]
    kinds = {c.name: c.kind for c in profile.columns}
    assert kinds == {"amount": "num", "visits": "num", "level": "cat", "flag": "cat", "city": "cat"}
    amount = profile.column("amount").numeric
    assert amount is not None and not amount.exact and 1000 < len(amount.knots) < 1200
    visits = profile.column("visits").numeric
    assert visits is not None and visits.exact
    assert dict(profile.column("city").categories or ()) == reference["city"].value_counts().to_dict()
    assert dict(profile.column("flag").categories or ()) == reference["flag"].value_counts().to_dict()


def test_small_reference_keeps_every_value() -> None:
    values = np.random.default_rng(1).normal(size=900)
    summary = build_profile(pd.DataFrame({"x": values})).column("x").numeric
    assert summary is not None and summary.exact
    assert np.array_equal(
        np.repeat(summary.knots, np.subtract(summary.count_upto, summary.count_below)), np.sort(values)
    )


def test_json_round_trip_keeps_profile_and_sha256(profile: DriftProfile) -> None:
    text = profile.to_json()
    again = DriftProfile.from_json(text)
    assert again == profile
    assert again.to_json() == text
    assert again.sha256 == profile.sha256 == __import__("hashlib").sha256(text.encode()).hexdigest()
    assert json.loads(text)["format"] == "mlops_dagster/drift-profile@1"


def test_sha256_changes_with_the_reference(profile: DriftProfile) -> None:
    assert build_profile(_frame(5000, seed=1)).sha256 != profile.sha256


def test_save_and_load_profile(profile: DriftProfile, tmp_path: Path) -> None:
    path = tmp_path / "profiles" / "churn.json"
    digest = save_profile(profile, path)
    assert digest == profile.sha256
    assert load_profile(path, digest) == profile
    assert load_profile(str(path), digest.upper()) == profile


def test_load_profile_refuses_a_tampered_file(profile: DriftProfile, tmp_path: Path) -> None:
    path = tmp_path / "profile.json"
    digest = save_profile(profile, path)
    path.write_text(path.read_text().replace('"rows":5000', '"rows":5001'))
    message = (
        r"drift profile .*profile\.json: sha256 [0-9a-f]{64} does not match the record [0-9a-f]{64}; refusing"
    )
    with pytest.raises(IntegrityError, match=message):
        load_profile(path, digest)
    with pytest.raises(IntegrityError, match="refusing to use it"):
        load_profile(path, "0" * 64)


def test_from_json_rejects_other_documents() -> None:
    with pytest.raises(DataError, match="not a valid"):
        DriftProfile.from_json('{"format": "something-else", "rows": 1, "columns": []}')
    with pytest.raises(DataError, match="not a valid"):
        DriftProfile.from_json("not json")


def test_default_columns_follow_evidently_and_explicit_columns_widen_them() -> None:
    n = 200
    rng = np.random.default_rng(2)
    df = pd.DataFrame(
        {
            "text": [f"note {i}" for i in range(n)],  # > 50% distinct strings: Evidently's text
            "nullable": pd.array(rng.integers(0, 50, n), dtype="Int64"),  # Evidently: unknown type
            "unsigned": rng.integers(0, 50, n).astype("uint16"),  # Evidently: unknown type
            "when": pd.date_range("2026-01-01", periods=n, freq="h"),
            "empty": np.full(n, np.nan),
            "x": rng.normal(size=n),
        }
    )
    assert build_profile(df).names == ["x"]
    wide = build_profile(df, columns=["text", "nullable", "unsigned"])
    assert [(c.name, c.kind) for c in wide.columns] == [
        ("text", "cat"),
        ("nullable", "num"),
        ("unsigned", "num"),
    ]
    with pytest.raises(DataError, match="'when' has dtype datetime64"):
        build_profile(df, columns=["when"])
    with pytest.raises(DataError, match="'empty' has no non-null value"):
        build_profile(df, columns=["empty"])
    with pytest.raises(DataError, match="no column \\['nope'\\]"):
        build_profile(df, columns=["nope"])
    with pytest.raises(DataError, match="reference data is empty"):
        build_profile(df.iloc[:0])


# --- detect_drift: verdicts, options, bad inputs --------------------------------------------------------


def test_profile_and_dataframe_give_the_same_result(reference: pd.DataFrame, profile: DriftProfile) -> None:
    current = _frame(20000, seed=3, shift=0.2)
    by_profile = detect_drift(profile, current)
    assert detect_drift(reference, current).to_dict() == by_profile.to_dict()
    assert detect_drift(DriftProfile.from_json(profile.to_json()), current) == by_profile


def test_no_drift_and_drift(profile: DriftProfile) -> None:
    same = detect_drift(profile, _frame(20000, seed=4))
    assert not same.dataset_drift and same.share_drifted == 0.0 and same.drifted_columns == []
    moved = _frame(20000, seed=4, shift=1.0)
    moved["city"] = np.where(moved["flag"], "nice", moved["city"])
    moved["flag"] = ~moved["flag"]
    result = detect_drift(profile, moved)
    assert result.drifted_columns == ["amount", "flag", "city"]
    assert result.share_drifted == pytest.approx(0.6) and result.dataset_drift
    assert result.columns["amount"].method == "wasserstein" and result.columns["amount"].threshold == 0.1
    assert result.columns["level"].method == "jensenshannon" and result.columns["level"].kind == "cat"
    json.dumps(result.to_dict())


def test_dataset_drift_at_exactly_the_drift_share(profile: DriftProfile) -> None:
    current = _frame(5000, seed=5, shift=1.0)  # only "amount" drifts: share 0.2
    assert detect_drift(profile, current, drift_share=0.2).dataset_drift
    assert not detect_drift(profile, current, drift_share=0.21).dataset_drift


def test_empty_current_batch_is_a_data_error(profile: DriftProfile) -> None:
    with pytest.raises(DataError, match="current batch is empty"):
        detect_drift(profile, _frame(10).iloc[:0])


def test_missing_column_is_drifted(profile: DriftProfile) -> None:
    result = detect_drift(profile, _frame(3000, seed=6).drop(columns=["city"]))
    city = result.columns["city"]
    assert (city.method, city.drifted, city.score, city.kind) == ("missing", True, None, "cat")
    assert city.note is not None and "missing" in city.note
    assert result.share_drifted == pytest.approx(0.2)


def test_all_null_column_is_drifted(profile: DriftProfile) -> None:
    current = _frame(3000, seed=7)
    current["amount"] = np.nan
    current["city"] = None
    result = detect_drift(profile, current)
    for name in ("amount", "city"):
        verdict = result.columns[name]
        assert verdict.method == "all_null" and verdict.drifted
        assert verdict.note is not None and "all 3000 values are null" in verdict.note


def test_type_change_is_drifted(profile: DriftProfile) -> None:
    current = _frame(3000, seed=8)
    current["amount"] = current["amount"].round(1).astype(str)
    current["city"] = np.arange(3000) % 3
    result = detect_drift(profile, current)
    assert result.columns["amount"].method == "type_changed" and result.columns["amount"].drifted
    assert "strings in the current batch but numbers" in (result.columns["amount"].note or "")
    assert result.columns["city"].method == "type_changed" and result.columns["city"].drifted


def test_constant_reference(profile: DriftProfile) -> None:
    big = build_profile(pd.DataFrame({"c": np.full(5000, 2.0)}))
    assert not detect_drift(big, pd.DataFrame({"c": np.full(800, 2.0)})).dataset_drift
    moved = detect_drift(big, pd.DataFrame({"c": np.full(800, 2.5)})).columns["c"]
    assert moved.method == "jensenshannon" and moved.drifted  # 2 distinct values: frequencies
    spread = detect_drift(big, pd.DataFrame({"c": np.random.default_rng(0).normal(2.0, 0.01, 800)})).columns[
        "c"
    ]
    assert spread.method == "wasserstein" and spread.drifted and "std 0" in (spread.note or "")
    small = build_profile(pd.DataFrame({"c": np.full(300, 2.0)}))
    same = detect_drift(small, pd.DataFrame({"c": np.full(800, 2.0)})).columns["c"]
    assert (same.method, same.score, same.drifted) == ("z", 1.0, False)


def test_missing_values_surge_is_noted_but_not_a_verdict(profile: DriftProfile) -> None:
    current = _frame(20000, seed=9)
    current.loc[current.index % 2 == 0, "amount"] = np.nan
    verdict = detect_drift(profile, current).columns["amount"]
    assert not verdict.drifted and "null share 0.0% in the reference, 50.0% now" in (verdict.note or "")


def test_methods_and_thresholds(profile: DriftProfile) -> None:
    current = _frame(20000, seed=10, shift=0.05)
    result = detect_drift(
        profile,
        current,
        methods={"amount": "psi", "visits": "ks", "city": "chisquare", "level": "z"},
        thresholds={"amount": 0.5, "flag": 0.001},
    )
    amount, visits = result.columns["amount"], result.columns["visits"]
    assert (amount.method, amount.threshold, amount.drifted) == ("psi", 0.5, False)
    assert visits.method == "ks" and visits.threshold == 0.05 and visits.note is None  # exact counts
    assert result.columns["city"].method == "chisquare" and result.columns["level"].method == "z"
    assert result.columns["flag"].threshold == 0.001
    ks_sketch = detect_drift(profile, current, methods={"amount": "ks"}).columns["amount"]
    assert "approximate" in (ks_sketch.note or "")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"methods": {"amount": "t-test"}}, "unknown method"),
        ({"methods": {"nope": "ks"}}, "not in the reference profile"),
        ({"thresholds": {"nope": 0.1}}, "not in the reference profile"),
        ({"methods": {"city": "ks"}}, "needs numbers"),
        ({"methods": {"amount": "chisquare"}}, "needs category counts"),
        ({"drift_share": 1.5}, "drift_share"),
    ],
)
def test_bad_options(profile: DriftProfile, options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        detect_drift(profile, _frame(100, seed=11), **options)


def test_unknown_column_is_a_data_error(profile: DriftProfile) -> None:
    with pytest.raises(DataError, match="not in the reference profile"):
        detect_drift(profile, _frame(100), columns=["amount", "nope"])
    only_city = detect_drift(profile, _frame(100), columns=["city"], methods={"amount": "ks"})
    assert list(only_city.columns) == ["city"]  # options for profiled columns not tested are ignored


def test_current_batch_is_not_modified(profile: DriftProfile) -> None:
    current = _frame(3000, seed=12)
    current.loc[:10, "amount"] = np.inf
    before = current.copy()
    detect_drift(profile, current)
    pd.testing.assert_frame_equal(current, before)


# --- exactness of the numeric tests against scipy -------------------------------------------------------


@pytest.mark.parametrize("n_cur", [700, 30000])
def test_ks_equals_scipy(n_cur: int) -> None:
    rng = np.random.default_rng(13)
    ref = np.round(rng.normal(size=900), 2)  # ties
    cur = np.round(rng.normal(0.1, 1.0, n_cur), 2)
    verdict = detect_drift(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur})).columns["x"]
    assert verdict.method == "ks"
    assert verdict.score == pytest.approx(stats.ks_2samp(ref, cur).pvalue, rel=1e-12, abs=1e-300)


@pytest.mark.parametrize("ties", [False, True])
def test_wasserstein_equals_scipy(ties: bool) -> None:
    rng = np.random.default_rng(14)
    ref, cur = rng.gamma(2.0, 1.0, 60000), rng.gamma(2.2, 1.0, 90000)
    if ties:
        ref, cur = np.round(ref, 1), np.round(cur, 1)  # <= 2,000 distinct values: exact summary
    expected = stats.wasserstein_distance(ref, cur) / np.std(ref)
    verdict = detect_drift(pd.DataFrame({"x": ref}), pd.DataFrame({"x": cur})).columns["x"]
    assert verdict.method == "wasserstein"
    assert verdict.score == pytest.approx(expected, rel=1e-9 if ties else 1e-3)


@pytest.mark.parametrize("integer", [False, True])
def test_sturges_bins_match_numpy(integer: bool) -> None:
    rng = np.random.default_rng(15)
    ref = rng.integers(0, 60, 800) if integer else rng.normal(size=800)
    cur = rng.integers(5, 70, 3000) if integer else rng.normal(0.3, 1.2, 3000)
    combined = np.concatenate([ref, cur])
    edges = np.histogram_bin_edges(combined, bins="sturges")
    mine = sturges_edges(float(combined.min()), float(combined.max()), combined.size, integer)
    np.testing.assert_array_equal(mine, edges)
    summary = build_profile(pd.DataFrame({"x": ref})).column("x").numeric
    assert summary is not None
    current = CurrentNumbers(np.sort(cur.astype(float)), is_int=integer)
    ref_share, cur_share, approximate = binned_percents(summary, ref.size, integer, current)
    assert not approximate
    np.testing.assert_allclose(ref_share, np.histogram(ref, edges)[0] / ref.size)
    np.testing.assert_allclose(cur_share, np.histogram(cur, edges)[0] / cur.size)


def test_new_category_on_a_small_reference_has_p_value_zero() -> None:
    ref = pd.DataFrame({"c": ["a", "b", "c"] * 200})
    cur = pd.DataFrame({"c": ["a", "b", "c", "d"] * 200})
    verdict = detect_drift(ref, cur).columns["c"]
    assert (verdict.method, verdict.score, verdict.drifted) == ("chisquare", 0.0, True)


# --- import cost ----------------------------------------------------------------------------------------


def test_importing_drift_does_not_import_evidently() -> None:
    code = (
        "import sys, numpy as np, pandas as pd\n"
        "from mlops_dagster.drift import build_profile, detect_drift\n"
        "at_import = sorted(m for m in ('evidently', 'scipy', 'sklearn') if m in sys.modules)\n"
        "df = pd.DataFrame({'x': np.arange(2000.0), 'c': ['a', 'b'] * 1000})\n"
        "detect_drift(build_profile(df), df)\n"
        "print(at_import, 'evidently' in sys.modules)\n"
    )
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[] False"
