"""Evidently's data-drift report: the HTML a person reads and the numbers a check or sensor decides on.

`run_drift_report` runs Evidently's `DataDriftPreset` (the 0.7 API: `evidently.Report`,
`evidently.presets`) on a reference and a current DataFrame, saves the HTML report and the snapshot's
JSON next to each other, and returns a `DriftReportSummary` read back from that same JSON, so what a
check records and what a person opens can never disagree.

Where the numbers come from, in the snapshot JSON (`Snapshot.json()`):
- one `metrics` entry per tested column, `config.type == "evidently:metric_v2:ValueDrift"`, with
  `config.column`, `config.method` (the stat test Evidently chose, e.g. "K-S p_value"),
  `config.threshold` and `value` (the drift score);
- one `tests` entry per such metric (`metric_config.metric_id` is the metric's `id`) whose `status`
  is "FAIL" when the column drifted: Evidently's own decision, which knows whether the method is a
  p-value (drift below the threshold) or a distance (drift at or above it);
- the `DriftedColumnsCount` metric: `value.count`, `value.share`, `config.drift_share`, and its test
  ("share less than drift_share"), which fails when the dataset as a whole drifted.

Evidently is imported only inside the function that runs it (its import takes seconds), and its
telemetry lives in its UI service, which this path never imports: running a report touches no network.
"""

from __future__ import annotations

import html
import json
import math
import os
import uuid
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from upath import UPath

from mlops_dagster.errors import DataError, MlopsDagsterError

HTML_NAME = "report.html"
JSON_NAME = "report.json"

_VALUE_DRIFT = "evidently:metric_v2:ValueDrift"
_DRIFTED_COLUMNS_COUNT = "evidently:metric_v2:DriftedColumnsCount"
_FAILED = frozenset({"FAIL", "WARNING"})  # WARNING: a failed test Evidently was told is not critical
_MAX_LISTED_COLUMNS = 30


@dataclass(frozen=True)
class _Options:
    """How Evidently is told to test: per-column methods and thresholds, and the dataset drift share."""

    methods: dict[str, str]
    thresholds: dict[str, float]
    drift_share: float


@dataclass(frozen=True)
class ReportColumn:
    """Evidently's drift verdict on one column.

    Attributes:
        column: The column name.
        method: The stat test Evidently used, as it names it (e.g. "K-S p_value", "chi-square p_value").
        score: The test's score (a p-value or a distance, depending on `method`); None if not finite.
        threshold: The threshold the score was compared with.
        drifted: Evidently's decision for this column.
    """

    column: str
    method: str
    score: float | None
    threshold: float | None
    drifted: bool


@dataclass(frozen=True)
class DriftReportSummary:
    """What one drift report found, and where it was saved.

    Attributes:
        columns: One verdict per tested column, in the order they were tested.
        share_drifted: Evidently's share of drifted columns (0.0 to 1.0).
        dataset_drift: Evidently's dataset-level decision (share of drifted columns >= its drift_share).
        html_path: Where the HTML report was written.
        json_path: Where the snapshot JSON was written, if it was.
        rows_reference: Rows in the reference frame.
        rows_current: Rows in the current frame.
    """

    columns: list[ReportColumn]
    share_drifted: float
    dataset_drift: bool
    html_path: str
    json_path: str | None
    rows_reference: int
    rows_current: int

    @property
    def drifted_columns(self) -> list[str]:
        """Names of the columns Evidently found drifted."""
        return [c.column for c in self.columns if c.drifted]


