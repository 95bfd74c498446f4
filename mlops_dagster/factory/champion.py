"""The `<p>/champion` asset: moves only through the gates, and records every decision with its reasons.

A promotion or rollback is a materialization whose data version is the model version; the packaging
sensor rebuilds the bento and edge bundle whenever the version they record differs. A decision to keep
the champion is an observation of the asset: it is in the history, but changes nothing downstream.

When a serving target needs ONNX, conversion and parity (packaging/onnx_gate.py) are gates too, on
the same holdout, checked once here; a rollback to a version whose bundle fails them is refused.
"""

from collections.abc import Iterator
from typing import Any, Literal

import dagster as dg
import pandas as pd

from mlops_dagster.environments import environment_name
from mlops_dagster.errors import RegistryError
from mlops_dagster.factory.compute_tags import asset_op_tags
from mlops_dagster.factory.metadata import metrics_metadata
from mlops_dagster.factory.versions import code_version
from mlops_dagster.keys import Meta, Tags, candidate_key, champion_key, training_set_key
from mlops_dagster.registry.pool import champion_pool
from mlops_dagster.spec.models import PipelineSpec


class ChampionConfig(dg.Config):
    """How the champion asset decides: `gate` the latest candidate (default), or a manual action."""

    action: Literal["gate", "promote", "rollback"] = "gate"
    # promote: the version to promote. rollback: if given, the champion to roll back FROM; when another
    # version is champion by the time the run decides, nothing is rolled back (a recorded keep).
    version: str | None = None
    reason: str = ""
    approved_by: str = ""  # `registry approve`: one of the pipeline's owners (environments with approval)


def _score(spec: PipelineSpec, record: Any, holdout: pd.DataFrame, features: list[str]) -> dict[str, float]:
    from mlops_dagster.registry.store import load_version
    from mlops_dagster.training.train import evaluate, metric_names, prepare_frame

    model = load_version(spec.name, record.version, record.sha256)
    X, y = prepare_frame(spec, holdout, features)
    return evaluate(model, X, y, metric_names(spec))


def _holdout(spec: PipelineSpec, training_set: pd.DataFrame, cutoff: str | None) -> pd.DataFrame:
    from mlops_dagster.training.train import holdout_for, split_holdout

    if cutoff:
        return holdout_for(training_set, spec.dataset.timestamp, pd.Timestamp(cutoff))
    return split_holdout(training_set, spec.dataset.timestamp, spec.model.holdout)[1]


def _candidate_meta(instance: dg.DagsterInstance, spec: PipelineSpec, version: str) -> dict[str, Any]:
    from mlops_dagster.registry.records import candidate_metadata

    md = candidate_metadata(instance, spec.name, version)
    if md is None:
        raise RegistryError(f"{spec.name}: no candidate record for version {version}")
    return md


def _result(
    spec: PipelineSpec,
    record: Any,
    decision: str,
    reasons: list[str],
    metrics: dict[str, float],
    previous: str | None,
    extra: dict[str, Any] | None = None,
    *,
    trigger: str,
) -> dg.MaterializeResult:
    from mlops_dagster.registry.store import card_path

    return dg.MaterializeResult(
        metadata={
            Meta.VERSION: record.version,
            Meta.SHA256: record.sha256,
            Meta.DECISION: decision,
            Meta.REASONS: dg.MetadataValue.json(reasons),
            Meta.PREVIOUS: previous or "",
            Meta.TRIGGER: trigger,  # `performance` marks an automatic rollback (registry/records.py)
            Meta.ENVIRONMENT: environment_name(spec),
            Meta.MODEL_CARD: dg.MetadataValue.path(str(card_path(spec.name, record.version))),
            **metrics_metadata(metrics),
            **(extra or {}),
        },
        data_version=dg.DataVersion(record.version),
    )


def _trigger(context: dg.AssetExecutionContext) -> str:
    return context.run.tags.get(Tags.TRIGGER, "manual")


def _audit(
    context: dg.AssetExecutionContext,
    spec: PipelineSpec,
    action: str,
    version: str,
    previous: str | None,
    reasons: list[str],
    approved_by: str = "",
) -> None:
    """Append the decision to the pipeline's tamper-evident audit log (`mlops_dagster/audit.py`).

    Written while the decision lock is held, before the materialization is recorded; a failed append
    is a warning, never a failed decision (the event log stays the registry of record, and
    `audit verify` reports a decision it holds that the log lacks).
    """
    from mlops_dagster.audit import record_decision

    record_decision(
        spec.name,
        action,
        version=version,
        previous=previous,
        reasons=reasons,
        trigger=_trigger(context),
        run_id=context.run_id,
        by=context.run.tags.get(Tags.REQUESTED_BY),
        environment=environment_name(spec),
        extra={"approved_by": approved_by} if approved_by else None,
        log=context.log,
        instance=context.instance,
    )


