"""Quarantine: batches that failed their blocking checks, kept aside (never lost) with the reason.

Layout, in the same storage as the data (local folder or s3://):
`<data root>/.quarantine/<asset/key/path>/<partition or __all__>/{data.parquet | source.<ext>, report.json}`.
`report.json` is written last, so an entry without it is incomplete and ignored. Feature groups and
training sets never read from here: the dataset asset writes a failed batch here *instead of* to its
normal location. Re-materializing the partition with good data releases the entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pandas as pd
from upath import UPath

from mlops_dagster.io.parquet import ParquetIOManager, read_parquet, write_parquet
from mlops_dagster.io.storage import remove_tree

QUARANTINE_DIR = ".quarantine"
UNPARTITIONED = "__all__"
REPORT = "report.json"
DATA = "data.parquet"


@dataclass(frozen=True)
class QuarantineEntry:
    asset_key: str
    partition: str | None
    path: str
    report: dict[str, Any]

    @property
    def reasons(self) -> list[str]:
        return list(self.report.get("reasons", []))

    @property
    def held_at(self) -> str:
        return str(self.report.get("held_at", ""))


def _json_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy Parquet can store: object columns holding mixed types become strings (nulls kept)."""
    fixed = {
        c: frame[c].map(lambda v: None if v is None or (isinstance(v, float) and pd.isna(v)) else str(v))
        for c in frame.columns
        if frame[c].dtype == object
    }
    return frame.assign(**fixed) if fixed else frame


class Quarantine:
    """Reads and writes quarantine entries under a data root."""

    def __init__(self, data_root: UPath):
        self.root = data_root / QUARANTINE_DIR

    @classmethod
    def for_io_manager(cls, io_manager: ParquetIOManager) -> Quarantine:
        return cls(io_manager.root())

    def entry_dir(self, key: dg.AssetKey, partition: str | None) -> UPath:
        return self.root.joinpath(*key.path, partition or UNPARTITIONED)

    def hold(
        self,
        key: dg.AssetKey,
        partition: str | None,
        report: dict[str, Any],
        *,
        frame: pd.DataFrame | None = None,
        raw: bytes | None = None,
        raw_suffix: str = "",
    ) -> UPath:
        """Keep a failed batch with its validation report; returns the entry's folder."""
        folder = self.entry_dir(key, partition)
        folder.mkdir(parents=True, exist_ok=True)
        stored: list[str] = []
        if frame is not None:
            if frame.columns.duplicated().any():  # Parquet needs unique names: number the repeats
                names = [
                    f"{c}__{i}" if frame.columns[:i].tolist().count(c) else str(c)
                    for i, c in enumerate(frame.columns)
                ]
                frame = frame.set_axis(names, axis=1)
                report = {**report, "note": "repeated column names were numbered to store the batch"}
            try:
                write_parquet(frame, folder / DATA)
            except (ValueError, TypeError, OverflowError, ImportError):
                # Mixed-type object columns (one of the things quarantine is for) cannot go to
                # Parquet as they are: keep them as text rather than lose the batch.
                write_parquet(_json_safe(frame), folder / DATA)
                report = {**report, "note": "object columns with mixed types were stored as text"}
            stored.append(DATA)
        if raw is not None:
            name = f"source{raw_suffix}"
            with (folder / name).open("wb") as f:
                f.write(raw)
            stored.append(name)
        full = {
            **report,
            "asset_key": key.to_user_string(),
            "partition": partition,
            "files": stored,
            "held_at": datetime.now(tz=UTC).isoformat(timespec="seconds"),
        }
        with (folder / REPORT).open("w") as f:
            f.write(json.dumps(full, indent=2, sort_keys=True, default=str))
        return folder

    def release(self, key: dg.AssetKey, partition: str | None) -> bool:
        """Drop the entry of a partition that has since passed; True if there was one."""
        folder = self.entry_dir(key, partition)
        if not (folder / REPORT).exists():
            return False
        (folder / REPORT).unlink()  # first: the entry stops counting even if the rest fails
        remove_tree(folder)  # on object stores too, where a "folder" is only a key prefix
        return True

    def entries(self, key: dg.AssetKey | None = None) -> list[QuarantineEntry]:
        base = self.root.joinpath(*key.path) if key else self.root
        if not base.exists():
            return []
        out = []
        for report_path in sorted(base.rglob(REPORT)):
            report = json.loads(report_path.read_text())
            out.append(
                QuarantineEntry(
                    asset_key=report.get("asset_key", ""),
                    partition=report.get("partition"),
                    path=str(report_path.parent),
                    report=report,
                )
            )
        return out

    def get(self, key: dg.AssetKey, partition: str | None) -> QuarantineEntry | None:
        folder = self.entry_dir(key, partition)
        if not (folder / REPORT).exists():
            return None
        report = json.loads((folder / REPORT).read_text())
        return QuarantineEntry(key.to_user_string(), partition, str(folder), report)

    def read(self, key: dg.AssetKey, partition: str | None) -> pd.DataFrame | None:
        path = self.entry_dir(key, partition) / DATA
        return read_parquet(path) if path.exists() else None

    def held_partitions(self, key: dg.AssetKey) -> set[str]:
        return {e.partition or UNPARTITIONED for e in self.entries(key)}
