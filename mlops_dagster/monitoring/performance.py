"""Live performance decided in one place: when the champion's results in service call for a rollback.

Pure functions on plain values (no Dagster, no instance), so the rule is unit-tested on its own; the
performance sensor (`sensors/performance.py`) reads the `<p>/live_performance` records and acts on
the decision.

The rule (`monitoring.performance`): in each partition, the champion's live metric is taken from the
version's own row of the per-version table, or from the partition's metric when the champion was
the only version that served there. A partition where the champion did not serve, or scored on fewer
than `min_samples` labelled predictions, is no evidence: it neither breaches nor breaks a run of
breaches. A partition with evidence breaches when the metric is below `min`, or more than `max_drop`
below the champion's own holdout score. The sensor acts when the latest `window` partitions with
evidence (in partition order) all breach.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mlops_dagster.keys import Meta


@dataclass(frozen=True)
class PerformanceSettings:
    """The `monitoring.performance` fields the decision uses (the cooldown is the sensor's)."""

    metric: str
    min: float | None = None
    max_drop: float | None = None
    window: int = 3
    min_samples: int = 50

    @classmethod
    def from_spec(cls, performance: Any) -> PerformanceSettings:
        """The settings of a `PerformanceMonitoringSpec`."""
        return cls(
            metric=performance.metric,
            min=performance.min,
            max_drop=performance.max_drop,
            window=performance.window,
            min_samples=performance.min_samples,
        )


@dataclass(frozen=True)
class PartitionScore:
    """The champion's live result in one partition, as read from its `live_performance` record.

    `metric` is None when the record holds no score for the champion (`note` says why).
    """

    partition: str
    metric: float | None
    samples: int
    note: str = ""


@dataclass(frozen=True)
class Verdict:
    """One partition judged: evidence or not, breach or not, and why, in words."""

    partition: str
    metric: float | None
    samples: int
    evidence: bool
    breached: bool
    why: str


@dataclass(frozen=True)
class PerformanceDecision:
    """The outcome: `act` when the latest `window` partitions with evidence all breach.

    Attributes:
        act: Roll back.
        window: The latest partitions with evidence, oldest first (fewer than `window` when the
            history holds fewer).
        verdicts: Every partition judged, in partition order (no-evidence ones included).
        floor: The effective threshold, the larger of `min` and holdout - `max_drop` (None: none applies).
        reason: The decision in one readable paragraph: the values, the thresholds, the partitions.
    """

    act: bool
    window: list[Verdict]
    verdicts: list[Verdict]
    floor: float | None
    reason: str

    @property
    def breached(self) -> list[str]:
        """The partitions of the window that breached, oldest first."""
        return [v.partition for v in self.window if v.breached]


def thresholds(settings: PerformanceSettings, holdout: float | None) -> tuple[float | None, str]:
    """The effective floor of the live metric and how it was set, in words."""
    parts: list[str] = []
    floors: list[float] = []
    if settings.min is not None:
        floors.append(settings.min)
        parts.append(f"min {settings.min:g}")
    if settings.max_drop is not None:
        if holdout is None:
            parts.append(f"max_drop {settings.max_drop:g} not applied (no holdout {settings.metric} score)")
        else:
            floors.append(holdout - settings.max_drop)
            parts.append(
                f"holdout {holdout:.4f} - max_drop {settings.max_drop:g} = {holdout - settings.max_drop:.4f}"
            )
    return (max(floors) if floors else None), "; ".join(parts)


def judge(score: PartitionScore, settings: PerformanceSettings, floor: float | None) -> Verdict:
    """One partition: no evidence (no score, too few samples), a breach, or a pass."""
    metric, samples = score.metric, score.samples
    if metric is None or not math.isfinite(metric):
        why = score.note or "no live score for the champion"
        return Verdict(score.partition, None, samples, False, False, why)
    if samples < settings.min_samples:
        why = f"{samples} labelled predictions, fewer than min_samples {settings.min_samples}: no evidence"
        return Verdict(score.partition, metric, samples, False, False, why)
    breached = floor is not None and metric < floor
    why = f"{settings.metric} {metric:.4f} on {samples} samples"
    return Verdict(score.partition, metric, samples, True, breached, why + (" (breach)" if breached else ""))


def decide_performance(
    scores: Sequence[PartitionScore], settings: PerformanceSettings, holdout: float | None
) -> PerformanceDecision:
    """Whether the champion's live results call for a rollback.

    Args:
        scores: The champion's live results per partition, in any order (sorted by partition here).
        settings: The pipeline's `monitoring.performance` settings.
        holdout: The champion's own holdout score of `settings.metric`, for `max_drop` (None: unknown).
    """
    floor, rule = thresholds(settings, holdout)
    verdicts = [judge(s, settings, floor) for s in sorted(scores, key=lambda s: s.partition)]
    evidence = [v for v in verdicts if v.evidence]
    window = evidence[-settings.window :]
    act = len(window) == settings.window and all(v.breached for v in window)
    values = ", ".join(f"{v.partition}: {v.metric:.4f} (n={v.samples})" for v in window)
    skipped = len(verdicts) - len(evidence)
    tail = f"; {skipped} partition(s) without evidence skipped" if skipped else ""
    if act:
        reason = (
            f"live {settings.metric} breached in the last {settings.window} partition(s) with evidence: "
            f"{values}; thresholds: {rule}{tail}"
        )
    elif len(window) < settings.window:
        reason = (
            f"{len(window)} of {settings.window} partition(s) with evidence (at least "
            f"{settings.min_samples} labelled predictions each) so far{': ' + values if values else ''}{tail}"
        )
    else:
        passed = [v.partition for v in window if not v.breached]
        reason = f"live {settings.metric} within thresholds ({rule}) in {', '.join(passed)}: {values}{tail}"
    return PerformanceDecision(act, window, verdicts, floor, reason)


def champion_score(partition: str, metadata: Mapping[str, Any], version: str, metric: str) -> PartitionScore:
    """The champion `version`'s live result in one `live_performance` record's metadata.

    Its own row of `Meta.LIVE_BY_VERSION` (version, metric, samples), else the partition's
    `Meta.LIVE_METRIC` / `Meta.SAMPLES` when `Meta.MODEL_VERSIONS` names only that version. Never
    raises: a malformed or foreign record is a score of None with a note (no evidence), so a bad
    record cannot fail the sensor's tick.
    """
    values = {k: getattr(v, "value", v) for k, v in metadata.items()}
    scored = values.get(Meta.METRIC_NAME)
    if scored is not None and str(scored) != metric:
        return PartitionScore(partition, None, 0, f"scored {scored}, not {metric} (the spec changed since)")
    for row in _rows(values.get(Meta.LIVE_BY_VERSION)):
        if str(row.get("version")) == version:
            return _score(partition, row.get("metric"), row.get("samples"))
    served = _versions(values.get(Meta.MODEL_VERSIONS))
    if served == [version]:
        return _score(partition, values.get(Meta.LIVE_METRIC), values.get(Meta.SAMPLES))
    return PartitionScore(
        partition, None, 0, f"champion {version} did not serve here (served: {served or 'none'})"
    )


def _score(partition: str, metric: Any, samples: Any) -> PartitionScore:
    if metric is None:  # the asset could not score it (one class only, ...): its note says why
        return PartitionScore(partition, None, 0, "no live score recorded")
    try:
        value = float(metric)
        count = int(samples)
    except (TypeError, ValueError):
        return PartitionScore(partition, None, 0, f"unreadable score {metric!r} on {samples!r} samples")
    return PartitionScore(partition, value, count)


def _rows(table: Any) -> list[dict[str, Any]]:
    """The rows of a table metadata value (TableRecords) or of a JSON list of objects."""
    rows = getattr(table, "records", table)
    if not isinstance(rows, list):
        return []
    out = []
    for row in rows:
        data = getattr(row, "data", row)
        if isinstance(data, Mapping):
            out.append(dict(data))
    return out


def _versions(value: Any) -> list[str]:
    """`Meta.MODEL_VERSIONS`: a JSON list, or a comma-separated string."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        value = parsed if isinstance(parsed, list) else [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        return [str(v) for v in value]
    return []