def _approval(spec: PipelineSpec, config: ChampionConfig, version: str) -> str | None:
    """Why a promotion that passed the gates must still wait, or None when it may go ahead.

    In an environment with `approval: required`, only `registry approve` (a manual promote naming one
    of the pipeline's owners) moves the champion forward; rollbacks never wait.

    Raises:
        RegistryError: the approver is not one of the pipeline's owners.
    """
    if config.approved_by and config.approved_by not in spec.owners:
        raise RegistryError(
            f"{spec.name}: {config.approved_by!r} may not approve: approvers are the pipeline's owners "
            f"({', '.join(spec.owners) or 'none declared'})"
        )
    env = spec.environment
    if env is None or env.approval != "required" or config.approved_by:
        return None
    return (
        f"WAIT approval: environment {env.name!r} requires one; run `mlops-dagster registry approve "
        f"{spec.name} {version} --by <owner>` (owners: {', '.join(spec.owners) or 'none declared'})"
    )


def _observe(
    context: dg.AssetExecutionContext,
    spec: PipelineSpec,
    version: str,
    decision: str,
    reasons: list[str],
    metrics: dict[str, float],
    current: str | None,
    extra: dict[str, Any] | None = None,
) -> None:
    _audit(context, spec, "keep", version, current, reasons)
    context.log_event(
        dg.AssetObservation(
            asset_key=champion_key(spec.name),
            metadata={
                Meta.VERSION: version,
                Meta.DECISION: decision,
                Meta.REASONS: dg.MetadataValue.json(reasons),
                Meta.PREVIOUS: current or "",
                Meta.TRIGGER: _trigger(context),
                **metrics_metadata(metrics),
                **(extra or {}),
            },
        )
    )
    context.log.info(
        f"{spec.name}: keeping champion {current or '(none)'}; candidate {version} "
        f"not promoted: {'; '.join(r for r in reasons if r.startswith('FAIL')) or 'see reasons'}"
    )


def _onnx_gate(spec: PipelineSpec, record: Any, holdout: pd.DataFrame) -> Any:
    """The ONNX conversion and parity outcome of `record` on `holdout`, or None when no target needs ONNX."""
    from mlops_dagster.packaging.onnx_gate import check_version, onnx_wanted

    return check_version(spec, record, holdout) if onnx_wanted(spec) else None


