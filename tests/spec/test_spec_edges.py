"""Spec edge cases that crashed or passed: each is now one `file:line field: message` issue.

PII as a feature (issue 9 point 1), drift methods and thresholds (point 10), and YAML or values that
blew up the loader or slipped through it (point 12): alias bombs, deep nesting, huge durations, NaN
and infinities, estimator parameters out of range.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mlops_dagster.cli import main
from mlops_dagster.errors import SpecError, SpecIssue
from mlops_dagster.spec import load_specs, validate_deep
from mlops_dagster.spec.yaml_reader import MAX_DEPTH, MAX_VALUES

# Line numbers below are those of this text; edits replace text in place and keep them stable.
PIPELINE = """\
name: churn
dataset:
  source:
    uri: data/churn.parquet
  entity: customer_id
  timestamp: event_time
  label: churned
  pii: [email, phone]
features: [activity]
model:
  task: classification
  estimator: sklearn.linear_model.LogisticRegression
  params: {max_iter: 50}
  metric: roc_auc
  features: [tenure, charges]
  holdout: 0.2
gates:
  min: {roc_auc: 0.5}
  max_regression: 0.01
monitoring:
  drift:
    max_drifted_share: 0.3
    cooldown: 6h
    methods: {tenure: ks}
    thresholds: {tenure: 0.05}
  performance: {metric: roc_auc, min: 0.5}
serving:
  parity: {label_agreement: 0.99, proba_atol: 0.001, rtol: 0.001}
"""

GROUPS = """\
feature_groups:
  - name: activity
    inputs: [churn]
    transform: my_transforms:activity
    entity: customer_id
    timestamp: event_time
    pii: [device_id]
    columns: [n_events, device_id]
    consumers: [churn]
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once in the base spec"
    return text.replace(old, new)


def one_issue(*paths: Path) -> SpecIssue:
    with pytest.raises(SpecError) as info:
        load_specs(*paths)
    issues = info.value.issues
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def pipeline_issue(tmp_path: Path, old: str, new: str, groups: str = GROUPS) -> tuple[Path, SpecIssue]:
    path = write(tmp_path, "p.yaml", edit(PIPELINE, old, new))
    write(tmp_path, "g.yaml", groups)
    return path, one_issue(tmp_path)


def where(issue: SpecIssue) -> tuple[str, int | None, str]:
    return issue.file, issue.line, issue.field


def test_base_spec_loads(tmp_path: Path) -> None:
    """The base holds PII of both kinds, a group listing its own (hashed) PII column, and drift options."""
    write(tmp_path, "p.yaml", PIPELINE)
    write(tmp_path, "g.yaml", GROUPS)
    (spec,) = load_specs(tmp_path)
    assert spec.pii_columns == {"email", "phone", "device_id"}
    assert spec.feature_groups[0].columns == ["n_events", "device_id"]


# --- point 1: PII is never a model feature ------------------------------------------------------------


@pytest.mark.parametrize(
    ("features", "index", "column", "declared"),
    [
        ("[tenure, email]", 1, "email", "dataset.pii"),
        ("[phone, tenure]", 0, "phone", "dataset.pii"),
        ("[tenure, device_id]", 1, "device_id", "feature group 'activity' pii"),
    ],
)
def test_pii_column_named_as_model_feature(
    tmp_path: Path, features: str, index: int, column: str, declared: str
) -> None:
    path, issue = pipeline_issue(tmp_path, "features: [tenure, charges]", f"features: {features}")
    assert where(issue) == (str(path), 15, f"model.features[{index}]")
    assert issue.message == f"{column!r} is declared PII ({declared}): PII is never a model feature"


def test_group_producing_a_pii_column_it_does_not_hash(tmp_path: Path) -> None:
    """`email` is PII of the dataset; a group that outputs it unhashed would hand it to the model."""
    groups = edit(GROUPS, "columns: [n_events, device_id]", "columns: [n_events, email]")
    write(tmp_path, "p.yaml", PIPELINE)
    path = write(tmp_path, "g.yaml", groups)
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), 8, "feature_groups[0].columns[1]")
    assert "'email' is PII (dataset.pii of pipeline 'churn') but this group does not hash it" in issue.message


# --- point 10: drift methods and thresholds ----------------------------------------------------------


def test_unknown_drift_method(tmp_path: Path) -> None:
    path, issue = pipeline_issue(tmp_path, "methods: {tenure: ks}", "methods: {tenure: kolmogorov}")
    assert where(issue) == (str(path), 24, "monitoring.drift.methods.tenure")
    assert issue.message == (
        "unknown drift method 'kolmogorov' (choose from chisquare, jensenshannon, ks, psi, wasserstein, z)"
    )


