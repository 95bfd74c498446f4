"""Reading a batch from a declared source (uri | sql | python): the dataset's, or the feedback's.

A `BatchSource` is a `SourceSpec` together with whose it is (named in every error) and the folder its
relative paths resolve against; `BatchSource.dataset(spec)` and `BatchSource.feedback(spec)` build one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from upath import UPath

from mlops_dagster.errors import DataError, TransformError
from mlops_dagster.spec.models import PipelineSpec, SourceSpec
from mlops_dagster.spec.resolve import resolve_object


@dataclass(frozen=True)
class BatchSource:
    """A declared source: `owner` names it in errors (`churn`, `churn feedback`)."""

    owner: str
    source: SourceSpec
    base_dir: Path

    @classmethod
    def dataset(cls, spec: PipelineSpec) -> BatchSource:
        return cls(spec.name, spec.dataset.source, spec.base_dir)

    @classmethod
    def feedback(cls, spec: PipelineSpec) -> BatchSource:
        """The `feedback:` block's source.

        Raises:
            ValueError: the spec declares no feedback.
        """
        if spec.feedback is None:
            raise ValueError(f"{spec.name}: the spec declares no feedback")
        return cls(f"{spec.name} feedback", spec.feedback.source, spec.base_dir)

    @property
    def kind(self) -> str:
        return self.source.kind


def resolve_uri(source: BatchSource, partition: str | None) -> UPath:
    """The source URI for one partition; relative paths resolve against the spec file's folder."""
    uri = source.source.uri or ""
    if "{partition}" in uri:
        if partition is None:
            raise DataError(
                f"{source.owner}: source uri {uri!r} has a {{partition}} placeholder but the dataset "
                "is not partitioned"
            )
        uri = uri.replace("{partition}", partition)
    path = UPath(uri)
    if path.protocol in ("", "file", "local") and not path.is_absolute():
        path = UPath(source.base_dir / uri)
    return path


def _read_uri(source: BatchSource, partition: str | None) -> pd.DataFrame:
    path = resolve_uri(source, partition)
    if not path.exists():
        raise DataError(f"{source.owner}: source file {path} does not exist")
    if path.stat().st_size == 0:
        raise DataError(f"{source.owner}: source file {path} is empty (0 bytes)")
    try:
        with path.open("rb") as f:
            if path.name.endswith(".csv"):
                return pd.read_csv(f)
            return pd.read_parquet(f)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as e:
        raise DataError(f"{source.owner}: cannot read {path}: {e}") from e


def source_bytes(source: BatchSource, partition: str | None) -> tuple[bytes | None, str]:
    """The raw bytes of a uri source (kept in quarantine when they cannot even be parsed)."""
    if source.kind != "uri":
        return None, ""
    path = resolve_uri(source, partition)
    if not path.exists():
        return None, ""
    with path.open("rb") as f:
        return f.read(), "".join(path.suffixes[-1:])


def _read_sql(source: BatchSource, partition: str | None) -> pd.DataFrame:
    import duckdb

    query = source.source.sql or ""
    if partition is not None:
        query = query.replace("{partition}", partition)
    try:
        relation = duckdb.sql(query)
    except duckdb.Error as e:
        raise DataError(f"{source.owner}: the source query failed: {e}") from e
    if relation is None:
        raise DataError(f"{source.owner}: the source query returned no result set (is it a SELECT?)")
    return relation.df()


# What a source callable raises when the batch it reads is unreadable (0 bytes, garbage, a truncated
# file): pyarrow's and pandas' read errors are ValueError / OSError subclasses. Anything else is a bug
# in the callable (a TransformError), not bad data.
UNREADABLE_ERRORS: tuple[type[Exception], ...] = (OSError, ValueError, EOFError)


def _call_python(source: BatchSource, context: Any, partition: str | None) -> pd.DataFrame:
    path = source.source.python or ""
    fn = resolve_object(path)
    which = f" for partition {partition}" if partition else ""
    try:
        df = fn(context)
    except UNREADABLE_ERRORS as e:
        raise DataError(
            f"{source.owner}: source {path} cannot read the batch{which}: {type(e).__name__}: {e}"
        ) from e
    except Exception as e:
        raise TransformError(f"{source.owner}: source {path} raised {type(e).__name__}: {e}") from e
    if not isinstance(df, pd.DataFrame):
        raise DataError(
            f"{source.owner}: source {path} returned {type(df).__name__}{which}, expected a DataFrame"
        )
    return df


def read_source(source: BatchSource, context: Any, partition: str | None) -> pd.DataFrame:
    """The batch of one partition.

    Raises:
        DataError: the batch cannot be read (missing, empty or unparsable file; a python source that
            failed to read it or returned no DataFrame; a failed query).
        TransformError: a python source raised something other than a read error (a bug in it).
    """
    if source.kind == "uri":
        return _read_uri(source, partition)
    if source.kind == "sql":
        return _read_sql(source, partition)
    return _call_python(source, context, partition)
