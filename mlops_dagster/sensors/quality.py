"""`<p>__quality_sensor`: alerts once per failing partition, and retrains once it passes again.

The sensor reads check evaluations newer than its cursor (one indexed query per check key, newest
first, stopping at the cursor), so a tick costs the same however long the history is. Its cursor keeps
the partitions that are failing right now: an alert goes out when a partition starts failing (not on
every tick), and when a failing partition passes again, the retrain its bad batch held back is
requested with a `run_key`, so it fires once.

Alerts share a time budget per tick, `ALERT_BUDGET_SECONDS` from the tick's start (queries included),
well under Dagster's 60 s tick timeout. Each send gets the budget's deadline, so the notifier's retries
stop in time; once less than `MIN_SEND_SECONDS` of it is left, the remaining alerts are not sent but
kept pending in the cursor, and sent first (oldest first) on the next ticks, also on ticks without new
evaluations. The cursor always moves past every evaluation it read: a backfill that fails many
partitions while the receiver is down or slow cannot make a tick time out and start over forever.
An alert whose send was attempted is done even if it was not delivered (the notifier logs a warning
with the whole alert); only alerts never attempted for lack of time wait. A pending alert whose
partition passes before it is sent is dropped (its recovery retrain is requested as usual).
"""

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from mlops_dagster.alerts import Alert, Notifier
from mlops_dagster.environments import sensor_status
from mlops_dagster.io.quarantine import UNPARTITIONED
from mlops_dagster.keys import FEATURES_GROUP, Meta, Tags, dataset_key, feedback_key, quality_sensor_name
from mlops_dagster.spec.models import PipelineSpec

HISTORY_PAGE = 200
ALERT_BUDGET_SECONDS = 30.0  # per tick, from its start; Dagster gives up on a tick after 60 s
# An alert is sent only with at least this much of the budget left: more than the notifier's
# `delivery.MIN_ATTEMPT_SECONDS`, so an alert counted as sent did get at least one HTTP attempt.
MIN_SEND_SECONDS = 1.0
_DESCRIPTION_CHARS = 500  # per failed check, in a pending alert kept in the cursor
# Pending alerts beyond this many keep their check names but not the checks' descriptions, so a large
# backfill failing while the receiver is down cannot grow the cursor without bound.
MAX_DESCRIBED_PENDING = 100
_clock = time.monotonic  # the notifier's deadline clock; tests replace it


@dataclass
class QualityCursor:
    """`last_id`: the newest evaluation read. `failing`: "asset|partition" -> {"run_id", "checks"} for
    each partition failing now; while its alert waits for a tick with time left, also "pending":
    {"since": the first failed evaluation's id, "descriptions": one per check}. A cursor without
    "pending" fields (written before they existed) has nothing pending."""

    last_id: int = 0
    failing: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None) -> "QualityCursor":
        if not raw:
            return cls()
        data = json.loads(raw)
        return cls(last_id=int(data.get("last_id", 0)), failing=dict(data.get("failing", {})))

    def dump(self) -> str:
        return json.dumps({"last_id": self.last_id, "failing": self.failing}, sort_keys=True)

    def pending(self) -> list[str]:
        """The failing slots whose alert is not sent yet, oldest first."""
        waiting = [slot for slot, entry in self.failing.items() if "pending" in entry]
        return sorted(waiting, key=lambda slot: (int(self.failing[slot]["pending"].get("since", 0)), slot))


@dataclass(frozen=True)
class Evaluation:
    """One check evaluation. `kind` is `data`, or `config` when the check could not run (the spec's
    fault, not the batch's); `warning` is a failed check of severity WARN (it refuses nothing)."""

    id: int
    run_id: str
    check: str
    asset: str
    partition: str
    passed: bool
    description: str | None
    kind: str = "data"
    warning: bool = False


def _kind(data: dg.AssetCheckEvaluation) -> str:
    entry = (data.metadata or {}).get(Meta.FAILURE_KIND)
    return str(getattr(entry, "value", entry) or "data")


