"""Pydantic models for the declarative spec (CONTRACT.md section 2).

Every model forbids unknown keys. Models hold the spec only: resolving import paths (estimator,
transform, python source) happens in `resolve.py`, lazily, so loading a spec imports no ML library.
"""

from __future__ import annotations

import math
import re
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mlops_dagster.errors import SpecIssue
from mlops_dagster.spec.base import StrictModel
from mlops_dagster.spec.compute import ComputeSpec, check_compute_keys
from mlops_dagster.spec.inferred import (
    DomainCheckSpec,
    InferredChecksSpec,
    PresenceCheckSpec,
    RangeCheckSpec,
)
from mlops_dagster.spec.source_map import Loc, SourceMap, format_loc

if TYPE_CHECKING:
    from mlops_dagster.environments import ActiveEnvironment

__all__ = [  # the inferred-check models and StrictModel live in their own modules, named here too
    "DomainCheckSpec",
    "InferredChecksSpec",
    "PresenceCheckSpec",
    "RangeCheckSpec",
    "StrictModel",
]

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
IMPORT_PATH_PATTERN = r"^[A-Za-z_][\w.]*([.:][A-Za-z_]\w*)$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=366)  # longer cooldowns and windows are typos (or `enabled: false`)
MAX_SAMPLES = 100_000_000  # a per-partition sample floor above this is never reached


def parse_duration(value: str | int | float) -> timedelta:
    """Parse `90s`, `30m`, `6h`, `1d`, `2w` (or a number of seconds) into a timedelta.

    Raises:
        ValueError: not a duration, not finite, or longer than `MAX_DURATION`.
    """
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite duration, got {value!r}")
        seconds, shown = float(value), repr(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"expected a duration like '30m', '6h' or '1d', got {value!r}")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        shown = repr(value.strip())
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"duration {shown} is longer than {MAX_DURATION.days}d, the longest accepted")
    return timedelta(seconds=seconds)


class Located(StrictModel):
    """A spec that knows where it was written, so that a check can report file:line and field."""

    _source_file: Path | None = PrivateAttr(None)
    _where: tuple[SourceMap, Loc] | None = PrivateAttr(None)  # (source map, field-path prefix) from YAML

    @property
    def source_file(self) -> Path | None:
        """The YAML file the spec came from (None for specs built in Python)."""
        return self._source_file

    def located(self, source_file: Path, source_map: SourceMap, prefix: Loc = ()) -> Self:
        """A copy that reports issues at `source_map`'s lines, its fields under `prefix`.

        Args:
            source_file: The file the spec was read from (relative paths resolve against its folder).
            source_map: Field path -> line of that file.
            prefix: The field path of this spec inside the file (for example `("feature_groups", 2)`).
        """
        clone = self.model_copy()
        clone._source_file = source_file
        clone._where = (source_map, prefix)
        return clone

    def issue(self, loc: Loc, message: str) -> SpecIssue:
        """An issue at field `loc` of this spec: file:line when read from YAML, `<spec NAME>` otherwise."""
        if self._where is None:
            return SpecIssue(f"<spec {getattr(self, 'name', '?')}>", None, format_loc(loc), message)
        source_map, prefix = self._where
        return source_map.issue((*prefix, *loc), message)

    def place(self, loc: Loc) -> str:
        """`file:line` of field `loc` (or `<spec NAME>`), to point at a second place in a message."""
        found = self.issue(loc, "")
        return f"{found.file}:{found.line}" if found.line else found.file

    def origin(self) -> tuple[str, Loc] | None:
        """The file and field path the spec was read from; None when built in Python."""
        return None if self._where is None else (self._where[0].file, self._where[1])


