"""`mlops-dagster registry promote|rollback`: Dagster runs of the `<p>/champion` asset.

A move of the champion is a materialization like any other, so it is in the UI and the event log; the
run is tagged `mlops/trigger=cli` and `mlops/action=promote|rollback`.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from mlops_dagster.cli.errors import CliError
from mlops_dagster.cli.output import err
from mlops_dagster.cli.project import load_defs, open_instance, requested_by, require_pipeline_records
from mlops_dagster.cli.registry.lookup import resolve
from mlops_dagster.errors import RegistryError

if TYPE_CHECKING:
    import dagster as dg


RECENT = 200  # registry events searched for this run's own decision


def _champion_op(defs: dg.Definitions, name: str, source: str) -> tuple[dg.AssetKey, str]:
    from mlops_dagster.keys import champion_key

    key = champion_key(name)
    keys = set(defs.resolve_all_asset_keys())
    if key not in keys:
        known = sorted(k.path[0] for k in keys if len(k.path) == 2 and k.path[1] == "champion")
        raise CliError(
            f"unknown pipeline {name!r} in {source}: no asset {key.to_user_string()} "
            f"(pipelines: {', '.join(known) or 'none'})"
        )
    try:
        op_name = defs.resolve_assets_def(key).op.name
    except Exception:
        op_name = "__".join(key.path)
    return key, op_name


def _error_text(message: str, cls_name: str) -> str:
    """`mlops_dagster.errors.RegistryError: churn: ...` -> `churn: ...`."""
    text = message.strip()
    head, sep, rest = text.partition(": ")
    if sep and head.rsplit(".", 1)[-1] == cls_name:
        return rest.strip()
    return text


def _failure_message(result: Any) -> str:
    """The user-facing cause of a failed run: the Failure's description or the innermost error."""
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data
        if data.user_failure_data is not None and data.user_failure_data.description:
            return data.user_failure_data.description
        error = data.error
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None:
            return _error_text(error.message, error.cls_name or "")
    for event in result.all_events:
        if event.is_failure and getattr(event, "message", None):
            return str(event.message)
    return "the run failed (see its event log in the Dagster UI)"


def _join_the_pool(instance: dg.DagsterInstance, name: str, action: str) -> None:
    """Make the champion pool serialize this decision with every other one; say when it must wait."""
    from mlops_dagster.registry.pool import ensure_champion_pool

    state = ensure_champion_pool(instance, name)
    if state.per_run:
        raise CliError(
            f"cannot {action} {name} safely: {state.problem}. Set `concurrency: {{pools: "
            f"{{granularity: op}}}}` in $DAGSTER_HOME/dagster.yaml, or launch {name}/champion from the "
            "Dagster UI"
        )
    if state.problem:
        print(f"warning: {state.problem}", file=sys.stderr)
    for run_id in state.freed:
        print(
            f"note: freed pool {state.pool} from run {run_id}, which can never free it (over, or died)",
            file=sys.stderr,
        )
    if state.holders:
        print(
            f"waiting for pool {state.pool}: held by run {', '.join(state.holders)} "
            "(one champion decision at a time)",
            file=sys.stderr,
        )


