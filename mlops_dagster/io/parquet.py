"""A Parquet IO manager over UPath: local folders by default, s3:// (or any fsspec URL) by config.

Layout: `<base>/<asset/key/path>/<partition>.parquet` for partitioned assets and
`<base>/<asset/key/path>/data.parquet` otherwise. Files are written through `mlops_dagster.io.storage`
(local writes go to a temporary file renamed into place, so a failed run never leaves a half-written
partition behind), and the other artifacts (quarantine, drift reports, edge bundles) live under the
same root (`root()`, `asset_dir()`), whose bucket must already exist.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field
from upath import UPath

from mlops_dagster.errors import DataError
from mlops_dagster.io.storage import check_root, existing_files, write_bytes


def default_storage_root() -> str:
    """The storage root of the process's environment (`environments.active()`): by default
    `$DAGSTER_HOME/mlops` when DAGSTER_HOME is set, else `./.mlops_dagster` in the working folder."""
    from mlops_dagster.environments import active

    return active().storage_root


def content_hash(df: pd.DataFrame) -> str:
    """A stable sha256 of a frame's columns, dtypes and values (independent of the Parquet writer)."""
    h = hashlib.sha256()
    h.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def write_parquet(df: pd.DataFrame, path: UPath) -> None:
    """Write one frame whole (see `storage.write_bytes`): readers never see a partial file."""
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    write_bytes(path, buf.getvalue())


def read_parquet(path: UPath) -> pd.DataFrame:
    with path.open("rb") as f:
        return pd.read_parquet(f)


class ParquetIOManager(dg.ConfigurableIOManager):
    """Stores DataFrames as Parquet under `base_path` (a local folder or an s3:// URL)."""

    base_path: str | None = Field(
        default=None, description="Folder or URL for asset data; default $DAGSTER_HOME/mlops/data"
    )

    def root(self) -> UPath:
        """The storage root every artifact goes under.

        Raises:
            StorageError: `base_path` names an object-store bucket that does not exist.
        """
        root = UPath(self.base_path) if self.base_path else UPath(default_storage_root()) / "data"
        check_root(root)
        return root

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
        present = existing_files(paths)
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
