"""A Parquet IO manager over UPath: local folders by default, s3:// (or any fsspec URL) by config.

Layout: `<base>/<asset/key/path>/<partition>.parquet` for partitioned assets and
`<base>/<asset/key/path>/data.parquet` otherwise. Local writes go to a temporary file first and are
renamed into place, so a failed run never leaves a half-written partition behind.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field
from upath import UPath

from mlops_dagster.errors import DataError


def default_storage_root() -> str:
    """`$DAGSTER_HOME/mlops` when DAGSTER_HOME is set, else `./.mlops_dagster` in the working folder."""
    home = os.environ.get("DAGSTER_HOME")
    return str(Path(home) / "mlops") if home else str(Path.cwd() / ".mlops_dagster")


def content_hash(df: pd.DataFrame) -> str:
    """A stable sha256 of a frame's columns, dtypes and values (independent of the Parquet writer)."""
    h = hashlib.sha256()
    h.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def _is_local(path: UPath) -> bool:
    return path.protocol in ("", "file", "local")


def write_parquet(df: pd.DataFrame, path: UPath) -> None:
    """Write one frame; locally via a temp file + rename so readers never see a partial file."""
    if _is_local(path):
        target = Path(path.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                df.to_parquet(f, index=False)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(buf.getvalue())


def read_parquet(path: UPath) -> pd.DataFrame:
    with path.open("rb") as f:
        return pd.read_parquet(f)


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores DataFrames as Parquet under `base_path` (a local folder or an s3:// URL)."""

    base_path: str | None = Field(
        default=None, description="Folder or URL for asset data; default $DAGSTER_HOME/mlops/data"
    )

    def root(self) -> UPath:
        return UPath(self.base_path) if self.base_path else UPath(default_storage_root()) / "data"

    def asset_dir(self, key: dg.AssetKey) -> UPath:
        return self.root().joinpath(*key.path)

    def path_for(self, key: dg.AssetKey, partition: str | None) -> UPath:
        return self.asset_dir(key) / (f"{partition}.parquet" if partition else "data.parquet")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        key = context.asset_key
        if context.has_asset_partitions:
            keys = context.asset_partition_keys
            if isinstance(obj, dict):
                frames = obj
            elif len(keys) == 1:
                frames = {keys[0]: obj}
            else:
                raise DataError(
                    f"{key.to_user_string()}: a run over {len(keys)} partitions must return a "
                    "dict of partition key -> DataFrame"
                )
            for partition, frame in frames.items():
                write_parquet(_check_frame(key, frame), self.path_for(key, partition))
        else:
            write_parquet(_check_frame(key, obj), self.path_for(key, None))

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        key = context.asset_key
        if not context.has_asset_partitions:
            path = self.path_for(key, None)
            if not path.exists():
                raise DataError(f"{key.to_user_string()} has not been materialized yet (no {path})")
            return read_parquet(path)
        wanted = context.asset_partition_keys
        paths = [self.path_for(key, p) for p in wanted]
        present = [p for p in paths if p.exists()]
        if not present:
            raise DataError(
                f"{key.to_user_string()}: none of the {len(wanted)} requested partitions has "
                "been materialized"
            )
        if len(present) < len(paths) and len(wanted) > 1:
            context.log.info(
                f"{key.to_user_string()}: reading {len(present)} of {len(wanted)} partitions "
                "(the rest are not materialized)"
            )
        if len(wanted) == 1 and not present:
            raise DataError(f"{key.to_user_string()} partition {wanted[0]} is not materialized")
        return pd.concat([read_parquet(p) for p in present], ignore_index=True)


def _check_frame(key: dg.AssetKey, obj: Any) -> pd.DataFrame:
    if not isinstance(obj, pd.DataFrame):
        raise DataError(
            f"{key.to_user_string()}: expected a pandas DataFrame, got {type(obj).__name__} "
            "(this IO manager stores Parquet only, never pickles)"
        )
    return obj
