"""Run a quality spec's expectations on a DataFrame: one ephemeral GX context, one validation run.

The DataFrame is handed to Great Expectations by reference (it becomes the batch itself, never a
copy), every expectation goes into one suite validated in a single run, and the results come back
in the spec's order as plain, JSON-serialisable `ExpectationOutcome`s. Problems with the data
(an empty frame, a missing column) are failed outcomes with a message, not exceptions.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from mlops_dagster.quality.expectations import build_expectation, check_names, expectation_columns
from mlops_dagster.spec.models import ExpectationSpec

if TYPE_CHECKING:
    from great_expectations.core import ExpectationValidationResult
    from great_expectations.expectations import Expectation

SAMPLE_SIZE = 20
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": SAMPLE_SIZE}
_NAME = "mlops_dagster"  # datasource, asset, batch definition, suite and validation names
_MAX_LISTED_COLUMNS = 20


@dataclass(frozen=True)
class ExpectationOutcome:
    """The outcome of one expectation on one DataFrame; every value is JSON-serialisable.

    Attributes:
        check_name: The asset-check name (`check_names`), unique within the spec.
        expectation_type: The snake_case GX expectation type.
        column: The expectation's `column` argument, if it has one.
        success: Whether the expectation held (always False when `error` is set).
        observed_value: GX's observed value (aggregate expectations), else None.
        unexpected_count: Number of unexpected values (map expectations), else None.
        unexpected_percent: Their percentage of the non-null values, else None.
        unexpected_sample: Up to 20 unexpected values.
        result: GX's result dictionary, converted to JSON-serialisable values.
        error: Why the expectation could not be evaluated (for example a missing column), else None.
        config_error: The expectation itself cannot run (invalid arguments, Great Expectations raised):
            a problem of the spec, not of the data.
        missing_columns: The columns it names that the DataFrame lacks (the caller decides whether that
            is the data's fault or the spec's).
    """

    check_name: str
    expectation_type: str
    column: str | None
    success: bool
    observed_value: Any = None
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    unexpected_sample: list[Any] = field(default_factory=list)
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    config_error: bool = False
    missing_columns: list[str] = field(default_factory=list)


def to_jsonable(value: Any) -> Any:
    """Convert GX / numpy / pandas values to JSON: NaN and NaT become None, +-inf "inf"/"-inf",
    timestamps ISO-8601 strings, numpy scalars Python scalars, containers lists and str-keyed dicts."""
    if value is None or isinstance(value, bool | str | int) and not isinstance(value, np.generic):
        return value
    if isinstance(value, float):  # also numpy.float64, a float subclass
        if math.isnan(value):
            return None
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else float(value)
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).isoformat()
    if isinstance(value, np.timedelta64):
        return None if np.isnat(value) else pd.Timedelta(value).isoformat()
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, pd.Timedelta):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return pd.Timedelta(value).isoformat()
    if isinstance(value, Decimal):
        return to_jsonable(float(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray | pd.Series | pd.Index):
        return [to_jsonable(v) for v in value]
    if hasattr(value, "to_json_dict"):  # GX result objects
        return to_jsonable(value.to_json_dict())
    return str(value)


def _failed(name: str, expectation: ExpectationSpec, error: str, config: bool = False) -> ExpectationOutcome:
    return ExpectationOutcome(
        check_name=name,
        expectation_type=expectation.type,
        column=_column(expectation),
        success=False,
        error=error,
        config_error=config,
    )


def _column(expectation: ExpectationSpec) -> str | None:
    column = expectation.kwargs.get("column")
    return column if isinstance(column, str) else None


def _exception_message(info: Any) -> str | None:
    """GX reports an exception either as one flat dict or as one dict per failed metric."""
    if not isinstance(info, Mapping):
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message") or "an exception") if info.get("raised_exception") else None
    for value in info.values():
        message = _exception_message(value)
        if message:
            return message
    return None


def _describe_columns(df: pd.DataFrame) -> str:
    names = [str(c) for c in df.columns[:_MAX_LISTED_COLUMNS]]
    more = len(df.columns) - len(names)
    return ", ".join(names) + (f" and {more} more" if more > 0 else "")


def _outcome(
    name: str, expectation: ExpectationSpec, result: ExpectationValidationResult, df: pd.DataFrame
) -> ExpectationOutcome:
    raw = dict(result.result or {})
    error = _exception_message(result.exception_info)
    missing: list[Any] = []
    config = False
    if error is not None:
        missing = [c for c in expectation_columns(expectation.kwargs) if _hashable(c) and c not in df.columns]
        if missing:
            listed = ", ".join(repr(c) for c in missing)
            error = (
                f"{expectation.type}: column{'s' if len(missing) > 1 else ''} {listed} not in the DataFrame "
                f"(columns: {_describe_columns(df)})"
            )
        else:
            not_numbers = _not_numbers(expectation, df)
            if not_numbers is not None:
                column, dtype, values = not_numbers
                raw = {
                    "unexpected_count": len(values),
                    "unexpected_percent": 100.0 * len(values) / max(1, int(df[column].notna().sum())),
                    "partial_unexpected_list": values[:SAMPLE_SIZE].tolist(),
                }
                error = (
                    f"{expectation.type}: column {column!r} is {dtype}, not numeric: {len(values)} value(s) "
                    f"are not numbers (e.g. {', '.join(repr(v) for v in values[:3].tolist())}), so it cannot "
                    f"be compared with numeric bounds (Great Expectations raised: {error})"
                )
            else:
                error = f"{expectation.type}: Great Expectations raised: {error}"
                config = True
    count, percent = raw.get("unexpected_count"), to_jsonable(raw.get("unexpected_percent"))
    sample = to_jsonable(raw.get("partial_unexpected_list") or [])[:SAMPLE_SIZE]
    return ExpectationOutcome(
        check_name=name,
        expectation_type=expectation.type,
        column=_column(expectation),
        success=bool(result.success) and error is None,
        observed_value=to_jsonable(raw.get("observed_value")),
        unexpected_count=None if count is None else int(count),
        unexpected_percent=float(percent) if isinstance(percent, int | float) else None,
        unexpected_sample=sample,
        result=to_jsonable(raw),
        error=error,
        config_error=config,
        missing_columns=[str(c) for c in missing],
    )


def _not_numbers(expectation: ExpectationSpec, df: pd.DataFrame) -> tuple[str, str, Any] | None:
    """(column, dtype, the values that are not numbers) when an expectation with numeric bounds met a
    column that is not numeric (a batch whose numbers arrived as text), else None."""
    column = _column(expectation)
    if column is None or column not in df.columns:
        return None
    bounds = [expectation.kwargs.get(k) for k in ("min_value", "max_value", "value")]
    if not any(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds):
        return None
    series = df[column]
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return None
    present = series[series.notna()]
    # By type, not by content: "12" is text here (GX compares it with a number and fails) even though
    # it would parse as one.
    values = present[~present.map(_is_number).astype(bool)].to_numpy()
    return (column, str(series.dtype), values) if len(values) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating | Decimal) and not isinstance(value, bool)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _current_context() -> Any:
    """The context GX's process-global project manager holds, or None."""
    from great_expectations.data_context import project_manager

    try:
        return project_manager.get_current_project()
    except Exception:  # DataContextRequiredError: no context yet in this process
        return None