def _run_champion(
    args: argparse.Namespace, action: str, config: dict[str, Any], tags: dict[str, str] | None = None
) -> int:
    """Materialize `<p>/champion` with `config` in a run tagged by the CLI; report what moved."""
    import warnings

    import dagster as dg
    from dagster import DagsterError

    from mlops_dagster.keys import Tags

    defs, source = load_defs(args)
    key, op_name = _champion_op(defs, args.name, source)
    assets = [a for a in (defs.assets or []) if isinstance(a, dg.AssetsDefinition | dg.AssetSpec)]
    run_config: dict[str, Any] = {"ops": {op_name: {"config": config}}}
    if not args.verbose:  # the full log is in the run's event log (UI); keep the terminal readable
        run_config["loggers"] = {"console": {"config": {"log_level": "CRITICAL"}}}
    with warnings.catch_warnings():
        if not args.verbose:
            warnings.simplefilter("ignore")
        from mlops_dagster.registry.pool import run_lease

        # The lease lets the next decision free this run's slot if this process is killed (pool.py).
        with open_instance() as instance, run_lease(instance) as lease_tags:
            _join_the_pool(instance, args.name, action)
            try:
                result = dg.materialize(
                    assets,
                    selection=[key],
                    instance=instance,
                    resources=dict(defs.resources or {}),
                    run_config=run_config,
                    tags={
                        Tags.TRIGGER: "cli",
                        Tags.ACTION: action,
                        Tags.PIPELINE: args.name,
                        Tags.REQUESTED_BY: requested_by(),
                        **lease_tags,
                        **(tags or {}),
                    },
                    raise_on_error=False,
                )
            except DagsterError as e:  # the run could not start (config, resources, definitions)
                raise CliError(
                    f"cannot start the {action} run of {key.to_user_string()} ({source}): {e}"
                ) from e
            from mlops_dagster.registry import records

            # This run's own records, not the newest ones: other decisions may have followed it already.
            moved = [
                r for r in records.champion_history(instance, args.name, RECENT) if r.run_id == result.run_id
            ]
            observed = [
                r for r in records.decision_history(instance, args.name, RECENT) if r.run_id == result.run_id
            ]
            current = records.current_champion(instance, args.name)
    print(f"run {result.run_id} ({action} {args.name}) {'succeeded' if result.success else 'FAILED'}")
    if not result.success:
        err(f"{action} of {args.name} failed in run {result.run_id}: {_failure_message(result)}")
        for r in observed:
            for reason in r.reasons:
                print(f"  - {reason}", file=sys.stderr)
        return 1
    if not moved:  # no materialization: the champion did not move
        kept = observed[0].previous if observed else (current.version if current else None)
        print(f"champion unchanged: {kept or '(none)'}")
        for reason in observed[0].reasons if observed else []:
            print(f"  - {reason}")
        return 0
    # `previous` is the champion the decision read while it held the pool's slot (never a stale read).
    after = moved[0]
    print(f"champion of {args.name} is now {after.version} (was {after.previous or '(none)'})")
    for reason in after.reasons:
        print(f"  - {reason}")
    if current is not None and current.run_id != after.run_id:
        print(f"  (a later decision has since made {current.version} the champion)")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """Promote `args.version` of `args.name` through the gates, in a Dagster run."""
    from mlops_dagster.registry import records

    with open_instance() as instance:
        require_pipeline_records(instance, args.name)
        record = resolve(records.candidate_history(instance, args.name, limit=1000), args.name, args.version)
    config = {"action": "promote", "version": record.version, "reason": args.reason or ""}
    return _run_champion(args, "promote", config)


def cmd_rollback(args: argparse.Namespace) -> int:
    """Return `args.name` to its previous champion, in a Dagster run."""
    from mlops_dagster.registry import records

    with open_instance() as instance:
        require_pipeline_records(instance, args.name)
        history = records.champion_history(instance, args.name, limit=1000)
    if not history:
        raise RegistryError(f"pipeline {args.name!r} has no champion yet: there is nothing to roll back")
    target = records.rollback_target(history)
    if target is None:
        current = history[0].version
        why = (
            "it is the only champion there has been"
            if all(r.version == current for r in history)
            else "the champions after it were all rolled back"
        )
        raise RegistryError(
            f"pipeline {args.name!r}: nothing to roll back to: {current} is the first champion in the "
            f"history ({why})"
        )
    config = {"action": "rollback", "reason": args.reason or ""}
    return _run_champion(args, "rollback", config)


def cmd_approve(args: argparse.Namespace) -> int:
    """Promote `args.version` of `args.name` through the gates with the approval of `args.by`.

    In an environment with `approval: required` this is the only way a new champion is made (a
    rollback never waits); elsewhere it is a promote that records who approved it.
    """
    import dagster as dg

    from mlops_dagster.keys import Tags, champion_key
    from mlops_dagster.registry import records

    defs, source = load_defs(args)
    key = champion_key(args.name)
    try:
        owners = list(defs.resolve_assets_def(key).owners_by_key.get(key, []))
    except (dg.DagsterInvalidDefinitionError, KeyError, ValueError) as e:
        raise CliError(f"unknown pipeline {args.name!r} in {source}: no asset {key.to_user_string()}") from e
    if args.by not in owners:
        listed = ", ".join(owners) or "none declared; set `owners:` in its spec"
        raise CliError(f"{args.by!r} may not approve {args.name}: approvers are its owners ({listed})")
    with open_instance() as instance:
        require_pipeline_records(instance, args.name)
        record = resolve(records.candidate_history(instance, args.name, limit=1000), args.name, args.version)
    config = {
        "action": "promote",
        "version": record.version,
        "reason": args.reason or "",
        "approved_by": args.by,
    }
    return _run_champion(args, "promote", config, tags={Tags.APPROVED_BY: args.by})
