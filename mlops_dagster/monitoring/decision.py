"""Drift decided in one place: the rule the drift sensor retrains on and the drift report records.

A pipeline's `monitoring.drift` settings (`DriftSettings`: per-column methods and thresholds, and
`max_drifted_share`) go to `decide_drift`, which tests the batch against the champion's reference
profile (`detect_drift`) and applies the dataset rule: the data drifted when MORE than
`max_drifted_share` of the tested columns drifted. The sensor fires on that decision, and the drift
report records that same decision (Evidently's HTML, configured with the same settings, is the evidence
a person reads), so the two cannot disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from mlops_dagster.errors import MlopsDagsterError
from mlops_dagster.monitoring.detect import ColumnDrift, DriftResult, detect_drift
from mlops_dagster.monitoring.kinds import METHODS
from mlops_dagster.monitoring.profile import DriftProfile

SETTINGS_PATH = "monitoring.drift"


class DriftSettingsError(MlopsDagsterError, ValueError):
    """A drift setting cannot be applied: an unknown method, a bad threshold, or a method that does not
    fit the column's data (for example `ks` on a column of categories). The message names the field."""


@dataclass(frozen=True)
class DriftSettings:
    """The settings a drift decision uses, and nothing else (they version the drift report).

    Attributes:
        max_drifted_share: The data drifted when more than this share of the tested columns drifted.
        methods: Per column, a method instead of Evidently's default choice.
        thresholds: Per column, a threshold instead of the method's default.
    """

    max_drifted_share: float = 0.3
    methods: Mapping[str, str] = field(default_factory=dict)
    thresholds: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_spec(cls, drift: Any) -> DriftSettings:
        """The settings of a `monitoring.drift` spec section (a `DriftMonitoringSpec`)."""
        return cls(
            max_drifted_share=float(drift.max_drifted_share),
            methods=dict(drift.methods or {}),
            thresholds={k: float(v) for k, v in (drift.thresholds or {}).items()},
        )

    def as_dict(self) -> dict[str, Any]:
        """A canonical, JSON-ready form (sorted keys): what a code version hashes."""
        return {
            "max_drifted_share": self.max_drifted_share,
            "methods": dict(sorted(self.methods.items())),
            "thresholds": dict(sorted(self.thresholds.items())),
        }

    def problems(self) -> list[str]:
        """Every setting that cannot be applied whatever the data, each naming its field."""
        out = []
        if not 0.0 <= self.max_drifted_share <= 1.0:
            out.append(
                f"{SETTINGS_PATH}.max_drifted_share: {self.max_drifted_share} is not between 0 and 1"
            )
        for column, method in sorted(self.methods.items()):
            if method not in METHODS:
                out.append(
                    f"{SETTINGS_PATH}.methods.{column}: unknown drift method {method!r} "
                    f"(choose from {', '.join(METHODS)})"
                )
        for column, threshold in sorted(self.thresholds.items()):
            if not (math.isfinite(threshold) and threshold >= 0):
                out.append(f"{SETTINGS_PATH}.thresholds.{column}: {threshold} is not a finite number >= 0")
        return out

    def check(self) -> None:
        """Raise `DriftSettingsError` listing every problem, if any."""
        problems = self.problems()
        if problems:
            raise DriftSettingsError("; ".join(problems))


@dataclass(frozen=True)
class DriftDecision:
    """Whether a batch drifted from the reference, by the pipeline's rule.

    Attributes:
        drift: True when `share_drifted` > `settings.max_drifted_share`: the sensor retrains on it and
            the report records it as its dataset drift.
        share_drifted: Drifted columns / tested columns.
        drifted_columns: The drifted columns, sorted.
        result: The per-column verdicts (`detect_drift`'s result).
        settings: The settings that decided.
    """

    drift: bool
    share_drifted: float
    drifted_columns: list[str]
    result: DriftResult
    settings: DriftSettings

    @property
    def columns(self) -> dict[str, ColumnDrift]:
        """Verdict per tested column."""
        return self.result.columns


def decide_drift(
    reference: pd.DataFrame | DriftProfile,
    current: pd.DataFrame,
    settings: DriftSettings,
    *,
    columns: Sequence[str] | None = None,
) -> DriftDecision:
    """Test `current` against the reference with the pipeline's settings and decide dataset drift.

    Args:
        reference: The champion's reference profile (or a DataFrame, profiled first).
        current: The batch to test (extra columns are ignored).
        settings: The pipeline's drift settings.
        columns: The columns to test (the champion's drift columns); None: every profiled column. A
            listed column missing from the batch counts as drifted.

    Returns:
        The decision, with the per-column verdicts behind it.

    Raises:
        DriftSettingsError: A setting cannot be applied (it names the `monitoring.drift` field).
        DataError: The batch is empty, or a listed column is not in the reference profile.
    """
    settings.check()
    wanted = list(columns) if columns is not None else None
    present = [c for c in wanted if c in current.columns] if wanted is not None else []
    batch = current[present] if present else current
    try:
        result = detect_drift(
            reference,
            batch,
            columns=wanted,
            methods=dict(settings.methods) or None,
            thresholds=dict(settings.thresholds) or None,
            drift_share=settings.max_drifted_share,
        )
    except ValueError as e:  # detect_drift raises ValueError only for its options: our settings
        raise DriftSettingsError(f"{SETTINGS_PATH}: {str(e).removeprefix('drift: ')}") from e
    return DriftDecision(
        drift=bool(result.columns) and result.share_drifted > settings.max_drifted_share,
        share_drifted=result.share_drifted,
        drifted_columns=sorted(result.drifted_columns),
        result=result,
        settings=settings,
    )