def run_drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    out_dir: str | UPath,
    *,
    columns: list[str] | None = None,
    title: str = "",
    methods: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    drift_share: float = 0.5,
) -> DriftReportSummary:
    """Run Evidently's DataDriftPreset and save `out_dir/report.html` and `out_dir/report.json`.

    Args:
        reference: The data the model was trained on (or any baseline).
        current: The data to compare with it.
        out_dir: A local folder or an fsspec URL (memory://, s3://...); created if missing. Local
            files are written to a temporary file and renamed into place.
        columns: The columns to test. Default: every column present in both frames whose type
            Evidently can test (numerical, categorical or text; datetime columns are left out).
        title: Shown as the HTML page's title and stored as the snapshot's name.
        methods: Per column, the stat test Evidently runs instead of its default (our method names are
            Evidently's: "ks", "chisquare", "z", "wasserstein", "jensenshannon", "psi").
        thresholds: Per column, the threshold instead of the method's default.
        drift_share: Evidently's dataset rule: drift when at least this share of the columns drifted.
            A pipeline passes its `max_drifted_share`, so the HTML shows the same settings; the
            pipeline's own decision (`monitoring.decision.decide_drift`) is what its report records.

    Returns:
        The per-column verdicts and the dataset-level share and decision, read from the saved JSON.

    Raises:
        DataError: A frame is empty, the frames share no column, a requested column is missing or
            of a type Evidently cannot test, or Evidently rejects the data.
    """
    selected = _select_columns(reference, current, columns)
    options = _Options(dict(methods or {}), dict(thresholds or {}), drift_share)
    snapshot_json, page = _run_evidently(
        reference[selected], current[selected], selected, columns, title, options
    )

    verdicts, share, dataset_drift = _read_snapshot(json.loads(snapshot_json))

    out = UPath(out_dir)
    html_path, json_path = out / HTML_NAME, out / JSON_NAME
    _write_text(json_path, snapshot_json)
    _write_text(html_path, page)
    return DriftReportSummary(
        columns=verdicts,
        share_drifted=share,
        dataset_drift=dataset_drift,
        html_path=str(html_path),
        json_path=str(json_path),
        rows_reference=len(reference.index),
        rows_current=len(current.index),
    )


def _listed(names: Sequence[object]) -> str:
    shown = ", ".join(repr(str(n)) for n in names[:_MAX_LISTED_COLUMNS])
    more = len(names) - _MAX_LISTED_COLUMNS
    return f"[{shown}{f', ... {more} more' if more > 0 else ''}]"


def _select_columns(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str] | None) -> list[str]:
    """The columns to hand to Evidently; DataError for empty frames, no overlap, missing columns."""
    for name, frame in (("reference", reference), ("current", current)):
        if len(frame.index) == 0:
            raise DataError(f"drift report: the {name} data is empty (0 rows); nothing to compare.")
    if columns is None:
        in_current = set(current.columns)
        common = [c for c in reference.columns if c in in_current]
        if not common:
            raise DataError(
                "drift report: the reference and current data have no column in common. "
                f"reference columns: {_listed(list(reference.columns))}; "
                f"current columns: {_listed(list(current.columns))}."
            )
        return common
    selected = list(dict.fromkeys(columns))
    if not selected:
        raise DataError("drift report: `columns` is empty; pass None to test every common column.")
    for name, frame in (("reference", reference), ("current", current)):
        missing = [c for c in selected if c not in frame.columns]
        if missing:
            raise DataError(
                f"drift report: the {name} data has no column {_listed(missing)}; "
                f"its columns are {_listed(list(frame.columns))}."
            )
    return selected


def _run_evidently(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    selected: list[str],
    requested: list[str] | None,
    title: str,
    options: _Options,
) -> tuple[str, str]:
    """Run the preset; return the snapshot JSON and the standalone HTML page."""
    with warnings.catch_warnings():
        # Importing Evidently emits deprecation warnings from its dependencies; nothing for our users.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        from evidently import ColumnType, Dataset, Report
        from evidently.presets import DataDriftPreset

    # One data definition (inferred from the current data, as Evidently does) for both frames.
    current_ds = Dataset.from_pandas(current)
    definition = current_ds.data_definition
    reference_ds = Dataset.from_pandas(reference, data_definition=definition)
    kinds = {c: definition.get_column_type(c) for c in selected}
    testable = {ColumnType.Numerical, ColumnType.Categorical, ColumnType.Text}
    tested = _testable_columns({c: (k in testable, k.name.lower()) for c, k in kinds.items()}, requested)

    preset = DataDriftPreset(
        columns=tested,
        drift_share=options.drift_share,
        per_column_method={c: m for c, m in options.methods.items() if c in tested} or None,
        per_column_threshold={c: t for c, t in options.thresholds.items() if c in tested} or None,
    )
    report = Report([preset], include_tests=True)
    try:
        snapshot = report.run(current_ds, reference_ds, name=title or None)
    except ValueError as e:
        raise DataError(f"drift report: Evidently could not compare columns {_listed(tested)}: {e}") from e
    return snapshot.json(), _with_title(snapshot.get_html_str(as_iframe=False), title)