def _validate(df: pd.DataFrame, expectations: list[Expectation]) -> list[ExpectationValidationResult]:
    """Validate every expectation on `df` in one GX validation run; results in the given order."""
    import great_expectations as gx
    from great_expectations.data_context import set_context
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    previous = _current_context()
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    try:
        datasource = context.data_sources.add_pandas(name=_NAME)
        batch_definition = datasource.add_dataframe_asset(name=_NAME).add_batch_definition_whole_dataframe(
            _NAME
        )
        suite = context.suites.add(gx.ExpectationSuite(name=_NAME, expectations=expectations))
        ids = [e.id for e in suite.expectations]  # assigned by the suite store, in the given order
        validation = context.validation_definitions.add(
            gx.ValidationDefinition(name=_NAME, data=batch_definition, suite=suite)
        )
        run = validation.run(batch_parameters={"dataframe": df}, result_format=RESULT_FORMAT)
    finally:
        # GX keeps the last context as a process global: drop the datasource, whose execution
        # engine holds the DataFrame, and give the global back to whoever held it before.
        if _NAME in context.data_sources.all():
            context.data_sources.delete(_NAME)
        if _current_context() is context:
            set_context(previous)
    by_id = {r.expectation_config.id: r for r in run.results if r.expectation_config is not None}
    return [by_id[i] for i in ids]


def run_expectations(df: pd.DataFrame, expectations: Sequence[ExpectationSpec]) -> list[ExpectationOutcome]:
    """Evaluate the expectations on a DataFrame with Great Expectations (imported here).

    One ephemeral GX context per call, one pandas datasource whose batch is `df` itself (not a
    copy), one suite holding every expectation, one validation run. Nothing outlives the call.

    Args:
        df: The batch to check.
        expectations: The expectations of one asset's quality spec.

    Returns:
        One outcome per expectation, in order, named by `check_names(expectations)`. An empty
        DataFrame fails every expectation; a missing column, an expectation GX cannot evaluate or
        one whose spec is invalid fails that expectation; each with `error` saying why.
    """
    expectations = list(expectations)
    names = check_names(expectations)
    if not expectations:
        return []
    if len(df.index) == 0:
        error = f"the DataFrame is empty (0 rows, {len(df.columns)} columns): nothing to check"
        return [_failed(n, e, error) for n, e in zip(names, expectations, strict=True)]
    built: dict[int, Expectation] = {}
    outcomes: dict[int, ExpectationOutcome] = {}
    for i, (name, expectation) in enumerate(zip(names, expectations, strict=True)):
        try:
            built[i] = build_expectation(expectation)
        except ValueError as e:  # validate_deep catches these at load time; specs built in code may not
            outcomes[i] = _failed(name, expectation, f"invalid expectation: {e}", config=True)
    if built:
        results = _validate(df, list(built.values()))
        for (i, _), result in zip(built.items(), results, strict=True):
            outcomes[i] = _outcome(names[i], expectations[i], result, df)
    return [outcomes[i] for i in range(len(expectations))]
