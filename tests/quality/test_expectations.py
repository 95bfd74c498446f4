"""Expectations in a spec: check names (pure), early validation against GX, and validate_deep's file:line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mlops_dagster.errors import SpecError
from mlops_dagster.quality import check_names, validate_expectations
from mlops_dagster.spec import load_specs, validate_deep
from mlops_dagster.spec.models import ExpectationSpec

ROOT = Path(__file__).resolve().parents[2]
NOT_NULL = "expect_column_values_to_not_be_null"
BETWEEN = "expect_column_values_to_be_between"


def exp(kind: str, /, **kwargs: object) -> ExpectationSpec:
    return ExpectationSpec(type=kind, **kwargs)


# --- check_names: pure ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expectations, names",
    [
        ([], []),
        ([exp(NOT_NULL, column="customer_id")], [f"{NOT_NULL}__customer_id"]),
        (
            [exp("expect_table_row_count_to_be_between", min_value=1)],
            ["expect_table_row_count_to_be_between"],
        ),
        (
            [exp("expect_column_pair_values_a_to_be_greater_than_b", column_A="end", column_B="start")],
            ["expect_column_pair_values_a_to_be_greater_than_b__end__start"],
        ),
        (
            [exp("expect_compound_columns_to_be_unique", column_list=["customer_id", "event_time"])],
            ["expect_compound_columns_to_be_unique__customer_id__event_time"],
        ),
        ([exp(NOT_NULL, column="order id (€)")], [f"{NOT_NULL}__order_id"]),
        ([exp(NOT_NULL, column="a.b-c")], [f"{NOT_NULL}__a_b_c"]),
        ([exp(NOT_NULL, column=3)], [f"{NOT_NULL}__3"]),
        (
            [exp(NOT_NULL, column="a"), exp(NOT_NULL, column="a"), exp(NOT_NULL, column="a")],
            [f"{NOT_NULL}__a", f"{NOT_NULL}__a_2", f"{NOT_NULL}__a_3"],
        ),
        (  # different columns that sanitize alike are deduplicated too
            [exp(NOT_NULL, column="a b"), exp(NOT_NULL, column="a-b")],
            [f"{NOT_NULL}__a_b", f"{NOT_NULL}__a_b_2"],
        ),
        (  # a suffix never collides with another expectation's own name
            [exp(NOT_NULL, column="a"), exp(NOT_NULL, column="a"), exp(NOT_NULL, column="a_2")],
            [f"{NOT_NULL}__a", f"{NOT_NULL}__a_3", f"{NOT_NULL}__a_2"],
        ),
    ],
    ids=[
        "none",
        "column",
        "table",
        "column-pair",
        "column-list",
        "spaces-and-unicode",
        "punctuation",
        "non-string",
        "duplicates",
        "sanitized-duplicates",
        "suffix-collision",
    ],
)
def test_check_names(expectations, names):
    assert check_names(expectations) == names


def test_check_names_are_valid_unique_and_stable():
    expectations = [
        exp(NOT_NULL, column="é"),
        exp(NOT_NULL, column="ü"),
        exp(NOT_NULL, column="é"),
        exp("expect_compound_columns_to_be_unique", column_list=[f"column_{i}" for i in range(40)]),
    ]
    names = check_names(expectations)
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", n) for n in names)
    assert len(set(names)) == len(names)
    assert names[0] != names[1]  # two non-ASCII columns keep distinct names (a digest of each)
    assert names[2] == f"{names[0]}_2"
    assert len(names[3]) <= 120
    assert check_names(expectations) == names
    assert check_names(expectations[:2]) == names[:2]  # a name only depends on what comes before it


def test_importing_quality_does_not_import_great_expectations():
    code = textwrap.dedent(
        """
        import json, sys
        import mlops_dagster.quality as q
        from mlops_dagster.spec.models import ExpectationSpec
        names = q.check_names([ExpectationSpec(type="expect_column_values_to_not_be_null", column="a")])
        public = sorted(q.__all__) == q.__all__ and all(hasattr(q, n) for n in q.__all__)
        print(json.dumps({"names": names, "gx": "great_expectations" in sys.modules, "public": public}))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {
        "names": ["expect_column_values_to_not_be_null__a"],
        "gx": False,
        "public": True,
    }


# --- validate_expectations: against GX --------------------------------------------------------------------


