"""The one place where pipeline specs meet their feature groups and are checked as a whole.

`resolve_specs` runs on every path a spec takes: `load_specs` (YAML files and folders),
`build_definitions` (specs built in Python too) and `MLPipelineComponent` (a `defs.yaml`). Its checks
import nothing heavy: names and references across files, columns used as features that must not be
(label, entity, timestamp, PII), drift methods and thresholds, estimator counts. `validate_deep` adds
the checks that import sklearn and Great Expectations.

PII: a column that `dataset.pii` or a consumed feature group's `pii` declares is never a model feature.
Naming it in `model.features` is an error. A group may produce (and list in `columns`) a PII column of
its own: the group hashes it and never hands it to a model. A group producing a column that is PII
elsewhere without hashing it is an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mlops_dagster.errors import SpecError, SpecIssue
from mlops_dagster.spec.models import FeatureGroupSpec, Located, PipelineSpec

MAX_COUNT = 1_000_000  # an integer estimator parameter above this (iterations, trees...) never finishes
SEED_PARAMS = frozenset({"random_state", "seed", "random_seed"})  # integers that are not counts


def duplicate_issue(kind: str, later: Located, first: Located, name: str) -> SpecIssue:
    """`later` repeats the name of `first`: the issue points at `later`'s name and says where `first` is."""
    return later.issue(("name",), f"duplicate {kind} {name!r} (first declared in {first.place(('name',))})")


def _same(a: Located, b: Located) -> bool:
    """The same declaration seen twice (one object, or one file's entry read twice), not a clash."""
    return a is b or (
        a.origin() is not None and a.origin() == b.origin() and a.model_dump() == b.model_dump()
    )


def resolve_specs(
    pipelines: Iterable[PipelineSpec],
    groups: Iterable[FeatureGroupSpec] = (),
    *,
    check_inputs: bool = True,
    pending: Sequence[SpecIssue] = (),
) -> list[PipelineSpec]:
    """Attach to each pipeline the feature groups it names, and check the specs together.

    Args:
        pipelines: Pipeline specs, from YAML or built in Python. Groups already attached to them
            (`with_feature_groups`) are available to every pipeline, as are `groups`.
        groups: Feature groups declared on their own (the entries of `feature_groups:` files).
        check_inputs: Every group's `inputs` must name one of `pipelines`. False where the pipelines
            a group reads may be defined elsewhere (a component knows only its own pipeline).
        pending: Issues found before (while reading files), reported together with these.

    Returns:
        The pipelines, in order, each with the groups its `features` names attached.

    Raises:
        SpecError: listing every issue, each with file:line and field (or `<spec NAME>`).
    """
    issues = list(pending)
    by_name: dict[str, PipelineSpec] = {}
    for spec in pipelines:
        first = by_name.setdefault(spec.name, spec)
        if not _same(first, spec):
            issues.append(duplicate_issue("pipeline name", spec, first, spec.name))
    pool: dict[str, FeatureGroupSpec] = {}
    for declared in [*groups, *(g for spec in by_name.values() for g in spec.feature_groups)]:
        first_group = pool.setdefault(declared.name, declared)
        if not _same(first_group, declared):
            issues.append(duplicate_issue("feature group", declared, first_group, declared.name))

    resolved: list[PipelineSpec] = []
    inputs_checked: set[str] = set()  # a group's inputs are checked once, however many consume it
    for spec in by_name.values():
        mine: list[FeatureGroupSpec] = []
        for j, gname in enumerate(spec.features):
            group = pool.get(gname)
            if group is None:
                known = ", ".join(sorted(pool)) or "none loaded"
                issues.append(
                    spec.issue(("features", j), f"unknown feature group {gname!r} (known: {known})")
                )
                continue
            if spec.name not in group.consumers:
                issues.append(
                    spec.issue(
                        ("features", j),
                        f"feature group {gname!r} does not list {spec.name!r} in its consumers "
                        f"({group.place(('consumers',))})",
                    )
                )
            if check_inputs and gname not in inputs_checked:
                inputs_checked.add(gname)
                issues.extend(
                    group.issue(("inputs", k), f"unknown pipeline {source!r} (needed by {spec.name!r})")
                    for k, source in enumerate(group.inputs)
                    if source not in by_name
                )
            mine.append(group)
        linked = spec.with_feature_groups(tuple(mine))
        issues.extend(check_spec(linked))
        resolved.append(linked)
    if issues:
        raise SpecError(issues)
    return resolved


def _pii_sources(spec: PipelineSpec) -> dict[str, str]:
    """Each PII column of a pipeline and where it is declared."""
    sources = {col: f"feature group {g.name!r} pii" for g in reversed(spec.feature_groups) for col in g.pii}
    sources.update({col: "dataset.pii" for col in spec.dataset.pii})
    return sources


def check_spec(spec: PipelineSpec) -> list[SpecIssue]:
    """The checks of one pipeline with its feature groups attached; nothing heavy is imported.

    Returns:
        The issues found (none when the spec is sound).
    """
    return [*_feature_issues(spec), *_drift_issues(spec), *_param_issues(spec), *_governance_issues(spec)]