@pytest.mark.parametrize(
    ("methods", "thresholds", "message"),
    [
        ("{tenure: ks}", "{tenure: .nan}", "Input should be a finite number"),
        ("{tenure: ks}", "{tenure: .inf}", "Input should be a finite number"),
        ("{tenure: ks}", "{tenure: 0}", "0.0 must be greater than 0"),
        ("{tenure: wasserstein}", "{tenure: -0.1}", "-0.1 must be greater than 0"),
        (
            "{tenure: chisquare}",
            "{tenure: 1.0}",
            "is a p-value threshold for 'chisquare': it must be below 1",
        ),
        ("{tenure: jensenshannon}", "{tenure: 1.5}", "above 1, the largest Jensen-Shannon distance"),
        ("{}", "{tenure: 2}", "must be below 1 when the method is chosen per column"),
    ],
)
def test_drift_threshold_out_of_range(tmp_path: Path, methods: str, thresholds: str, message: str) -> None:
    text = edit(PIPELINE, "methods: {tenure: ks}", f"methods: {methods}")
    path = write(tmp_path, "p.yaml", edit(text, "thresholds: {tenure: 0.05}", f"thresholds: {thresholds}"))
    write(tmp_path, "g.yaml", GROUPS)
    issue = one_issue(tmp_path)
    assert where(issue) == (str(path), 25, "monitoring.drift.thresholds.tenure")
    assert message in issue.message


def test_distance_threshold_above_one_is_fine(tmp_path: Path) -> None:
    text = edit(PIPELINE, "methods: {tenure: ks}", "methods: {tenure: wasserstein, charges: psi}")
    write(tmp_path, "p.yaml", edit(text, "thresholds: {tenure: 0.05}", "thresholds: {tenure: 2, charges: 3}"))
    write(tmp_path, "g.yaml", GROUPS)
    (spec,) = load_specs(tmp_path)
    assert spec.monitoring.drift.thresholds == {"tenure": 2.0, "charges": 3.0}


@pytest.mark.parametrize(
    ("column", "what"),
    [("churned", "the label"), ("customer_id", "the entity column"), ("email", "declared PII")],
)
def test_drift_option_for_a_column_never_tested(tmp_path: Path, column: str, what: str) -> None:
    path, issue = pipeline_issue(tmp_path, "methods: {tenure: ks}", f"methods: {{tenure: ks, {column}: z}}")
    assert where(issue) == (str(path), 24, f"monitoring.drift.methods.{column}")
    assert issue.message == f"{column!r} is {what}, not a feature: drift is tested on features only"


# --- point 12: YAML and values that crashed the loader or slipped through ---------------------------


