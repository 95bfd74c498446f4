"""Standard materialization metadata: row count, column schema, preview, metrics table."""

from __future__ import annotations

import warnings
from collections.abc import Collection
from typing import Any

import dagster as dg
import pandas as pd

from mlops_dagster.keys import Meta

PREVIEW_ROWS = 5


def frame_metadata(df: pd.DataFrame, pii: Collection[str] = ()) -> dict[str, Any]:
    """Row count, column schema and a preview of the first rows, with the `pii` columns masked."""
    from mlops_dagster.quality.pii import mask_columns

    schema = dg.TableSchema(columns=[dg.TableColumn(name=str(c), type=str(t)) for c, t in df.dtypes.items()])
    head = mask_columns(df.head(PREVIEW_ROWS), pii)
    return {
        "dagster/row_count": dg.MetadataValue.int(len(df)),
        "dagster/column_schema": schema,
        Meta.PREVIEW: dg.MetadataValue.md(
            head.to_markdown(index=False) if _has_tabulate() else head.to_string()
        ),
    }


def metrics_metadata(metrics: dict[str, float]) -> dict[str, Any]:
    table = dg.TableMetadataValue(
        records=[dg.TableRecord({"metric": k, "value": round(v, 6)}) for k, v in metrics.items()],
        schema=dg.TableSchema(columns=[dg.TableColumn("metric", "string"), dg.TableColumn("value", "float")]),
    )
    return {Meta.METRICS: dg.MetadataValue.json(metrics), Meta.METRICS_TABLE: table}


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def versioned_output(value: Any, metadata: dict[str, Any], data_version: str) -> dg.Output[Any]:
    """An Output carrying our content hash as its data version (a beta parameter we rely on on purpose)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return dg.Output(value, metadata=metadata, data_version=dg.DataVersion(data_version))
