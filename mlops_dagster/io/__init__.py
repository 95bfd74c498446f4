"""Storage: the Parquet IO manager (local or s3://) and where the library keeps its files."""

from mlops_dagster.io.parquet import ParquetIOManager, content_hash, default_storage_root
from mlops_dagster.io.storage import StorageError

__all__ = ["ParquetIOManager", "StorageError", "content_hash", "default_storage_root"]
