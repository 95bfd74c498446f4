"""Model cards: what a version is, what it was trained on, how it scored. Stored with the version."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mlops_dagster.spec.models import PipelineSpec


def git_commit(folder: Path) -> str | None:
    """The commit of the repository holding the spec, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def build_card(
    spec: PipelineSpec,
    *,
    metrics: dict[str, float],
    features: list[str],
    schema: dict[str, str],
    cutoff: str,
    train_rows: int,
    holdout_rows: int,
    training_data_version: str,
    feature_group_versions: dict[str, str | None],
    code_version: str | None,
    run_id: str,
    trigger: str,
) -> tuple[dict[str, Any], str]:
    """The card as a JSON-able dict and as Markdown (`{version}`/`{sha256}` filled in at save time)."""
    now = datetime.now(tz=UTC).isoformat(timespec="seconds")
    card: dict[str, Any] = {
        "pipeline": spec.name,
        "description": spec.description,
        "owners": list(spec.owners),
        "task": spec.model.task,
        "estimator": spec.model.estimator,
        "params": dict(spec.model.params),
        "metric": spec.model.metric,
        "metrics": metrics,
        "features": features,
        "feature_schema": schema,
        "label": spec.dataset.label,
        "holdout": {"cutoff": cutoff, "fraction": spec.model.holdout, "rows": holdout_rows},
        "training_rows": train_rows,
        "training_set_data_version": training_data_version,
        "feature_group_versions": feature_group_versions,
        "code_version": code_version,
        "git_commit": git_commit(spec.base_dir),
        "dagster_run_id": run_id,
        "trigger": trigger,
        "created_at": now,
    }
    metric_rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in metrics.items())
    groups = "\n".join(f"- `{g}`: data version `{v}`" for g, v in feature_group_versions.items()) or "- none"
    md = f"""# Model card: {spec.name} `{{version}}`

{spec.description}

- **sha256**: `{{sha256}}`
- **task**: {spec.model.task}; **estimator**: `{spec.model.estimator}` with `{spec.model.params}`
- **trained**: {now} in Dagster run `{run_id}` (trigger: {trigger})
- **code version**: `{code_version}`; **git commit**: `{card["git_commit"]}`
- **training set**: {train_rows} rows, data version `{training_data_version}`
- **holdout**: {holdout_rows} rows with `{spec.dataset.timestamp}` >= {cutoff}

## Holdout metrics (greater is better)
| metric | value |
| --- | --- |
{metric_rows}

## Features
{", ".join(f"`{f}`" for f in features)}

## Feature groups
{groups}
"""
    return card, md
