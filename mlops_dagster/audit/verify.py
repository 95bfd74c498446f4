"""Checking an audit log: its hash chain, and the champion decisions of the Dagster instance against it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlops_dagster.audit.log import GENESIS, iter_lines, parse_record, record_hash

if TYPE_CHECKING:
    import dagster as dg
    from upath import UPath

# A decision of the instance and the log actions that record it (a manual promote is a `promote`
# materialization of `<p>/champion` run by `registry promote`).
LOGGED_AS = {"promote": ("promote", "manual_promote"), "rollback": ("rollback",), "keep": ("keep",)}
DECIDED = {action: decision for decision, actions in LOGGED_AS.items() for action in actions}
_PAGE = 1000


@dataclass
class ChainCheck:
    """What a pass over a log found: the first problem (if any), the records and their decision keys."""

    lines: int = 0
    records: int = 0
    problems: list[str] = field(default_factory=list)
    decisions: set[tuple[str, str | None, str | None]] = field(default_factory=set)
    champion: list[tuple[int, str, str | None, str | None]] = field(default_factory=list)  # seq, action, ...
    voided: set[int] = field(default_factory=set)  # seqs named by a `void` record


def check_chain(path: UPath) -> ChainCheck:
    """Stream the log at `path`; report the first line that breaks the chain (an absent log is empty).

    Each line must be a JSON record whose `sha256` matches its content (else it was edited), whose
    `prev_sha256` is the `sha256` of the line before and whose `seq` follows it (else a line was
    deleted, inserted or moved), and end with a newline (else it is torn). Only the first problem is
    reported: every line after it would fail too. The records after it still count as logged decisions.
    """
    check = ChainCheck()
    prev, seq = GENESIS, 0
    lines = iter_lines(path)
    raw = next(lines, None)
    while raw is not None:
        check.lines += 1
        n = check.lines
        following = next(lines, None)
        last = following is None
        record = parse_record(raw.rstrip(b"\n"))
        if record is not None:
            check.records += 1
            action, version, run_id = str(record.get("action")), record.get("version"), record.get("run_id")
            check.decisions.add((action, version, run_id))
            if action in DECIDED:
                check.champion.append((record["seq"], action, version, run_id))
            elif action == "void" and isinstance(record.get("voids_seq"), int):
                check.voided.add(record["voids_seq"])
        if not check.problems:
            problem = _line_problem(raw, record, n, last, prev, seq)
            if problem:
                check.problems.append(f"{path}: line {n}: {problem}")
            elif record is not None:
                prev, seq = record["sha256"], record["seq"]
        raw = following
    return check


def _line_problem(
    raw: bytes, record: dict[str, Any] | None, n: int, last: bool, prev: str, seq: int
) -> str | None:
    if not raw.endswith(b"\n"):
        return (
            f"torn last line ({len(raw)} bytes, no trailing newline): a write was cut off (a killed "
            "process?); the next append removes it and records a `repair`"
        )
    if record is None:
        what = "not a JSON audit record (seq, sha256, prev_sha256)"
        if last:
            return f"{what}: a torn or truncated last line; the next append removes it and records a `repair`"
        return what
    s = record["seq"]
    if record_hash(record) != record["sha256"]:
        return f"record seq {s} was edited: its sha256 does not match its content"
    if record["prev_sha256"] != prev:
        return (
            f"record seq {s}: chain broken, prev_sha256 does not match the sha256 of "
            f"{'line ' + str(n - 1) if n > 1 else 'the start of the log'} (a record before it was deleted, "
            "moved or edited)"
        )
    if s != seq + 1:
        return f"record seq {s} where seq {seq + 1} was expected (a record was deleted or moved)"
    return None


def instance_decisions(instance: dg.DagsterInstance, pipeline: str) -> Iterator[tuple[str, str, str, float]]:
    """Every champion decision of `pipeline` in the instance: (decision, version, run_id, timestamp).

    Promotions and rollbacks are materializations of `<p>/champion`; decisions to keep the champion
    are observations of it (with the run id of the champion run), so all three are read, page by page.
    """
    from mlops_dagster.keys import Meta, champion_key

    key = champion_key(pipeline)
    for observations in (False, True):
        fetch = instance.fetch_observations if observations else instance.fetch_materializations
        cursor = None
        while True:
            result = fetch(key, limit=_PAGE, cursor=cursor, ascending=True)
            for rec in result.records:
                event = rec.asset_observation if observations else rec.asset_materialization
                if event is None:
                    continue
                md = dict(event.metadata)
                version = _value(md, Meta.VERSION)
                decision = _value(md, Meta.DECISION)
                if version and decision in LOGGED_AS:
                    entry = rec.event_log_entry
                    yield str(decision), str(version), entry.run_id, entry.timestamp
            if not result.has_more:
                break
            cursor = result.cursor


def _value(metadata: dict[str, Any], key: str) -> Any:
    entry = metadata.get(key)
    return getattr(entry, "value", entry)


def missing_decisions(
    instance: dg.DagsterInstance, pipeline: str, path: UPath, logged: set[tuple[str, str | None, str | None]]
) -> list[str]:
    """The instance's champion decisions with no record of the same action, version and run in the log."""
    problems = []
    for decision, version, run_id, timestamp in instance_decisions(instance, pipeline):
        if any((action, version, run_id) in logged for action in LOGGED_AS[decision]):
            continue
        when = datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="seconds")
        problems.append(
            f"{path}: decision missing from the log: {decision} of version {version} (run {run_id or '-'}, "
            f"{when}) is in the Dagster instance but has no audit record"
        )
    return problems


