"""The registry of record is the Dagster instance: champion and candidate history as asset events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from mlops_dagster.keys import Meta, candidate_key, champion_key


@dataclass(frozen=True)
class VersionRecord:
    """One registry event: a candidate trained, or a champion decision (promote, rollback, keep)."""

    pipeline: str
    version: str
    sha256: str
    timestamp: float
    run_id: str
    decision: str | None
    reasons: list[str]
    metrics: dict[str, float]
    previous: str | None
    trigger: str | None = None  # `mlops/trigger` in the metadata (an import has no run to carry the tag)

    @property
    def when(self) -> str:
        return datetime.fromtimestamp(self.timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _value(metadata: dict[str, Any], key: str) -> Any:
    entry = metadata.get(key)
    return getattr(entry, "value", entry)


def _record(pipeline: str, entry: dg.EventLogEntry, event: Any) -> VersionRecord | None:
    md = dict(event.metadata)
    version = _value(md, Meta.VERSION)
    if not version:
        return None
    metrics = _value(md, Meta.METRICS) or {}
    reasons = _value(md, Meta.REASONS) or []
    return VersionRecord(
        pipeline=pipeline,
        version=str(version),
        sha256=str(_value(md, Meta.SHA256) or ""),
        timestamp=entry.timestamp,
        run_id=entry.run_id,
        decision=_value(md, Meta.DECISION),
        reasons=list(reasons),
        metrics=dict(metrics) if isinstance(metrics, dict) else {},
        previous=_value(md, Meta.PREVIOUS),
        trigger=_value(md, Meta.TRIGGER),
    )


def _fetch(instance: dg.DagsterInstance, key: dg.AssetKey, pipeline: str, limit: int) -> list[VersionRecord]:
    result = instance.fetch_materializations(key, limit=limit, ascending=False)
    out = []
    for rec in result.records:
        event = rec.asset_materialization
        if event is not None:
            r = _record(pipeline, rec.event_log_entry, event)
            if r:
                out.append(r)
    return out


@dataclass(frozen=True)
class TrainedVersion:
    """One content-addressed version and every training that produced it.

    Retraining on unchanged data gives the same bytes, hence the same version: the registry shows it once.

    Attributes:
        latest: The newest candidate record of the version (its metrics, run and time).
        trainings: How many candidate materializations produced it.
        first_trained: When it was first trained (epoch seconds).
    """

    latest: VersionRecord
    trainings: int
    first_trained: float

    @property
    def version(self) -> str:
        return self.latest.version


def trained_versions(candidates: list[VersionRecord]) -> list[TrainedVersion]:
    """Group candidate records by version; newest latest training first (input in any order)."""
    groups: dict[str, list[VersionRecord]] = {}
    for r in candidates:
        groups.setdefault(r.version, []).append(r)
    out = [
        TrainedVersion(
            latest=max(rs, key=lambda r: r.timestamp),
            trainings=len(rs),
            first_trained=min(r.timestamp for r in rs),
        )
        for rs in groups.values()
    ]
    return sorted(out, key=lambda v: v.latest.timestamp, reverse=True)


def champion_history(instance: dg.DagsterInstance, pipeline: str, limit: int = 100) -> list[VersionRecord]:
    """Champion changes (promote / rollback), newest first."""
    return _fetch(instance, champion_key(pipeline), pipeline, limit)


def candidate_history(instance: dg.DagsterInstance, pipeline: str, limit: int = 100) -> list[VersionRecord]:
    """Trained versions, newest first."""
    return _fetch(instance, candidate_key(pipeline), pipeline, limit)


def decision_history(instance: dg.DagsterInstance, pipeline: str, limit: int = 100) -> list[VersionRecord]:
    """Decisions to keep the champion (recorded as observations of the champion asset), newest first."""
    result = instance.fetch_observations(champion_key(pipeline), limit=limit, ascending=False)
    out = []
    for rec in result.records:
        event = rec.asset_observation
        if event is not None:
            r = _record(pipeline, rec.event_log_entry, event)
            if r:
                out.append(r)
    return out


PERFORMANCE_TRIGGER = "performance"  # `mlops/trigger` of an automatic rollback on live results


def performance_rollbacks(history: list[VersionRecord]) -> dict[str, VersionRecord]:
    """The versions rolled back FROM for live performance, each with its (newest) rollback record.

    Such a version failed in service: no rollback returns to it and no gate promotes it again (a
    retrain on the same data gives the same content-addressed version); only a manual promote does.
    """
    found: dict[str, VersionRecord] = {}
    for record in history:  # newest first: the newest rollback from a version is kept
        if record.decision == "rollback" and record.trigger == PERFORMANCE_TRIGGER and record.previous:
            found.setdefault(record.previous, record)
    return found


def rollback_target(history: list[VersionRecord]) -> VersionRecord | None:
    """The champion a rollback returns to, from the champion history (newest first); None if none.

    The history is replayed as a stack: a promotion pushes its version, a rollback pops back to the
    version it returned to. So after promoting A, B, C, rollbacks go to B, then A, then nowhere; a
    version that was rolled back from is never brought back by another rollback (that would bypass
    the gates). Nor is a version that was rolled back from for live performance
    (`performance_rollbacks`), wherever it is in the stack: the rollback goes below it.
    """
    stack: list[VersionRecord] = []
    for record in reversed(history):
        if record.decision == "rollback" and stack:
            stack.pop()
            versions = [r.version for r in stack]
            if record.version in versions:  # a rollback that skipped versions leaves them too
                del stack[versions.index(record.version) + 1 :]
        if not stack or stack[-1].version != record.version:
            stack.append(record)
    failed = performance_rollbacks(history)
    current = stack[-1].version if stack else None
    below = [r for r in reversed(stack[:-1]) if r.version not in failed and r.version != current]
    return below[0] if below else None


def current_champion(instance: dg.DagsterInstance, pipeline: str) -> VersionRecord | None:
    history = champion_history(instance, pipeline, limit=1)
    return history[0] if history else None


def latest_candidate(instance: dg.DagsterInstance, pipeline: str) -> VersionRecord | None:
    history = candidate_history(instance, pipeline, limit=1)
    return history[0] if history else None


def candidate_metadata(instance: dg.DagsterInstance, pipeline: str, version: str) -> dict[str, Any] | None:
    """The metadata (plain values) of the candidate materialization that produced `version`."""
    for rec in instance.fetch_materializations(candidate_key(pipeline), limit=1000).records:
        mat = rec.asset_materialization
        md = {k: getattr(v, "value", v) for k, v in (mat.metadata.items() if mat else [])}
        if md.get(Meta.VERSION) == version:
            return md
    return None


def champion_dataset_schema(
    instance: dg.DagsterInstance, pipeline: str
) -> tuple[str | None, dict[str, str] | None]:
    """(champion version, the raw dataset schema it was trained on), from its candidate record."""
    champion = current_champion(instance, pipeline)
    if champion is None:
        return None, None
    schema = (candidate_metadata(instance, pipeline, champion.version) or {}).get(Meta.DATASET_SCHEMA)
    return champion.version, dict(schema) if isinstance(schema, dict) else None


def find_version(instance: dg.DagsterInstance, pipeline: str, version: str) -> VersionRecord | None:
    """The candidate record for a version (a unique prefix of at least 8 digits is accepted)."""
    matches = {
        r.version: r
        for r in candidate_history(instance, pipeline, limit=1000)
        if r.version.startswith(version) and len(version) >= 8
    }
    return next(iter(matches.values())) if len(matches) == 1 else None
