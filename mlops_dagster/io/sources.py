"""Reading a dataset from its declared source (uri | sql | python), and checking it against the spec."""

from __future__ import annotations

from typing import Any

import pandas as pd
from upath import UPath

from mlops_dagster.errors import DataError, TransformError
from mlops_dagster.spec.models import PipelineSpec
from mlops_dagster.spec.resolve import resolve_object


def resolve_uri(spec: PipelineSpec, partition: str | None) -> UPath:
    """The source URI for one partition; relative paths resolve against the spec file's folder."""
    uri = spec.dataset.source.uri or ""
    if "{partition}" in uri:
        if partition is None:
            raise DataError(
                f"{spec.name}: source uri {uri!r} has a {{partition}} placeholder but the dataset "
                "is not partitioned"
            )
        uri = uri.replace("{partition}", partition)
    path = UPath(uri)
    if path.protocol in ("", "file", "local") and not path.is_absolute():
        path = UPath(spec.base_dir / uri)
    return path


def _read_uri(spec: PipelineSpec, partition: str | None) -> pd.DataFrame:
    path = resolve_uri(spec, partition)
    if not path.exists():
        raise DataError(f"{spec.name}: source file {path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{spec.name}: source file {path} is empty (0 bytes)")
    try:
        with path.open("rb") as f:
            if path.name.endswith(".csv"):
                return pd.read_csv(f)
            return pd.read_parquet(f)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as e:
        raise DataError(f"{spec.name}: cannot read {path}: {e}") from e


def source_bytes(spec: PipelineSpec, partition: str | None) -> tuple[bytes | None, str]:
    """The raw bytes of a uri source (kept in quarantine when they cannot even be parsed)."""
    if spec.dataset.source.kind != "uri":
        return None, ""
    path = resolve_uri(spec, partition)
    if not path.exists():
        return None, ""
    with path.open("rb") as f:
        return f.read(), "".join(path.suffixes[-1:])


def _read_sql(spec: PipelineSpec, partition: str | None) -> pd.DataFrame:
    import duckdb

    query = spec.dataset.source.sql or ""
    if partition is not None:
        query = query.replace("{partition}", partition)
    try:
        relation = duckdb.sql(query)
    except duckdb.Error as e:
        raise DataError(f"{spec.name}: the source query failed: {e}") from e
    if relation is None:
        raise DataError(f"{spec.name}: the source query returned no result set (is it a SELECT?)")
    return relation.df()


# What a source callable raises when the batch it reads is unreadable (0 bytes, garbage, a truncated
# file): pyarrow's and pandas' read errors are ValueError / OSError subclasses. Anything else is a bug
# in the callable (a TransformError), not bad data.
UNREADABLE_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, EOFError)


def _call_python(spec: PipelineSpec, context: Any, partition: str | None) -> pd.DataFrame:
    path = spec.dataset.source.python or ""
    fn = resolve_object(path)
    which = f" for partition {partition}" if partition else ""
    try:
        df = fn(context)
    except UNREADABLE_ERRORS as e:
        raise DataError(
            f"{spec.name}: source {path} cannot read the batch{which}: {type(e).__name__}: {e}"
        ) from e
    except Exception as e:
        raise TransformError(f"{spec.name}: source {path} raised {type(e).__name__}: {e}") from e
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"{spec.name}: source {path} returned {type(df).__name__}{which}, expected a DataFrame"
        )
    return df


def read_source(spec: PipelineSpec, context: Any, partition: str | None) -> pd.DataFrame:
    """The batch of one partition.

    Raises:
        DataError: the batch cannot be read (missing, empty or unparsable file; a python source that
            failed to read it or returned no DataFrame; a failed query).
        TransformError: a python source raised something other than a read error (a bug in it).
    """
    kind = spec.dataset.source.kind
    if kind == "uri":
        return _read_uri(spec, partition)
    if kind == "sql":
        return _read_sql(spec, partition)
    return _call_python(spec, context, partition)