class SourceSpec(StrictModel):
    """Where the raw data comes from: exactly one of `uri`, `sql` or `python`."""

    uri: str | None = Field(None, description="Local path or s3:// URI of a .parquet or .csv file")
    sql: str | None = Field(None, description="A DuckDB query returning the dataset")
    python: str | None = Field(
        None,
        pattern=IMPORT_PATH_PATTERN,
        description="`module:function` taking the asset context and returning a DataFrame",
    )

    @field_validator("uri")
    @classmethod
    def _uri_extension(cls, value: str | None) -> str | None:
        if value and not value.split("?")[0].endswith((".parquet", ".csv")):
            raise ValueError(f"uri must end in .parquet or .csv: {value!r}")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> SourceSpec:
        given = [k for k in ("uri", "sql", "python") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of uri, sql, python (got {given or 'none'})")
        return self

    @property
    def kind(self) -> Literal["uri", "sql", "python"]:
        return "uri" if self.uri else "sql" if self.sql else "python"


class DailyPartitionsSpec(StrictModel):
    start: date
    end: date | None = Field(None, description="Exclusive end; open-ended (up to today) when absent")

    @field_validator("end")
    @classmethod
    def _ordered(cls, end: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("start")
        if end is not None and start is not None and end <= start:
            raise ValueError(f"end ({end}) must be after start ({start})")
        return end


class PartitionsSpec(StrictModel):
    daily: DailyPartitionsSpec


class DatasetSpec(StrictModel):
    source: SourceSpec
    partitions: PartitionsSpec | None = None
    entity: str = Field(description="Entity key column")
    timestamp: str = Field(description="Event-time column")
    label: str = Field(description="Target column")
    pii: list[str] = Field(
        default_factory=list,
        description="Columns holding personal data: never a model feature, masked in previews and logs",
    )

    @field_validator("timestamp", "label")
    @classmethod
    def _distinct_columns(cls, value: str, info: ValidationInfo) -> str:
        return _distinct(value, info)


def _distinct(value: str, info: ValidationInfo) -> str:
    """`timestamp` and `label` differ from the columns declared before them."""
    for other in ("entity", "timestamp"):
        if other != info.field_name and info.data.get(other) == value:
            raise ValueError(f"{info.field_name} and {other} must be different columns (both are {value!r})")
    return value


class ExpectationSpec(BaseModel):
    """A Great Expectations expectation: its snake_case type plus its keyword arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str = Field(pattern=r"^expect_[a-z0-9_]+$")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class FeedbackSpec(StrictModel):
    """Labels that arrive late: a source partitioned like the dataset, checked and quarantined like it."""

    source: SourceSpec
    entity: str = Field(description="Entity key column (joins with the predictions' entity)")
    timestamp: str = Field(description="Event-time column (joins with the predictions' timestamp)")
    label: str = Field(description="The observed outcome")
    expectations: list[ExpectationSpec] = Field(
        default_factory=list, description="Great Expectations expectations: blocking, as for the dataset"
    )

    @field_validator("timestamp", "label")
    @classmethod
    def _distinct_columns(cls, value: str, info: ValidationInfo) -> str:
        return _distinct(value, info)


class QualitySpec(StrictModel):
    expectations: list[ExpectationSpec] = Field(default_factory=list)
    allow_new_columns: bool = Field(
        False,
        description="Accept columns the champion was not trained with (the schema guard fails otherwise)",
    )
    allow_new_classes: bool = Field(
        False,
        description="Classification: accept label values the champion was not trained with (mlops_label)",
    )
    inferred: InferredChecksSpec = Field(default_factory=InferredChecksSpec)


class ModelSpec(StrictModel):
    task: Literal["classification", "regression"]
    estimator: str = Field(pattern=IMPORT_PATH_PATTERN, description="Import path of the estimator class")
    params: dict[str, Any] = Field(default_factory=dict)
    metric: str = Field(description="An sklearn scorer name (greater is better)")
    features: list[str] | None = Field(
        None,
        description="Dataset columns used as features; default all but entity, timestamp, label and pii",
    )
    holdout: float = Field(0.2, gt=0, lt=1, description="Latest fraction of rows (by timestamp) held out")


class GatesSpec(StrictModel):
    min: dict[str, float] = Field(default_factory=dict, description="Absolute floors on holdout scores")
    max_regression: float = Field(0.0, ge=0, description="Allowed drop against the current champion")


class DriftMonitoringSpec(StrictModel):
    enabled: bool = True
    max_drifted_share: float = Field(0.3, ge=0, le=1)
    cooldown: timedelta = timedelta(hours=6)
    methods: dict[str, str] = Field(
        default_factory=dict,
        description="Per-column drift method (chisquare, jensenshannon, ks, psi, wasserstein, z)",
    )
    thresholds: dict[str, float] = Field(
        default_factory=dict,
        description="Per-column drift threshold: a p-value below 1 (ks, chisquare, z) or a distance above 0",
    )

    @field_validator("cooldown", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return _bounded_duration(value)


def _bounded_duration(value: Any) -> Any:
    """A `before` validator body: a duration string or number of seconds, at most `MAX_DURATION`."""
    if isinstance(value, timedelta) and value > MAX_DURATION:
        raise ValueError(f"duration {value} is longer than {MAX_DURATION.days}d, the longest accepted")
    return parse_duration(value) if isinstance(value, str | int | float) else value


class PerformanceMonitoringSpec(StrictModel):
    """When live results (predictions joined with late labels) should roll the champion back.

    A partition breaches when its live metric is below `min`, or more than `max_drop` below the
    champion's own holdout score; `window` consecutive breaching partitions, each with at least
    `min_samples` labelled predictions, trigger the rollback. A partition with fewer labels is no
    evidence either way: it neither breaches nor breaks the run of breaches.
    """

    metric: str = Field(description="An sklearn scorer name (greater is better), scored live and on holdouts")
    min: float | None = Field(None, description="Absolute floor of the live metric")
    max_drop: float | None = Field(
        None, ge=0, description="Largest allowed drop of the live metric below the champion's holdout score"
    )
    window: int = Field(
        3, ge=1, le=366, description="Consecutive breaching partitions that trigger a rollback"
    )
    min_samples: int = Field(
        50, ge=1, le=MAX_SAMPLES, description="Labelled predictions a partition needs to count as evidence"
    )
    cooldown: timedelta = Field(timedelta(hours=6), description="Least time between two automatic rollbacks")

    @field_validator("cooldown", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return _bounded_duration(value)

    @model_validator(mode="after")
    def _some_threshold(self) -> Self:
        if self.min is None and self.max_drop is None:
            raise ValueError("give `min`, `max_drop` or both: without a threshold nothing is ever breached")
        return self


class MonitoringSpec(StrictModel):
    drift: DriftMonitoringSpec = Field(default_factory=DriftMonitoringSpec)
    performance: PerformanceMonitoringSpec | None = None
    quality_sensor: bool = True


class ParitySpec(StrictModel):
    """How closely the ONNX conversion must reproduce the champion on its holdout (`onnx_parity`)."""

    label_agreement: float = Field(
        0.999, gt=0, le=1, description="Classification: least share of rows with the champion's label"
    )
    proba_atol: float = Field(
        1e-4, ge=0, le=1, description="Classification: largest absolute difference of a class probability"
    )
    rtol: float = Field(1e-5, ge=0, le=1, description="Regression: largest relative error of a prediction")


class PredictionLogSpec(StrictModel):
    """Logging of what the served bento and the edge predictor predict (off by default).

    Rows go through a bounded in-memory queue to Parquet files under
    `<storage root>/<p>/predictions/served/`, written in the background: a full queue drops rows
    (counted), it never blocks or fails a request.
    """

    enabled: bool = False
    queue_size: int = Field(10_000, ge=1, le=10_000_000, description="Rows held in memory before dropping")
    flush_rows: int = Field(1_000, ge=1, le=10_000_000, description="Rows per Parquet file, at most")
    flush_interval: timedelta = Field(
        timedelta(seconds=10), description="Longest time a row waits in memory before it is written"
    )

    @field_validator("flush_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return _bounded_duration(value)


class ServingSpec(StrictModel):
    targets: list[Literal["cloud", "edge", "batch"]] = Field(
        default_factory=list,
        description=(
            "`cloud`: a bento; `edge`: an ONNX bundle; `batch`: `<p>/predictions`, the champion's "
            "predictions for each dataset partition"
        ),
    )
    prediction_log: PredictionLogSpec = Field(default_factory=PredictionLogSpec)
    parity: ParitySpec = Field(default_factory=ParitySpec)
    cloud_runtime: Literal["auto", "onnx", "sklearn"] = Field(
        "auto",
        description=(
            "What the cloud bento runs: `onnx` (the champion converted to ONNX and parity-checked on its "
            "holdout, served by onnxruntime; fails when that is not possible), `sklearn` (the pickled "
            "champion), or `auto` (onnx when conversion and parity succeed, else sklearn)"
        ),
    )
    workers: int = Field(1, ge=1, le=64, description="Worker processes of the cloud bento's server")
    containerize: bool = Field(
        False,
        description=(
            "Also build the cloud bento's image (`bentoml containerize`) in the run, when a Docker "
            "daemon answers; off: the bento and its Dockerfile are the deliverable"
        ),
    )


class FeatureGroupSpec(Located):
    """A feature group: one asset shared by every pipeline listed in `consumers`."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    inputs: list[str] = Field(min_length=1, description="Pipelines whose dataset the group reads")
    transform: str = Field(pattern=IMPORT_PATH_PATTERN)
    entity: str
    timestamp: str
    owners: list[str] = Field(default_factory=list)
    pii: list[str] = Field(
        default_factory=list,
        description="Columns holding personal data: hashed in the group's output, never a model feature",
    )
    consumers: list[str] = Field(default_factory=list)
    columns: list[str] | None = Field(
        None,
        description="Columns the transform must produce; those also in `pii` are hashed, not features",
    )
    quality: QualitySpec = Field(default_factory=QualitySpec)


class FeatureGroupsFile(StrictModel):
    feature_groups: list[FeatureGroupSpec]


class PipelineSpec(Located):
    """One model pipeline: dataset -> features -> training set -> candidate -> champion -> serving."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    owners: list[str] = Field(default_factory=list)
    dataset: DatasetSpec
    feedback: FeedbackSpec | None = None
    quality: QualitySpec = Field(default_factory=QualitySpec)
    features: list[str] = Field(default_factory=list)
    model: ModelSpec
    gates: GatesSpec = Field(default_factory=GatesSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)
    compute: dict[str, ComputeSpec] = Field(
        default_factory=dict,
        description="Per asset short name or `default`: cpu, memory and gpu its step asks for",
    )

    _feature_groups: tuple[FeatureGroupSpec, ...] = PrivateAttr(())
    _environment: ActiveEnvironment | None = PrivateAttr(None)

    @field_validator("compute")
    @classmethod
    def _compute_keys(cls, value: dict[str, ComputeSpec]) -> dict[str, ComputeSpec]:
        return check_compute_keys(value)

    @property
    def environment(self) -> ActiveEnvironment | None:
        """The environment the spec was built for (`build_definitions`); None outside one."""
        return self._environment

    @property
    def base_dir(self) -> Path:
        """Relative paths in the spec resolve against this folder."""
        return self._source_file.parent if self._source_file else Path.cwd()

    @property
    def feature_groups(self) -> tuple[FeatureGroupSpec, ...]:
        """The feature groups this pipeline consumes, attached by `resolve_specs` (and `load_specs`)."""
        return self._feature_groups

    @property
    def pii_columns(self) -> frozenset[str]:
        """Every column declared PII for this pipeline: `dataset.pii` and its feature groups' `pii`."""
        return frozenset(self.dataset.pii).union(*(g.pii for g in self._feature_groups))

    def with_feature_groups(self, groups: tuple[FeatureGroupSpec, ...]) -> PipelineSpec:
        """A copy with `groups` attached: the groups `features` names, in its order."""
        clone = self.model_copy()
        clone._source_file = self._source_file
        clone._where = self._where
        clone._feature_groups = groups
        clone._environment = self._environment
        return clone

    def in_environment(self, env: ActiveEnvironment, update: dict[str, Any]) -> PipelineSpec:
        """A copy with `update` applied (the environment's gates and compute) and `environment` set."""
        clone = self.model_copy(update=update)
        clone._source_file = self._source_file
        clone._where = self._where
        clone._feature_groups = self._feature_groups
        clone._environment = env
        return clone
