"""Settings of the checks inferred from the champion's training profile (`quality.inferred`)."""

from __future__ import annotations

from pydantic import Field

from mlops_dagster.spec.base import StrictModel


class PresenceCheckSpec(StrictModel):
    """Inferred check `mlops_inferred_presence`: the share of nulls per column against the champion's."""

    enabled: bool = True
    max_null_increase: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Largest rise of a column's null share over the champion's training (0.1: 10 points)",
    )


class DomainCheckSpec(StrictModel):
    """Inferred check `mlops_inferred_domain`: categorical values against those the champion saw."""

    enabled: bool = True
    max_unseen_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Largest share of a column's non-null values outside the champion's domain",
    )


class RangeCheckSpec(StrictModel):
    """Inferred check `mlops_inferred_range`: numbers against the champion's training min and max."""

    enabled: bool = True
    tolerance: float = Field(
        0.1,
        ge=0,
        le=100,
        description="Slack on each side, as a fraction of the training range (max - min)",
    )
    blocking: bool = Field(False, description="Refuse the batch (severity ERROR) instead of warning")


class InferredChecksSpec(StrictModel):
    """Checks inferred from the champion's training profile (as TFDV and Deequ do), beside user rules."""

    presence: PresenceCheckSpec = Field(default_factory=PresenceCheckSpec)
    domain: DomainCheckSpec = Field(default_factory=DomainCheckSpec)
    range: RangeCheckSpec = Field(default_factory=RangeCheckSpec)