def new_evaluations(
    instance: dg.DagsterInstance, check_keys: Sequence[dg.AssetCheckKey], after_id: int
) -> list[Evaluation]:
    """Completed check evaluations with a storage id above `after_id`, oldest first."""
    storage = instance.event_log_storage
    found: list[Evaluation] = []
    for key in check_keys:
        cursor = None
        while True:
            page = storage.get_asset_check_execution_history(key, limit=HISTORY_PAGE, cursor=cursor)
            fresh = [r for r in page if r.id > after_id]
            for record in fresh:
                data = (
                    record.event.dagster_event.event_specific_data
                    if record.event and record.event.dagster_event
                    else None
                )
                if isinstance(data, dg.AssetCheckEvaluation):
                    found.append(
                        Evaluation(
                            record.id,
                            record.run_id,
                            key.name,
                            key.asset_key.to_user_string(),
                            data.partition or record.partition or UNPARTITIONED,
                            data.passed,
                            data.description,
                            _kind(data),
                            data.severity == dg.AssetCheckSeverity.WARN,
                        )
                    )
            if len(page) < HISTORY_PAGE or len(fresh) < len(page):
                break
            cursor = page[-1].id
    return sorted(found, key=lambda e: e.id)


def _latest_runs(evaluations: list[Evaluation]) -> dict[tuple[str, str], list[Evaluation]]:
    """The evaluations of the newest run per (asset, partition)."""
    latest: dict[tuple[str, str], str] = {}
    for e in evaluations:
        latest[(e.asset, e.partition)] = e.run_id
    grouped: dict[tuple[str, str], list[Evaluation]] = {}
    for e in evaluations:
        if latest[(e.asset, e.partition)] == e.run_id:
            grouped.setdefault((e.asset, e.partition), []).append(e)
    return grouped


def holds_batches(spec: PipelineSpec, asset: str) -> bool:
    """Whether an asset's failed checks quarantine a batch: the dataset, feedback and feature groups do."""
    batches = {dataset_key(spec.name).to_user_string(), feedback_key(spec.name).to_user_string()}
    return asset in batches or asset.startswith(f"{FEATURES_GROUP}/")


def failure_alert(spec: PipelineSpec, asset: str, partition: str, failed: list[Evaluation]) -> Alert:
    """The alert of one failing (asset, partition), saying what failed and what became of the batch."""
    names = ", ".join(e.check for e in failed)
    where = asset if partition == UNPARTITIONED else f"{asset} {partition}"
    config = [e for e in failed if e.kind == "config"]
    data = [e for e in failed if e.kind != "config"]
    lines = [
        f"- {e.check}{' (configuration error)' if e.kind == 'config' else ''}: {e.description or 'failed'}"
        for e in failed
    ]
    if not holds_batches(spec, asset):
        title = f"{where}: {len(failed)} blocking check(s) failed"
        lines.append(f"These checks are on {asset}, not on a data batch: no data is quarantined.")
    elif data:
        title = f"{where}: {len(failed)} blocking quality check(s) failed"
        if config:
            title += f" ({len(config)} could not run: configuration error)"
        lines.append("The batch is quarantined; nothing trains on it.")
    else:
        title = f"{where}: {len(config)} quality check(s) could not run (configuration error)"
        lines.append(
            "The quality spec, not the data, is at fault: the batch is not quarantined, and nothing trains "
            "on it until the spec is fixed and the partition is materialized again."
        )
    return Alert(
        title=title,
        text="\n".join(lines),
        severity="error" if data else "warning",
        pipeline=spec.name,
        asset_key=asset,
        partition=partition,
        details={
            "failed_checks": [e.check for e in failed],
            "configuration_errors": [e.check for e in config],
            "run_id": failed[0].run_id,
        },
        dedupe_key=f"{spec.name}:{asset}:{partition}:quality:{names}",
    )


def _failing_entry(failed: list[Evaluation], previous: dict[str, Any] | None) -> dict[str, Any]:
    """The cursor's record of a failing partition; a new one (and one still unsent) has its alert pending."""
    entry: dict[str, Any] = {"run_id": failed[0].run_id, "checks": [e.check for e in failed]}
    if any(e.kind != "data" for e in failed):
        entry["kinds"] = [e.kind for e in failed]
    if previous is None or "pending" in previous:  # a new incident, or one not yet alerted
        since = previous["pending"].get("since", failed[0].id) if previous else failed[0].id
        descriptions = [_cut(e.description) for e in failed]
        entry["pending"] = {"since": since, "descriptions": descriptions}
    return entry