def _cli_lines(path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """What `mlops-dagster validate PATH` prints on stderr (it must exit 1)."""
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("error: ") and lines[-1].endswith(" spec issue(s)")
    return lines[:-1]


def test_alias_bomb_is_refused_before_it_is_expanded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Nine levels of ten-fold aliases: 10**9 values if expanded (more than 3 GB)."""
    levels = [f"  l0: &l0 [{', '.join(['lol'] * 10)}]"]
    levels += [f"  l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 10)]
    text = PIPELINE + "extra:\n" + "\n".join(levels) + "\n"
    path = write(tmp_path, "p.yaml", text)
    (line,) = _cli_lines(path, capsys)
    assert line == (
        f"{path}:29 extra: holds more than {MAX_VALUES:,} values once aliases are expanded; "
        "a spec needs far fewer"
    )


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", edit(PIPELINE, "  params: {max_iter: 50}", "  params: &p {loop: *p}"))
    issue = one_issue(path)
    assert where(issue) == (str(path), 13, "model")
    assert issue.message == "an alias refers to itself (the value is infinite)"


@pytest.mark.parametrize(
    ("nested", "line"),
    [
        pytest.param("[" * 5000 + "]" * 5000, 13, id="flow-5000"),
        pytest.param("{a: " * 5000 + "1" + "}" * 5000, 13, id="flow-mapping-5000"),
        pytest.param("!!seq " + "[" * 5000 + "]" * 5000, 13, id="pure-python-parser-5000"),
        pytest.param(
            "".join(f"\n    {'  ' * i}k{i}:" for i in range(5000)) + " 1", 13 + MAX_DEPTH - 1, id="block"
        ),
    ],
)
def test_deep_nesting_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], nested: str, line: int
) -> None:
    path = write(tmp_path, "p.yaml", edit(PIPELINE, "params: {max_iter: 50}", f"params: {nested}"))
    (printed,) = _cli_lines(path, capsys)
    assert printed == f"{path}:{line} model: nested deeper than {MAX_DEPTH} levels; a spec needs only a few"


@pytest.mark.parametrize(
    ("cooldown", "message"),
    [
        ("99999999999999w", "duration '99999999999999w' is longer than 366d, the longest accepted"),
        ("400d", "duration '400d' is longer than 366d, the longest accepted"),
        ("1.0e+300", "duration 1e+300 is longer than 366d, the longest accepted"),
        (".inf", "expected a finite duration, got inf"),
        (".nan", "expected a finite duration, got nan"),
    ],
)
def test_huge_cooldown_is_one_issue(tmp_path: Path, cooldown: str, message: str) -> None:
    path, issue = pipeline_issue(tmp_path, "cooldown: 6h", f"cooldown: {cooldown}")
    assert where(issue) == (str(path), 23, "monitoring.drift.cooldown")
    assert issue.message == message


@pytest.mark.parametrize(
    ("old", "new", "line", "field"),
    [
        ("min: {roc_auc: 0.5}", "min: {roc_auc: .nan}", 18, "gates.min.roc_auc"),
        ("min: {roc_auc: 0.5}", "min: {roc_auc: -.inf}", 18, "gates.min.roc_auc"),
        ("max_regression: 0.01", "max_regression: .inf", 19, "gates.max_regression"),
        ("max_regression: 0.01", "max_regression: .nan", 19, "gates.max_regression"),
        ("max_drifted_share: 0.3", "max_drifted_share: .nan", 22, "monitoring.drift.max_drifted_share"),
        ("{metric: roc_auc, min: 0.5}", "{metric: roc_auc, min: .nan}", 26, "monitoring.performance.min"),
        ("holdout: 0.2", "holdout: .nan", 16, "model.holdout"),
        ("label_agreement: 0.99", "label_agreement: .nan", 28, "serving.parity.label_agreement"),
        ("proba_atol: 0.001", "proba_atol: .NaN", 28, "serving.parity.proba_atol"),
        ("rtol: 0.001", "rtol: .inf", 28, "serving.parity.rtol"),
    ],
)
def test_nan_and_infinity_are_refused(tmp_path: Path, old: str, new: str, line: int, field: str) -> None:
    path, issue = pipeline_issue(tmp_path, old, new)
    assert where(issue) == (str(path), line, field)
    assert issue.message == "Input should be a finite number"


def test_absurd_count_is_refused_on_load(tmp_path: Path) -> None:
    path, issue = pipeline_issue(tmp_path, "params: {max_iter: 50}", "params: {max_iter: 1000000000000}")
    assert where(issue) == (str(path), 13, "model.params.max_iter")
    assert issue.message.startswith("1,000,000,000,000 is more than 1,000,000")


def test_seed_is_not_a_count(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", edit(PIPELINE, "{max_iter: 50}", "{max_iter: 50, random_state: 4294967295}"))
    write(tmp_path, "g.yaml", GROUPS)
    assert load_specs(tmp_path)[0].model.params["random_state"] == 4294967295


@pytest.mark.parametrize(
    ("estimator", "params", "expected"),
    [
        (
            "sklearn.linear_model.LogisticRegression",
            "{max_iter: -5}",
            [("model.params.max_iter", "The 'max_iter' parameter of LogisticRegression must be an int")],
        ),
        (
            "sklearn.ensemble.HistGradientBoostingClassifier",
            "{learning_rate: -1, max_iter: 0, l2_regularization: .nan}",
            [
                ("model.params.learning_rate", "must be a float in the range (0.0, inf). Got -1 instead."),
                ("model.params.max_iter", "must be an int in the range [1, inf). Got 0 instead."),
                ("model.params.l2_regularization", "Got nan instead."),
            ],
        ),
        (
            "sklearn.linear_model.LogisticRegression",
            "{penalty: l3}",
            [("model.params.penalty", "must be a str among")],
        ),
    ],
)
def test_estimator_params_break_sklearn_constraints(
    tmp_path: Path, estimator: str, params: str, expected: list[tuple[str, str]]
) -> None:
    text = edit(PIPELINE, "sklearn.linear_model.LogisticRegression", estimator)
    path = write(tmp_path, "p.yaml", edit(text, "params: {max_iter: 50}", f"params: {params}"))
    groups = edit(GROUPS, "my_transforms:activity", "pandas:DataFrame")  # importable: only params fail
    write(tmp_path, "g.yaml", groups)
    specs = load_specs(tmp_path)  # the spec loads: sklearn's constraints are checked by validate_deep
    with pytest.raises(SpecError) as info:
        validate_deep(specs)
    got = [(i.file, i.line, i.field, i.message) for i in info.value.issues]
    assert len(got) == len(expected), "\n".join(map(str, info.value.issues))
    for (file, line, field, message), (want_field, fragment) in zip(got, expected, strict=True):
        assert (file, line, field) == (str(path), 13, want_field)
        assert fragment in message, message


def test_valid_sklearn_params_pass(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", edit(PIPELINE, "params: {max_iter: 50}", "params: {max_iter: 50, C: .inf}"))
    write(tmp_path, "g.yaml", edit(GROUPS, "my_transforms:activity", "pandas:DataFrame"))
    validate_deep(load_specs(tmp_path))
