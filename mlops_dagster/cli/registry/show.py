"""`mlops-dagster registry show NAME [VERSION]`: one version's record, model card and registry history."""

from __future__ import annotations

import argparse
import json
from typing import Any

from mlops_dagster.cli.errors import CliError
from mlops_dagster.cli.output import err, record_json, short
from mlops_dagster.cli.project import open_instance, require_pipeline_records
from mlops_dagster.cli.registry.lookup import resolve
from mlops_dagster.errors import MlopsDagsterError


def _format_card(card: dict[str, Any]) -> list[str]:
    lines = []

    def add(label: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            lines.append(f"  {label:<16}{value}")

    metric = card.get("metric")
    metrics = card.get("metrics") or {}
    holdout = card.get("holdout") or {}
    add("description", card.get("description"))
    add("owners", ", ".join(card.get("owners") or []))
    add("task", card.get("task"))
    add("estimator", card.get("estimator"))
    add("params", json.dumps(card.get("params") or {}, sort_keys=True))
    add("metric", metric)
    add(
        "holdout metrics",
        ", ".join(
            f"{k}={v:.4f}"
            for k, v in sorted(metrics.items(), key=lambda kv: (kv[0] != metric, kv[0]))
            if isinstance(v, int | float)
        ),
    )
    add("features", ", ".join(card.get("features") or []))
    add("label", card.get("label"))
    add("training rows", card.get("training_rows"))
    add(
        "holdout",
        f"{holdout.get('rows')} rows from {holdout.get('cutoff')} (fraction {holdout.get('fraction')})"
        if holdout
        else None,
    )
    add("training data", card.get("training_set_data_version"))
    groups = card.get("feature_group_versions") or {}
    add("feature groups", ", ".join(f"{g} @ {short(v)}" for g, v in groups.items()))
    add("code version", card.get("code_version"))
    add("git commit", card.get("git_commit"))
    add("trained in run", card.get("dagster_run_id"))
    add("trigger", card.get("trigger"))
    add("created", card.get("created_at"))
    add("bentoml tag", card.get("bentoml_tag"))
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    """Print `args.version` of `args.name` (default: the champion); 1 if its model card cannot be read."""
    from mlops_dagster.registry import records
    from mlops_dagster.registry.store import read_card

    with open_instance() as instance:
        require_pipeline_records(instance, args.name)
        candidates = records.candidate_history(instance, args.name, limit=1000)
        champions = records.champion_history(instance, args.name, limit=1000)
        decisions = records.decision_history(instance, args.name, limit=1000)
    current = champions[0] if champions else None
    if args.version:
        record = resolve([*candidates, *champions], args.name, args.version)
    elif current is None:
        raise CliError(
            f"pipeline {args.name!r} has no champion yet: give a VERSION "
            f"(see `mlops-dagster registry list {args.name}`)"
        )
    else:
        record = current
    trained = next((r for r in candidates if r.version == record.version), None)
    sha256 = (trained or record).sha256 or record.sha256
    history = sorted(
        (r for r in (*champions, *decisions) if r.version == record.version),
        key=lambda r: r.timestamp,
        reverse=True,
    )
    is_champion = current is not None and current.version == record.version
    card_error = None
    try:
        card = read_card(args.name, record.version)
    except (MlopsDagsterError, OSError, ValueError) as e:
        card, card_error = None, f"model card of {args.name}:{record.version} cannot be read: {e}"

    if args.json:
        payload = {
            "pipeline": args.name,
            "version": record.version,
            "sha256": sha256,
            "champion": is_champion,
            "trained": record_json(trained) if trained else None,
            "history": [record_json(r) for r in history],
            "card": card,
        }
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(f"{args.name}:{record.version}{'  (champion)' if is_champion else ''}")
        print(f"  {'sha256':<16}{sha256 or '-'}")
        if trained:
            print(f"  {'trained':<16}{trained.when} in run {trained.run_id}")
        if current is not None and not is_champion:
            print(f"  {'champion':<16}{current.version}")
        if card is not None:
            print()
            print("Model card")
            print("\n".join(_format_card(card)))
        if history:
            print()
            print("Registry history of this version (newest first)")
            for r in history:
                if r.decision == "keep":
                    what = f"keep: not promoted over {short(r.previous)}"
                else:
                    what = f"{r.decision} (previous {short(r.previous)})"
                print(f"  {r.when}  {what}  run {r.run_id[:8]}")
                for reason in r.reasons:
                    print(f"      - {reason}")
    if card_error:
        err(card_error)
        return 1
    return 0
