"""Personal data: the columns a spec declares `pii` are hashed where data is stored and masked where it
is shown (previews, check samples, quarantine reports), so raw values never leave the source.

Hashing is sha256 of the value's text, deterministic, so a hashed column still joins and counts; nulls
stay null. Masking replaces every non-null value with `MASK`. Pure pandas.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from typing import Any

import pandas as pd

MASK = "<pii>"


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # list-like values
        return False


def hash_value(value: Any) -> str | None:
    """The sha256 (hex) of a value's text; None for a null."""
    return None if _is_null(value) else hashlib.sha256(str(value).encode()).hexdigest()


def present(columns: Iterable[str], frame: pd.DataFrame) -> list[str]:
    """The declared columns that the frame holds, in the frame's order."""
    wanted = set(columns)
    return [str(c) for c in frame.columns if c in wanted]


def hash_columns(frame: pd.DataFrame, columns: Collection[str]) -> pd.DataFrame:
    """A copy of `frame` whose pii columns hold the sha256 of their values (as strings; nulls kept)."""
    found = present(columns, frame)
    if not found:
        return frame
    return frame.assign(**{c: frame[c].map(hash_value).astype("string") for c in found})


def mask_columns(frame: pd.DataFrame, columns: Collection[str]) -> pd.DataFrame:
    """A copy of `frame` for display: every non-null value of a pii column is `MASK`."""
    found = present(columns, frame)
    if not found:
        return frame
    return frame.assign(**{c: frame[c].map(lambda v: None if _is_null(v) else MASK) for c in found})


def mask_values(values: Iterable[Any]) -> list[Any]:
    """Sample values of a pii column, for display: `MASK` for each value (nulls kept)."""
    return [None if _is_null(v) else MASK for v in values]


def mask_records(rows: list[dict[str, Any]], columns: Collection[str]) -> list[dict[str, Any]]:
    """Row records (`DataFrame.to_dict("records")` style) with the pii columns' values masked."""
    wanted = set(columns)
    return [{k: (MASK if k in wanted and not _is_null(v) else v) for k, v in row.items()} for row in rows]
