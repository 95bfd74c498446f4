"""The tamper-evident audit log: every governance decision of a pipeline, hash-chained, one per line.

`<storage root>/audit/<pipeline>.jsonl` holds one canonical JSON object per line with `seq`, `time`
(UTC), `pipeline`, `action` (one of ACTIONS), `version`, `previous`, `reasons`, `trigger`, `run_id`,
`by`, `environment`, any extra fields, `prev_sha256` (the previous record's `sha256`, 64 zeros for
the first) and `sha256` (of the record's canonical JSON without `sha256`). Format, appends, locking
and torn-line repair: `log.py`; checking: `verify.py`.

What it proves: an edited, deleted, moved or cut line breaks the chain at that line, and
`verify_log(..., instance=...)` anchors the log to the Dagster event log (the registry of record):
a champion decision the instance holds and the log lacks is reported. Someone able to rewrite the
whole file and recompute every hash can forge a chain; the cross-check against the instance is what
catches the decisions they would drop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from mlops_dagster.audit.log import (
    ACTIONS,
    GENESIS,
    AuditError,
    append_records,
    audit_path,
    iter_lines,
    new_record,
    parse_record,
)
from mlops_dagster.audit.verify import DECIDED, check_chain, instance_problems, void_records

if TYPE_CHECKING:
    import dagster as dg

__all__ = [
    "ACTIONS",
    "GENESIS",
    "AuditError",
    "audit_path",
    "logged_pipelines",
    "read_log",
    "record_decision",
    "verify_log",
]

logger = logging.getLogger(__name__)


def record_decision(
    pipeline: str,
    action: str,
    *,
    version: str | None,
    previous: str | None = None,
    reasons: Sequence[str] = (),
    trigger: str | None = None,
    run_id: str | None = None,
    by: str | None = None,
    environment: str | None = None,
    extra: Mapping[str, Any] | None = None,
    log: Any = None,
    instance: dg.DagsterInstance | None = None,
) -> dict[str, Any] | None:
    """Append one decision to `audit_path(pipeline)` (the active environment's storage root).

    Never raises: the decision itself is recorded in the Dagster instance; a failed append is logged
    as a warning (to `log`, e.g. `context.log`, if given, else this module's logger) and `verify`
    later reports the decision as missing from the log.

    A champion decision is appended just before its event is stored in the instance. Given the
    `instance` (only a champion decision holding the pool's slot and the decision lock may pass it),
    earlier decisions at the end of the log that the instance lacks, left by a run that stopped in
    between, are first voided by a `void` record each (`verify.void_records`): the log never keeps
    claiming a champion that never was.

    Args:
        pipeline: The pipeline name.
        action: One of ACTIONS.
        version: The version decided on (None when there is none, e.g. a quarantine).
        previous: The champion before the decision.
        reasons: Why, in order.
        trigger: The run's `mlops/trigger` (`manual`, `performance`, ...).
        run_id: The Dagster run that made the decision.
        by: Who asked for it (a manual promote, an approval).
        environment: The environment it was made in.
        extra: More JSON fields (they may not reuse a field above).
        log: Where to warn on failure.
        instance: The Dagster instance the decision is recorded in (for `void` records).

    Returns:
        The record as written (with `seq`, `prev_sha256` and `sha256`), or None if it was not written.
    """
    try:
        record = new_record(
            pipeline,
            action,
            version=version,
            previous=previous,
            reasons=reasons,
            trigger=trigger,
            run_id=run_id,
            by=by,
            environment=environment,
            extra=dict(extra or {}),
        )
        path = audit_path(pipeline)
        voids: list[dict[str, Any]] = []
        if instance is not None and action in DECIDED:
            try:
                voids = [{**void, "run_id": run_id} for void in void_records(instance, pipeline, path)]
            except Exception as e:  # the decision's own record matters more
                (log or logger).warning(
                    f"audit log: could not check the decisions before this one against the instance: "
                    f"{type(e).__name__}: {e}"
                )
        return append_records(path, [*voids, record])[-1]
    except Exception as e:  # never fail the decision for its audit record
        (log or logger).warning(
            f"audit log: could not record {action} of {pipeline} version {version}: {type(e).__name__}: {e}"
        )
        return None


def read_log(pipeline: str, root: str | None = None) -> list[dict[str, Any]]:
    """The records of a pipeline's log, oldest first ([] when it has none).

    Lines that are not JSON records (a torn last line) are left out: `verify_log` names them.
    """
    out = []
    for raw in iter_lines(audit_path(pipeline, root)):
        record = parse_record(raw.rstrip(b"\n"))
        if record is not None:
            out.append(record)
    return out


def verify_log(
    pipeline: str, root: str | None = None, instance: dg.DagsterInstance | None = None
) -> list[str]:
    """Problems of a pipeline's audit log, each naming the line and what is wrong; [] when intact.

    The chain check reports the first bad line: an edited record (its sha256 no longer matches), a
    deleted, inserted or moved record (prev_sha256 or seq do not follow), a line that is not a JSON
    record, a torn last line. With `instance`, every champion decision of the Dagster instance with no
    log record of the same version, action and run id is reported too: promotions and rollbacks
    (materializations of `<p>/champion`, a promote matching a `promote` or `manual_promote` record)
    and decisions to keep the champion (observations of it, which carry the champion run's id); and
    so is a logged decision that never took effect although its run is over, unless a `void` record
    names it.
    """
    path = audit_path(pipeline, root)
    check = check_chain(path)
    problems = list(check.problems)
    if instance is not None:
        problems += instance_problems(instance, pipeline, path, check)
    return problems


def logged_pipelines(root: str | None = None) -> list[str]:
    """The pipelines with an audit log under the storage root, sorted."""
    folder = audit_path("x", root).parent
    try:
        names = [p.name for p in folder.iterdir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(n[: -len(".jsonl")] for n in names if n.endswith(".jsonl") and not n.startswith("."))
