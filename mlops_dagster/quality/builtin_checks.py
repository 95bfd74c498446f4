"""Built-in checks on a dataset batch beside the schema guard: the label, and the checks inferred from the
champion's training profile (presence, domain, range). Pure pandas; each returns a `CheckOutcome`.

- `mlops_label` (blocking): the label is present and never null; for classification its values are among
  the classes the champion was trained on, unless `quality.allow_new_classes`.
- `mlops_inferred_presence` (blocking): no column's share of nulls rises by more than
  `quality.inferred.presence.max_null_increase` over the champion's training data.
- `mlops_inferred_domain` (blocking): no more than `quality.inferred.domain.max_unseen_share` of a
  categorical column's values lie outside the values the champion saw.
- `mlops_inferred_range` (warning unless `quality.inferred.range.blocking`): numbers stay within the
  training min and max, widened by `tolerance` times the training range on each side.

With no champion (or a champion recorded before profiles), each passes with a note saying so.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops_dagster.quality.baseline import Baseline, is_categorical, is_numeric, value_key
from mlops_dagster.spec.models import DomainCheckSpec, PresenceCheckSpec, RangeCheckSpec

LABEL_CHECK_NAME = "mlops_label"
PRESENCE_CHECK_NAME = "mlops_inferred_presence"
DOMAIN_CHECK_NAME = "mlops_inferred_domain"
RANGE_CHECK_NAME = "mlops_inferred_range"
_LISTED = 5  # unseen values named per column


@dataclass(frozen=True)
class CheckOutcome:
    """One built-in check on one batch. `problems` name the column at fault; `note` says why a passing
    check compared nothing; `details` are JSON-able facts per column."""

    name: str
    passed: bool
    problems: list[str] = field(default_factory=list)
    note: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _no_champion(name: str, baseline: Baseline, what: str) -> CheckOutcome | None:
    if baseline.version is None:
        return CheckOutcome(name, True, note=f"no champion yet: no {what} to compare with")
    return None


def label_outcome(
    df: pd.DataFrame,
    label: str,
    task: str,
    baseline: Baseline,
    allow_new_classes: bool,
    pii: Collection[str] = (),
) -> CheckOutcome:
    """The label column: present, not null, and (classification) within the champion's classes."""
    if label not in df.columns:
        return CheckOutcome(LABEL_CHECK_NAME, False, [f"label `{label}`: missing from the batch"])
    series = df[label]
    problems: list[str] = []
    details: dict[str, Any] = {"rows": len(series), "nulls": int(series.isna().sum())}
    if details["nulls"]:
        problems.append(f"label `{label}`: {details['nulls']} null value(s) of {len(series)}")
    note = None
    if task != "classification":
        pass
    elif allow_new_classes:
        note = "quality.allow_new_classes: new label values are accepted"
    elif baseline.version is None:
        note = "no champion yet: any label value is accepted"
    elif baseline.classes is None:
        note = f"the champion ({baseline.version}) recorded no classes: label values not compared"
    else:
        known = {value_key(c) for c in baseline.classes}
        unseen = _unseen_keys(series.dropna(), known)
        if len(unseen):
            counts = unseen.value_counts()
            listed = ", ".join(
                f"{'<pii>' if label in pii else k} ({n})" for k, n in counts.head(_LISTED).items()
            )
            more = f" and {len(counts) - _LISTED} more" if len(counts) > _LISTED else ""
            problems.append(
                f"label `{label}`: {len(unseen)} value(s) outside the champion's classes "
                f"{baseline.classes}: {listed}{more} (set quality.allow_new_classes: true to accept them)"
            )
            details["unseen"] = len(unseen)
        details["classes"] = list(baseline.classes)
    return CheckOutcome(LABEL_CHECK_NAME, not problems, problems, note, details)


def _profiled(baseline: Baseline, df: pd.DataFrame) -> dict[str, dict[str, Any]]:
    columns = (baseline.profile or {}).get("columns") or {}
    return {c: p for c, p in columns.items() if c in df.columns and isinstance(p, dict)}