def test_validate_expectations():
    problems = validate_expectations(
        [
            exp(NOT_NULL, column="a"),  # 0: fine
            exp("expect_column_values_to_not_be_nul", column="a"),  # 1: unknown type
            exp(BETWEEN, column="a", min_value=0, max_valu=5),  # 2: unknown kwarg
            exp(BETWEEN, column="a", min_value="zero"),  # 3: wrong type
            exp(BETWEEN, min_value=0),  # 4: missing required column
            exp(NOT_NULL, column="a", mostly=2),  # 5: out of range
            exp(NOT_NULL, column="a", result_format="COMPLETE"),  # 6: set by the runner
            exp(BETWEEN, column="a"),  # 7: model-level rule
            exp("expect_column_values_to_be_in_set", column="a", value_set=[1, 2], mostly=0.9),  # 8: fine
            exp("expect_column_values_to_be_of_type", column="a", type_="int64"),  # 9: fine
        ]
    )
    by_index: dict[int, list[tuple[str, str]]] = {}
    for index, field, problem in problems:
        by_index.setdefault(index, []).append((field, problem))
    assert set(by_index) == {1, 2, 3, 4, 5, 6, 7}

    [(field, problem)] = by_index[1]
    assert field == ""
    assert "unknown Great Expectations expectation type 'expect_column_values_to_not_be_nul'" in problem
    assert "did you mean 'expect_column_values_to_not_be_null'" in problem

    [(field, problem)] = by_index[2]
    assert field == "max_valu"
    assert problem.startswith(f"unknown argument 'max_valu' for {BETWEEN} (did you mean 'max_value'?)")

    [(field, problem)] = by_index[3]
    assert field == "min_value"
    assert "'min_value'" in problem and "'zero'" in problem and "not a valid float" in problem
    assert "dict" not in problem  # GX's internal {"$PARAMETER": ...} alternative is not reported

    [(field, problem)] = by_index[4]
    assert (field, problem) == ("column", f"missing required argument 'column' for {BETWEEN}")

    [(field, problem)] = by_index[5]
    assert field == "mostly" and "less than or equal to 1" in problem

    [(field, problem)] = by_index[6]
    assert field == "result_format" and "remove it" in problem

    [(field, problem)] = by_index[7]
    assert field == "" and "min_value and max_value cannot both be None" in problem


# --- validate_deep: file:line ---------------------------------------------------------------------------

PIPELINE = """\
name: churn
dataset:
  source:
    uri: data/churn.parquet
  entity: customer_id
  timestamp: event_time
  label: churned
quality:
  expectations:
    - {type: expect_column_values_to_not_be_null, column: customer_id}
    - {type: expect_column_values_to_be_betwen, column: tenure, min_value: 0}
    - type: expect_column_values_to_be_between
      column: tenure
      min_value: 0
      max_valu: 600
    - {type: expect_column_values_to_be_in_set, value_set: [a, b]}
features: [activity]
model:
  task: classification
  estimator: sklearn.linear_model.LogisticRegression
  metric: roc_auc
"""

GROUPS = """\
feature_groups:
  - name: activity
    inputs: [churn]
    transform: quality_test_transforms:activity
    entity: customer_id
    timestamp: event_time
    consumers: [churn]
    quality:
      expectations:
        - {type: expect_column_values_to_be_unique, column: customer_id}
        - type: expect_column_values_to_be_between
          column: n_events
          min_value: "many"
"""


def test_validate_deep_reports_expectations_with_file_and_line(tmp_path, monkeypatch):
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "quality_test_transforms.py").write_text("def activity(df):\n    return df\n")
    monkeypatch.syspath_prepend(str(tmp_path / "mod"))
    (tmp_path / "specs").mkdir()
    pipeline = tmp_path / "specs" / "p.yaml"
    groups = tmp_path / "specs" / "g.yaml"
    pipeline.write_text(PIPELINE)
    groups.write_text(GROUPS)

    specs = load_specs(tmp_path / "specs")  # loading is shallow: only the deep check fails
    with pytest.raises(SpecError) as info:
        validate_deep(specs)
    got = {(i.file, i.line, i.field): i.message for i in info.value.issues}
    assert set(got) == {
        (str(pipeline), 11, "quality.expectations[1]"),
        (str(pipeline), 15, "quality.expectations[2].max_valu"),
        (str(pipeline), 16, "quality.expectations[3].column"),
        (str(groups), 13, "feature_groups[0].quality.expectations[1].min_value"),
    }
    assert (
        "did you mean 'expect_column_values_to_be_between'"
        in got[(str(pipeline), 11, "quality.expectations[1]")]
    )
    assert "did you mean 'max_value'" in got[(str(pipeline), 15, "quality.expectations[2].max_valu")]
    assert "missing required argument 'column'" in got[(str(pipeline), 16, "quality.expectations[3].column")]
    assert "'many'" in got[(str(groups), 13, "feature_groups[0].quality.expectations[1].min_value")]
    assert f"{pipeline}:15 quality.expectations[2].max_valu: unknown argument 'max_valu'" in str(info.value)

    # fixed, the same files validate
    fixed = PIPELINE.replace("betwen", "between").replace("max_valu", "max_value")
    pipeline.write_text(fixed.replace("value_set: [a, b]", "column: plan, value_set: [a, b]"))
    groups.write_text(GROUPS.replace('"many"', "0"))
    validate_deep(load_specs(tmp_path / "specs"))