def _feature_issues(spec: PipelineSpec) -> list[SpecIssue]:
    """The label, keys and PII never become model features."""
    ds = spec.dataset
    pii = _pii_sources(spec)
    issues: list[SpecIssue] = []
    for group in spec.feature_groups:
        if group.columns and ds.label in group.columns:
            issues.append(
                group.issue(
                    ("columns",), f"label {ds.label!r} of pipeline {spec.name!r} is used as a feature"
                )
            )
        for k, col in enumerate(group.columns or []):
            if col in pii and col not in group.pii:
                issues.append(
                    group.issue(
                        ("columns", k),
                        f"{col!r} is PII ({pii[col]} of pipeline {spec.name!r}) but this group does not "
                        "hash it: list it in the group's `pii`, or drop it",
                    )
                )
    for j, col in enumerate(spec.model.features or []):
        loc = ("model", "features", j)
        if col == ds.label:
            issues.append(spec.issue(loc, f"label {col!r} is used as a feature"))
        elif col in (ds.entity, ds.timestamp):
            issues.append(spec.issue(loc, f"{col!r} is the entity or timestamp column, not a feature"))
        elif col in pii:
            issues.append(
                spec.issue(loc, f"{col!r} is declared PII ({pii[col]}): PII is never a model feature")
            )
    return issues


def _drift_issues(spec: PipelineSpec) -> list[SpecIssue]:
    """Drift methods the monitor knows, thresholds it can reach, columns it tests (else each tick fails)."""
    # Importing the monitoring package loads numpy and pandas, which the definitions load anyway.
    from mlops_dagster.monitoring.kinds import METHODS, P_VALUE_METHODS

    drift = spec.monitoring.drift
    ds = spec.dataset
    untested = {
        ds.label: "the label",
        ds.entity: "the entity column",
        ds.timestamp: "the timestamp column",
        **{col: "declared PII" for col in spec.pii_columns},
    }
    issues: list[SpecIssue] = []
    for option, values in (("methods", drift.methods), ("thresholds", drift.thresholds)):
        for col in values:
            if col in untested:
                issues.append(
                    spec.issue(
                        ("monitoring", "drift", option, col),
                        f"{col!r} is {untested[col]}, not a feature: drift is tested on features only",
                    )
                )
    for col, method in drift.methods.items():
        if method not in METHODS:
            issues.append(
                spec.issue(
                    ("monitoring", "drift", "methods", col),
                    f"unknown drift method {method!r} (choose from {', '.join(METHODS)})",
                )
            )
    for col, threshold in drift.thresholds.items():
        chosen = drift.methods.get(col)
        problem: str | None = None
        if threshold <= 0:
            problem = "must be greater than 0"
        elif chosen in P_VALUE_METHODS and threshold >= 1:
            problem = f"is a p-value threshold for {chosen!r}: it must be below 1 (1 flags every batch)"
        elif chosen == "jensenshannon" and threshold > 1:
            problem = "is above 1, the largest Jensen-Shannon distance: nothing would ever drift"
        elif chosen is None and threshold >= 1:
            problem = (
                "must be below 1 when the method is chosen per column (it may be a p-value test); "
                "name a distance method (wasserstein, psi) in `methods` for a larger threshold"
            )
        if problem:
            issues.append(spec.issue(("monitoring", "drift", "thresholds", col), f"{threshold} {problem}"))
    return issues


def _param_issues(spec: PipelineSpec) -> list[SpecIssue]:
    """Integer estimator parameters within a bound a training run can reach (sklearn checks the rest)."""
    return [
        spec.issue(
            ("model", "params", name),
            f"{value:,} is more than {MAX_COUNT:,}: no training run finishes with that many (a typo?)",
        )
        for name, value in spec.model.params.items()
        if isinstance(value, int)
        and not isinstance(value, bool)
        and name not in SEED_PARAMS
        and abs(value) > MAX_COUNT
    ]


def _governance_issues(spec: PipelineSpec) -> list[SpecIssue]:
    """Serving targets, batch predictions and late labels (`feedback`) that can work together."""
    from mlops_dagster.keys import PredictionColumns

    issues: list[SpecIssue] = []
    targets = spec.serving.targets
    issues.extend(
        spec.issue(("serving", "targets", j), f"target {target!r} is listed twice")
        for j, target in enumerate(targets)
        if target in targets[:j]
    )
    ds, feedback = spec.dataset, spec.feedback
    if "batch" in targets:
        for field in ("entity", "timestamp"):
            column = getattr(ds, field)
            if column in PredictionColumns.RESERVED or column.startswith(PredictionColumns.PROBA_PREFIX):
                issues.append(
                    spec.issue(
                        ("dataset", field),
                        f"{column!r} is a column `{spec.name}/predictions` writes itself (prediction, "
                        "proba_<class>, model_version, partition): rename it at the source to serve `batch`",
                    )
                )
    if spec.serving.prediction_log.enabled and not {"cloud", "edge"} & set(targets):
        issues.append(
            spec.issue(
                ("serving", "prediction_log", "enabled"),
                "the prediction log records what the bento (`cloud`) and the edge predictor (`edge`) "
                "serve: add one of them to serving.targets, or drop the log",
            )
        )
    if feedback is None:
        return issues
    if "batch" not in targets:
        issues.append(
            spec.issue(
                ("feedback",),
                "feedback needs `batch` in serving.targets: live performance joins the champion's batch "
                "predictions (`<p>/predictions`) with these labels",
            )
        )
    kind = feedback.source.kind
    text = getattr(feedback.source, kind) or ""
    if ds.partitions is None and kind != "python" and "{partition}" in text:
        issues.append(
            spec.issue(
                ("feedback", "source", kind),
                "has a {partition} placeholder but the dataset is not partitioned (the feedback's "
                f"partitions follow the dataset's, {spec.place(('dataset',))}): no partition would fill it",
            )
        )
    return issues
