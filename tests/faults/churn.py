"""The specs the fault tests run: the demo's churn pipeline, with gates every new version passes."""

from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BASE_PARAMS = "params: {max_iter: 100, random_state: 0}"
GATES = "gates:\n  min: {roc_auc: 0.70}\n  max_regression: 0.01"


def churn_specs(folder: Path, max_iter: int) -> Path:
    """The demo's churn specs (no demand) with lenient gates, so every new version is promoted, and
    `max_iter` (each value trains another version)."""
    shutil.copytree(ROOT / "pipelines", folder)
    (folder / "demand.yaml").unlink()
    churn = folder / "churn.yaml"
    text = churn.read_text()
    assert BASE_PARAMS in text and GATES in text, "the demo's churn spec changed: update tests/faults"
    churn.write_text(
        text.replace(BASE_PARAMS, f"params: {{max_iter: {max_iter}, random_state: 0}}").replace(
            GATES, "gates:\n  min: {}\n  max_regression: 1.0"
        )
    )
    return folder