def build_champion_asset(spec: PipelineSpec) -> dg.AssetsDefinition:
    @dg.asset(
        key=champion_key(spec.name),
        op_tags=asset_op_tags(spec, "champion"),
        group_name=spec.name,
        description=(
            f"The `{spec.name}` model in service. Moves only when a candidate passes the gates "
            f"(floors {dict(spec.gates.min)}, max_regression {spec.gates.max_regression}) or by an "
            "explicit rollback; its materialization history is the registry of record."
        ),
        kinds={"bentoml"},
        owners=list(spec.owners),
        ins={"training_set": dg.AssetIn(key=training_set_key(spec.name))},
        deps=[candidate_key(spec.name)],
        code_version=code_version(spec.gates, spec.model.metric),
        output_required=False,
        metadata=spec.environment.describe() if spec.environment else None,
        pool=champion_pool(spec.name),  # one decision at a time per pipeline (registry/pool.py)
    )
    def _champion(
        context: dg.AssetExecutionContext, config: ChampionConfig, training_set: pd.DataFrame
    ) -> Iterator[dg.MaterializeResult]:
        from mlops_dagster.registry.pool import decision_lock

        # The pool's slot is held; on SQLite its claim is not atomic, so the lock too (registry/pool.py),
        # from reading the champion until the decision is recorded (before the generator resumes).
        with decision_lock(context.instance, spec.name, run_id=context.run.run_id):
            yield from _decide(context, config, training_set)

    def _decide(
        context: dg.AssetExecutionContext, config: ChampionConfig, training_set: pd.DataFrame
    ) -> Iterator[dg.MaterializeResult]:
        from mlops_dagster.registry import records
        from mlops_dagster.registry.gates import decide
        from mlops_dagster.registry.pool import ensure_champion_pool
        from mlops_dagster.registry.store import load_version

        instance = context.instance
        # The pool's slot and lock are held: read the champion now, never before the run started.
        pool = ensure_champion_pool(instance, spec.name)  # for later runs (UI, schedules) too
        if pool.problem:
            context.log.info(f"{spec.name}: {pool.problem}")
        current = records.current_champion(instance, spec.name)
        if config.action == "rollback":
            history = records.champion_history(instance, spec.name, limit=1000)
            if current is None:
                raise RegistryError(f"{spec.name}: there is no champion to roll back")
            if config.version and config.version != current.version:  # requested for an earlier champion
                reasons = [
                    f"FAIL rollback from {config.version} not done: the champion is now {current.version}",
                    *([config.reason] if config.reason else []),
                ]
                _observe(context, spec, current.version, "keep", reasons, current.metrics, current.version)
                return
            target = records.rollback_target(history)
            if target is None:
                raise RegistryError(
                    f"{spec.name}: no earlier champion than {current.version} to roll back to"
                )
            load_version(spec.name, target.version, target.sha256)  # refuse a corrupt target up front
            reasons = [
                f"rollback from {current.version} to {target.version}",
                *([config.reason] if config.reason else []),
            ]
            cutoff = _candidate_meta(instance, spec, target.version).get(Meta.HOLDOUT_CUTOFF)
            onnx = _onnx_gate(spec, target, _holdout(spec, training_set, cutoff))
            if onnx is not None and onnx.required and not onnx.passed:  # cloud and edge would split
                raise RegistryError(f"{spec.name}: rollback to {target.version} refused: {onnx.reason}")
            reasons += [onnx.reason] if onnx is not None else []
            context.log.info(f"{spec.name}: {reasons[0]}")
            extra = onnx.metadata if onnx is not None else None
            _audit(context, spec, "rollback", target.version, current.version, reasons)
            yield _result(
                spec,
                target,
                "rollback",
                reasons,
                target.metrics,
                current.version,
                extra,
                trigger=_trigger(context),
            )
            return

        if config.action == "promote":
            if not config.version:
                raise RegistryError("action 'promote' needs a version")
            record = records.find_version(instance, spec.name, config.version)
            if record is None:
                raise RegistryError(f"{spec.name}: unknown or ambiguous version {config.version!r}")
        else:
            record = records.latest_candidate(instance, spec.name)
            if record is None:
                raise RegistryError(
                    f"{spec.name}: no candidate has been trained yet; materialize "
                    f"{candidate_key(spec.name).to_user_string()} first"
                )
        if current is not None and current.version == record.version:
            _observe(
                context,
                spec,
                record.version,
                "keep",
                ["candidate is already the champion"],
                record.metrics,
                current.version,
            )
            return
        failed_live = (  # versions that failed in service: the gates never bring them back
            records.performance_rollbacks(records.champion_history(instance, spec.name, limit=1000))
            if config.action == "gate"
            else {}  # a manual promote may
        )
        if record.version in failed_live:
            back = failed_live[record.version]
            reasons = [
                f"FAIL {record.version} was rolled back for live performance on {back.when} (run "
                f"{back.run_id}): {'; '.join(back.reasons)}. Only a manual promote brings it back.",
            ]
            previous = current.version if current else None
            _observe(context, spec, record.version, "keep", reasons, record.metrics, previous)
            return
        meta = _candidate_meta(instance, spec, record.version)
        features = list(meta.get(Meta.FEATURES) or [])
        holdout = _holdout(spec, training_set, meta.get(Meta.HOLDOUT_CUTOFF))
        candidate_scores = _score(spec, record, holdout, features)
        champion_scores = (
            _score(spec, current, holdout, _features_of(instance, spec, current)) if current else None
        )
        decision = decide(spec.gates, spec.model.metric, candidate_scores, champion_scores)
        cutoff = meta.get(Meta.HOLDOUT_CUTOFF)
        split = f"from {cutoff}" if cutoff else f"(latest {spec.model.holdout:g} of this training set)"
        reasons = [*decision.reasons, f"holdout: {len(holdout)} rows {split}"]
        if config.action == "promote":
            reasons.insert(0, f"manual promote requested{': ' + config.reason if config.reason else ''}")
        # Conversion and parity are gates too, on the same holdout, before anything is promoted.
        onnx = _onnx_gate(spec, record, holdout) if decision.promote else None
        reasons += [onnx.reason] if onnx is not None else []
        extra = onnx.metadata if onnx is not None else None
        waiting = _approval(spec, config, record.version)
        if config.approved_by:
            reasons.insert(0, f"approved by {config.approved_by}")
        passed = decision.promote and not (onnx is not None and onnx.required and not onnx.passed)
        if not passed or waiting:
            reasons += [waiting] if passed and waiting else []
            previous = current.version if current else None
            _observe(context, spec, record.version, "keep", reasons, candidate_scores, previous, extra)
            if config.action == "promote":
                failed = "; ".join(r for r in reasons if r.startswith("FAIL"))
                raise dg.Failure(
                    f"{spec.name}: {record.version} passed the gates but needs an approval: {waiting}"
                    if passed
                    else f"{spec.name}: {record.version} did not pass the gates: {failed}",
                    metadata={Meta.REASONS: dg.MetadataValue.json(reasons)},
                )
            return
        context.log.info(
            f"{spec.name}: promoting {record.version} "
            f"(trigger {context.run.tags.get(Tags.TRIGGER, 'manual')})"
        )
        action = "manual_promote" if config.action == "promote" else "promote"
        previous = current.version if current else None
        _audit(context, spec, action, record.version, previous, reasons, approved_by=config.approved_by)
        yield _result(
            spec,
            record,
            "promote",
            reasons,
            candidate_scores,
            current.version if current else None,
            extra,
            trigger=_trigger(context),
        )

    return _champion


def _features_of(instance: dg.DagsterInstance, spec: PipelineSpec, record: Any) -> list[str]:
    return list(_candidate_meta(instance, spec, record.version).get(Meta.FEATURES) or [])
