"""Pydantic models for the declarative spec (CONTRACT.md section 2).

Every model forbids unknown keys. Models hold the spec only: resolving import paths (estimator,
transform, python source) happens in `resolve.py`, lazily, so loading a spec imports no ML library.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationInfo,
    field_validator,
    model_validator,
)

NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
IMPORT_PATH_PATTERN = r"^[A-Za-z_][\w.]*([.:][A-Za-z_]\w*)$"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_DURATION_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(value: str | int | float) -> timedelta:
    """Parse `90s`, `30m`, `6h`, `1d`, `2w` (or a number of seconds) into a timedelta."""
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"expected a duration like '30m', '6h' or '1d', got {value!r}")
    return timedelta(**{_DURATION_UNITS[match.group(2)]: float(match.group(1))})


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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

    @field_validator("timestamp", "label")
    @classmethod
    def _distinct_columns(cls, value: str, info: ValidationInfo) -> str:
        for other in ("entity", "timestamp"):
            if other != info.field_name and info.data.get(other) == value:
                raise ValueError(
                    f"{info.field_name} and {other} must be different columns (both are {value!r})"
                )
        return value


class ExpectationSpec(BaseModel):
    """A Great Expectations expectation: its snake_case type plus its keyword arguments."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str = Field(pattern=r"^expect_[a-z0-9_]+$")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class QualitySpec(StrictModel):
    expectations: list[ExpectationSpec] = Field(default_factory=list)
    allow_new_columns: bool = Field(
        False,
        description="Accept columns the champion was not trained with (the schema guard fails otherwise)",
    )


class ModelSpec(StrictModel):
    task: Literal["classification", "regression"]
    estimator: str = Field(pattern=IMPORT_PATH_PATTERN, description="Import path of the estimator class")
    params: dict[str, Any] = Field(default_factory=dict)
    metric: str = Field(description="An sklearn scorer name (greater is better)")
    features: list[str] | None = Field(
        None, description="Dataset columns used as features; default all but entity, timestamp, label"
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
        description="Per-column drift method (ks, chisquare, z, wasserstein, jensenshannon)",
    )
    thresholds: dict[str, float] = Field(default_factory=dict, description="Per-column drift threshold")

    @field_validator("cooldown", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str | int | float) else value


class PerformanceMonitoringSpec(StrictModel):
    metric: str
    min: float


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


class ServingSpec(StrictModel):
    targets: list[Literal["cloud", "edge"]] = Field(default_factory=list)
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


class FeatureGroupSpec(StrictModel):
    """A feature group: one asset shared by every pipeline listed in `consumers`."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    inputs: list[str] = Field(min_length=1, description="Pipelines whose dataset the group reads")
    transform: str = Field(pattern=IMPORT_PATH_PATTERN)
    entity: str
    timestamp: str
    owners: list[str] = Field(default_factory=list)
    pii: list[str] = Field(default_factory=list)
    consumers: list[str] = Field(default_factory=list)
    columns: list[str] | None = Field(None, description="Feature columns the transform must produce")
    quality: QualitySpec = Field(default_factory=QualitySpec)

    _source_file: Path | None = PrivateAttr(None)
    _where: Any = PrivateAttr(None)  # (SourceMap, field-path prefix) when loaded from YAML

    @property
    def source_file(self) -> Path | None:
        return self._source_file


class FeatureGroupsFile(StrictModel):
    feature_groups: list[FeatureGroupSpec]


class PipelineSpec(StrictModel):
    """One model pipeline: dataset -> features -> training set -> candidate -> champion -> serving."""

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    owners: list[str] = Field(default_factory=list)
    dataset: DatasetSpec
    quality: QualitySpec = Field(default_factory=QualitySpec)
    features: list[str] = Field(default_factory=list)
    model: ModelSpec
    gates: GatesSpec = Field(default_factory=GatesSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    serving: ServingSpec = Field(default_factory=ServingSpec)

    _source_file: Path | None = PrivateAttr(None)
    _feature_groups: tuple[FeatureGroupSpec, ...] = PrivateAttr(())
    _where: Any = PrivateAttr(None)  # (SourceMap, field-path prefix) when loaded from YAML

    @property
    def source_file(self) -> Path | None:
        """The YAML file the spec came from (None for specs built in Python)."""
        return self._source_file

    @property
    def base_dir(self) -> Path:
        """Relative paths in the spec resolve against this folder."""
        return self._source_file.parent if self._source_file else Path.cwd()

    @property
    def feature_groups(self) -> tuple[FeatureGroupSpec, ...]:
        """The feature groups this pipeline consumes, resolved by `load_specs`."""
        return self._feature_groups

    def with_feature_groups(self, groups: tuple[FeatureGroupSpec, ...]) -> PipelineSpec:
        clone = self.model_copy()
        clone._source_file = self._source_file
        clone._where = self._where
        clone._feature_groups = groups
        return clone