def _no_profile(name: str, baseline: Baseline, df: pd.DataFrame) -> CheckOutcome | None:
    missing = _no_champion(name, baseline, "training profile")
    if missing:
        return missing
    if baseline.profile is None:
        return CheckOutcome(
            name,
            True,
            note=f"the champion ({baseline.version}) recorded no training profile: retrain to add one",
        )
    if df.empty:
        return CheckOutcome(name, True, note="the batch is empty (see mlops_schema_guard)")
    return None


def presence_outcome(df: pd.DataFrame, baseline: Baseline, spec: PresenceCheckSpec) -> CheckOutcome:
    """Each profiled column's share of nulls against the champion's, plus the allowed increase."""
    early = _no_profile(PRESENCE_CHECK_NAME, baseline, df)
    if early:
        return early
    problems, details = [], {}
    for column, entry in _profiled(baseline, df).items():
        was = float(entry.get("null_share", 0.0))
        now = float(df[column].isna().mean())
        details[column] = {"null_share": now, "champion": was}
        if now > was + spec.max_null_increase + 1e-12:
            problems.append(
                f"column `{column}`: {_pct(now)} null (champion's training data {_pct(was)}; "
                f"allowed up to {_pct(min(1.0, was + spec.max_null_increase))})"
            )
    return CheckOutcome(PRESENCE_CHECK_NAME, not problems, problems, details=details)


def _unseen_keys(series: pd.Series, known: set[str]) -> pd.Series:
    """The `value_key`s of the (non-null) values of `series` that are not in `known`, one per row.

    `value_key` runs once per distinct value, not once per row: a batch holds few distinct values.
    """
    new = [v for v in series.unique() if value_key(v) not in known]
    hits = series[series.isin(new)] if new else series.iloc[:0]
    return hits.map(value_key).astype(object)


def domain_outcome(df: pd.DataFrame, baseline: Baseline, spec: DomainCheckSpec) -> CheckOutcome:
    """Each profiled categorical column's values against the values the champion saw."""
    early = _no_profile(DOMAIN_CHECK_NAME, baseline, df)
    if early:
        return early
    problems, details = [], {}
    for column, entry in _profiled(baseline, df).items():
        domain = entry.get("domain")
        series = df[column].dropna()
        if not isinstance(domain, list) or series.empty or not is_categorical(df[column]):
            continue
        unseen = _unseen_keys(series, set(domain))
        share = len(unseen) / len(series)
        details[column] = {"unseen_share": share, "domain_size": len(domain)}
        if len(unseen) and share > spec.max_unseen_share:
            counts = unseen.value_counts()
            listed = ", ".join(f"{k!r} ({n})" for k, n in counts.head(_LISTED).items())
            more = f" and {len(counts) - _LISTED} more" if len(counts) > _LISTED else ""
            problems.append(
                f"column `{column}`: {len(unseen)} value(s) ({_pct(share)}) the champion never saw: "
                f"{listed}{more}"
            )
    return CheckOutcome(DOMAIN_CHECK_NAME, not problems, problems, details=details)


def range_outcome(df: pd.DataFrame, baseline: Baseline, spec: RangeCheckSpec) -> CheckOutcome:
    """Each profiled numeric column against the champion's [min, max], widened by the tolerance."""
    early = _no_profile(RANGE_CHECK_NAME, baseline, df)
    if early:
        return early
    problems, details = [], {}
    for column, entry in _profiled(baseline, df).items():
        low, high = entry.get("min"), entry.get("max")
        if (
            not isinstance(low, int | float)
            or not isinstance(high, int | float)
            or not is_numeric(df[column])
        ):
            continue
        span = high - low or max(abs(high), 1.0)
        lo, hi = low - spec.tolerance * span, high + spec.tolerance * span
        values = df[column].dropna().to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        outside = int(((values < lo) | (values > hi)).sum())
        details[column] = {"outside": outside, "allowed": [lo, hi]}
        if outside:
            problems.append(
                f"column `{column}`: {outside} value(s) ({_pct(outside / len(values))}) outside "
                f"[{lo:.6g}, {hi:.6g}] (champion's training range [{low:.6g}, {high:.6g}], tolerance "
                f"{spec.tolerance:g}); batch range [{values.min():.6g}, {values.max():.6g}]"
            )
    return CheckOutcome(RANGE_CHECK_NAME, not problems, problems, details=details)