def _pending_alert(spec: PipelineSpec, slot: str, entry: dict[str, Any]) -> Alert:
    """The alert of a failing partition, rebuilt from its cursor entry."""
    asset, _, partition = slot.partition("|")  # asset keys cannot hold "|"; partition keys can
    descriptions: list[str | None] = list(entry["pending"].get("descriptions", []))
    checks: list[str] = list(entry.get("checks", [])) or ["unknown check"]
    descriptions += [None] * (len(checks) - len(descriptions))
    kinds: list[str] = list(entry.get("kinds", []))
    kinds += ["data"] * (len(checks) - len(kinds))
    failed = [
        Evaluation(0, entry.get("run_id", ""), check, asset, partition, False, description, kind)
        for check, description, kind in zip(checks, descriptions, kinds, strict=False)
    ]
    return failure_alert(spec, asset, partition, failed)


def _cut(text: str | None) -> str | None:
    if text is None or len(text) <= _DESCRIPTION_CHARS:
        return text
    return text[: _DESCRIPTION_CHARS - 1] + "…"


def build_quality_sensor(
    spec: PipelineSpec, check_keys: Sequence[dg.AssetCheckKey], retrain_job: Any
) -> dg.SensorDefinition:
    status = (
        dg.DefaultSensorStatus.RUNNING if spec.monitoring.quality_sensor else dg.DefaultSensorStatus.STOPPED
    )

    @dg.sensor(
        name=quality_sensor_name(spec.name),
        job=retrain_job,
        minimum_interval_seconds=30,
        default_status=sensor_status(spec, status),
        description=(
            f"Alerts once per `{spec.name}` partition whose blocking quality checks fail, and "
            "requests a retrain once a failed partition passes again."
        ),
    )
    def _quality_sensor(  # the parameter name is the resource key (NOTIFIER_KEY)
        context: dg.SensorEvaluationContext, mlops_notifier: Notifier
    ) -> dg.SensorResult | dg.SkipReason:
        deadline = _clock() + ALERT_BUDGET_SECONDS
        notifier = mlops_notifier
        cursor = QualityCursor.parse(context.cursor)
        evaluations = new_evaluations(context.instance, check_keys, cursor.last_id)
        if not evaluations and not cursor.pending():
            return dg.SkipReason("no new quality check evaluations")
        requests = []
        for (asset, partition), evals in _latest_runs(evaluations).items():
            failed = [e for e in evals if not e.passed and not e.warning]  # a warning refuses nothing
            slot = f"{asset}|{partition}"
            if failed:  # alert once per failing partition: only a new slot gets a pending alert
                cursor.failing[slot] = _failing_entry(failed, cursor.failing.get(slot))
            elif slot in cursor.failing:  # passes again: its alert, if still pending, is dropped
                cursor.failing.pop(slot)
                if asset == feedback_key(spec.name).to_user_string():
                    continue  # late labels train nothing: no retrain was held back
                requests.append(
                    dg.RunRequest(
                        run_key=f"quality-recovered:{asset}:{partition}:{evals[0].run_id}",
                        tags={
                            Tags.TRIGGER: "quality_recovered",
                            Tags.PIPELINE: spec.name,
                            Tags.RECOVERED_PARTITION: partition,
                        },
                    )
                )
        if evaluations:
            cursor.last_id = evaluations[-1].id
        sent = undelivered = deferred = 0
        pending = cursor.pending()
        for slot in pending[MAX_DESCRIBED_PENDING:]:
            cursor.failing[slot]["pending"].pop("descriptions", None)
        for number, slot in enumerate(pending):
            if _clock() > deadline - MIN_SEND_SECONDS:  # the rest waits for the next tick
                deferred = len(pending) - number
                break
            entry = cursor.failing[slot]
            alert = _pending_alert(spec, slot, entry)
            del entry["pending"]  # attempted: done, delivered or not (the notifier logs a failure)
            sent += 1
            if not notifier.send(alert, log=context.log, deadline=deadline):
                undelivered += 1
        spent = f" ({ALERT_BUDGET_SECONDS:g}s alert budget spent)" if deferred else ""
        context.log.info(
            f"{len(evaluations)} evaluation(s); {sent} alert(s) sent"
            + (f" ({undelivered} not delivered)" if undelivered else "")
            + f", {deferred} deferred to the next tick{spent}; {len(requests)} retrain(s); "
            f"failing now: {sorted(cursor.failing) or 'none'}"
        )
        return dg.SensorResult(run_requests=requests, cursor=cursor.dump())

    return _quality_sensor


def dataset_check_keys(spec: PipelineSpec, check_names: Sequence[str]) -> list[dg.AssetCheckKey]:
    return [dg.AssetCheckKey(dataset_key(spec.name), name) for name in check_names]