def unrecorded_decisions(
    instance: dg.DagsterInstance, pipeline: str, path: UPath, check: ChainCheck
) -> list[str]:
    """Champion decisions of the log that the instance lacks although their run is over (or deleted).

    A decision is appended to the log just before its event is stored, so a run that stops in between
    (killed, or failing at that point) leaves a record of a decision that never took effect. While its
    run is STARTED it may be in progress, so it is not reported; the next decision voids it
    (`void_records`). One whose run ended is reported until then. A run the instance no longer has
    (deleted, with its events) proves nothing either way and is skipped.
    """
    held = {(d, v, r) for d, v, r, _ in instance_decisions(instance, pipeline)}
    problems = []
    for seq, action, version, run_id in check.champion:
        if seq in check.voided or (DECIDED[action], version, run_id) in held or not run_id:
            continue
        run = instance.get_run_by_id(run_id)
        if run is None or not run.is_finished:
            continue
        problems.append(
            f"{path}: record seq {seq}: {action} of version {version} never took effect: the Dagster "
            f"instance holds no such decision and run {run_id} ended {run.status.value}"
        )
    return problems


def void_records(instance: dg.DagsterInstance, pipeline: str, path: UPath) -> list[dict[str, Any]]:
    """`void` records (from `new_record`) for the decisions at the end of the log that never took effect.

    Call it only from a champion decision, while it holds the pool's slot and the decision lock: every
    earlier decision has then either been stored in the instance or never will be (its run stopped
    after appending its record), so the log is walked back from its end to the first decision the
    instance holds, or whose run it no longer has, and each one before that (already voided ones
    aside) is voided.
    """
    from mlops_dagster.audit.log import new_record

    records = [r for r in (parse_record(raw.rstrip(b"\n")) for raw in iter_lines(path)) if r is not None]
    voided = {r.get("voids_seq") for r in records if r.get("action") == "void"}
    out = []
    for record in reversed(records):
        action, run_id = record.get("action"), record.get("run_id")
        if action not in DECIDED or not run_id or record["seq"] in voided:
            continue
        if not _never_took_effect(instance, pipeline, record):
            break
        out.append(
            new_record(
                pipeline,
                "void",
                version=record.get("version"),
                previous=record.get("previous"),
                reasons=[
                    f"record seq {record['seq']} ({action} of {record.get('version')}, run {run_id}) never "
                    "took effect: the Dagster instance holds no such decision of that run (it stopped "
                    "between its audit record and its event, e.g. killed)"
                ],
                extra={
                    "voids_seq": record["seq"],
                    "voids_sha256": record.get("sha256"),
                    "voids_run_id": run_id,
                },
            )
        )
    return out[::-1]


def _never_took_effect(instance: dg.DagsterInstance, pipeline: str, record: dict[str, Any]) -> bool:
    """Whether the run of `record` exists and holds no event on `<p>/champion` of the decision it logs."""
    from dagster import DagsterEventType

    from mlops_dagster.keys import Meta, champion_key

    run_id = str(record["run_id"])
    if instance.get_run_by_id(run_id) is None:
        return False
    key, want = champion_key(pipeline), DECIDED[str(record["action"])]
    for of_type in (DagsterEventType.ASSET_MATERIALIZATION, DagsterEventType.ASSET_OBSERVATION):
        for entry in instance.all_logs(run_id, of_type=of_type):
            event = entry.asset_materialization or entry.asset_observation
            if event is None or event.asset_key != key:
                continue
            md = dict(event.metadata)
            if _value(md, Meta.VERSION) == record.get("version") and _value(md, Meta.DECISION) == want:
                return False
    return True


def instance_problems(
    instance: dg.DagsterInstance, pipeline: str, path: UPath, check: ChainCheck
) -> list[str]:
    """Where the log and the instance disagree: decisions missing from the log, and logged decisions that
    never took effect (`missing_decisions`, `unrecorded_decisions`)."""
    return missing_decisions(instance, pipeline, path, check.decisions) + unrecorded_decisions(
        instance, pipeline, path, check
    )
