"""`mlops-dagster registry list NAME`: versions, champion history and keep decisions of a pipeline."""

from __future__ import annotations

import argparse
import json

from mlops_dagster.cli.output import clip, iso_time, record_json, short, table
from mlops_dagster.cli.project import open_instance, require_pipeline_records
from mlops_dagster.cli.registry.lookup import primary_metric, run_tags

TRAININGS_READ = 1000  # candidate materializations read to group into versions


def _status(version: str, champion: str | None, champions: set[str], rejected: set[str]) -> str:
    if version == champion:
        return "champion"
    if version in champions:
        return "former champion"
    if version in rejected:
        return "rejected"
    return "candidate"


def cmd_list(args: argparse.Namespace) -> int:
    """Print the registry of `args.name` as three tables, or as JSON with `--json`.

    Versions are content-addressed, so retraining on unchanged data gives a version again: it is shown
    once, with its latest training and how many trainings produced it.
    """
    from mlops_dagster.keys import Tags
    from mlops_dagster.registry import records

    with open_instance() as instance:
        require_pipeline_records(instance, args.name)
        trainings = records.candidate_history(instance, args.name, limit=max(args.limit, TRAININGS_READ))
        champions = records.champion_history(instance, args.name, limit=args.limit)
        decisions = records.decision_history(instance, args.name, limit=args.limit)
        # Retraining on unchanged data gives the same content-addressed version: one row per version.
        versions = records.trained_versions(trainings)[: args.limit]
        candidates = [v.latest for v in versions]
        tags = run_tags(instance, {r.run_id for r in (*candidates, *champions, *decisions)})
    current = champions[0].version if champions else None
    was_champion = {r.version for r in champions}
    rejected = {r.version for r in decisions if any(x.startswith("FAIL") for x in r.reasons)}

    if args.json:
        payload = {
            "pipeline": args.name,
            "champion": current,
            "versions": [
                {
                    **record_json(v.latest, tags.get(v.latest.run_id, {})),
                    "trainings": v.trainings,
                    "first_trained": iso_time(v.first_trained),
                    "status": _status(v.version, current, was_champion, rejected),
                }
                for v in versions
            ],
            "champion_history": [record_json(r, tags.get(r.run_id, {})) for r in champions],
            "decisions": [record_json(r, tags.get(r.run_id, {})) for r in decisions],
        }
        print(json.dumps(payload, indent=2))
        return 0

    metric = primary_metric(args.name, candidates, args.metric)
    runs = sum(v.trainings for v in versions)
    print(f"{args.name}: champion {current or '(none)'}; {len(versions)} version(s), {runs} training run(s)")
    print()
    print("Versions (newest first)")
    if versions:
        rows = []
        for v in versions:
            r = v.latest
            if metric:
                value = r.metrics.get(metric)
                score = f"{value:.4f}" if value is not None else "-"
            else:
                score = ", ".join(f"{k}={v:.4f}" for k, v in r.metrics.items()) or "-"
            rows.append(
                [
                    "*" if r.version == current else " ",
                    r.version,
                    r.when,
                    str(v.trainings),
                    score,
                    _status(r.version, current, was_champion, rejected),
                    tags.get(r.run_id, {}).get(Tags.TRIGGER) or r.trigger or "manual",
                    r.run_id[:8] or "-",
                ]
            )
        headers = ["", "VERSION", "LAST TRAINED", "TRAININGS", metric or "METRICS", "STATUS", "TRIGGER"]
        print(table([*headers, "RUN"], rows))
    else:
        print("  (no candidate trained yet)")
    print()
    print("Champion history (newest first)")
    if champions:
        rows = [
            [
                r.when,
                r.decision or "-",
                short(r.version),
                short(r.previous),
                tags.get(r.run_id, {}).get(Tags.TRIGGER) or r.trigger or "manual",
                r.run_id[:8] or "-",
                clip("; ".join(r.reasons), 70),
            ]
            for r in champions
        ]
        print(table(["WHEN", "ACTION", "VERSION", "PREVIOUS", "TRIGGER", "RUN", "REASONS"], rows))
    else:
        print("  (no champion yet)")
    print()
    print("Keep decisions (newest first)")
    if decisions:
        rows = [
            [
                r.when,
                short(r.version),
                short(r.previous),
                tags.get(r.run_id, {}).get(Tags.TRIGGER) or r.trigger or "manual",
                r.run_id[:8] or "-",
                clip("; ".join(x for x in r.reasons if x.startswith("FAIL")) or "; ".join(r.reasons), 70),
            ]
            for r in decisions
        ]
        print(table(["WHEN", "CANDIDATE", "CHAMPION", "TRIGGER", "RUN", "REASONS"], rows))
    else:
        print("  (none)")
    return 0