def _testable_columns(kinds: Mapping[str, tuple[bool, str]], requested: list[str] | None) -> list[str]:
    """Keep the columns whose inferred type Evidently tests; refuse untestable requested columns.

    `kinds` maps each selected column to (testable, Evidently's type name), in selection order.
    """
    selected = list(kinds)
    untestable = [c for c in selected if not kinds[c][0]]
    if requested is not None and untestable:
        described = ", ".join(f"{c!r} ({kinds[c][1]})" for c in untestable[:_MAX_LISTED_COLUMNS])
        raise DataError(
            f"drift report: Evidently cannot test drift on {described}; it tests numerical, "
            "categorical and text columns. Leave these out of `columns`."
        )
    tested = [c for c in selected if c not in untestable]
    if not tested:
        described = ", ".join(f"{c!r} ({kinds[c][1]})" for c in selected[:_MAX_LISTED_COLUMNS])
        raise DataError(
            f"drift report: no common column can be tested for drift: {described}. Evidently tests "
            "numerical, categorical and text columns."
        )
    return tested


def _with_title(page: str, title: str) -> str:
    if not title or "<head>" not in page:
        return page
    return page.replace("<head>", f"<head>\n    <title>{html.escape(title)}</title>", 1)


def _read_snapshot(payload: Mapping[str, Any]) -> tuple[list[ReportColumn], float, bool]:
    """Per-column verdicts, share of drifted columns and dataset decision from `Snapshot.json()`."""
    status_by_metric = {
        str(t["metric_config"]["metric_id"]): str(t["status"]) for t in payload.get("tests", [])
    }
    verdicts: list[ReportColumn] = []
    share: float | None = None
    dataset_drift: bool | None = None
    for metric in payload.get("metrics", []):
        config, metric_id = metric.get("config", {}), str(metric.get("id"))
        if config.get("type") == _VALUE_DRIFT:
            status = status_by_metric.get(metric_id)
            if status is None:
                column = config.get("column")
                raise MlopsDagsterError(
                    f"drift report: Evidently's snapshot has no drift test for column {column!r}; "
                    "this Evidently version is not supported (mlops_dagster expects evidently>=0.7,<0.8)."
                )
            verdicts.append(
                ReportColumn(
                    column=str(config["column"]),
                    method=str(config.get("method")),
                    score=_finite(metric.get("value")),
                    threshold=_finite(config.get("threshold")),
                    drifted=status in _FAILED,
                )
            )
        elif config.get("type") == _DRIFTED_COLUMNS_COUNT:
            share = float(metric["value"]["share"])
            status = status_by_metric.get(metric_id)
            dataset_drift = (
                status in _FAILED if status is not None else share >= float(config.get("drift_share", 0.5))
            )
    if share is None or dataset_drift is None:
        raise MlopsDagsterError(
            "drift report: Evidently's snapshot has no DriftedColumnsCount result; this Evidently "
            "version is not supported (mlops_dagster expects evidently>=0.7,<0.8)."
        )
    return verdicts, share, dataset_drift


def _finite(value: object) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


def _write_text(path: UPath, text: str) -> None:
    """Write a text file; locally via a temporary file renamed into place, so no reader sees half."""
    if _is_local(path):
        target = Path(path.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "x", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        f.write(text)
