"""Point-in-time correct joins: each label row sees only feature values known at its event time."""

from __future__ import annotations

import pandas as pd

from mlops_dagster.errors import DataError


def point_in_time_join(
    rows: pd.DataFrame,
    entity: str,
    timestamp: str,
    features: list[tuple[str, pd.DataFrame, str, str, list[str]]],
) -> pd.DataFrame:
    """As-of join of feature frames onto `rows` by entity, backwards in time.

    Args:
        rows: the label rows (entity, timestamp, label, ...).
        entity: entity column of `rows`.
        timestamp: event-time column of `rows`.
        features: (group name, frame, frame's entity column, frame's timestamp column, columns to take).
            For every row, the latest feature row of the same entity with timestamp <= the row's
            timestamp is taken; rows with none get nulls. Values from the future never match.
    """
    out = rows.sort_values(timestamp, kind="stable").reset_index(drop=True)
    for name, frame, f_entity, f_ts, columns in features:
        clash = [c for c in columns if c in out.columns]
        if clash:
            raise DataError(
                f"features/{name}: column(s) {clash} already exist in the training rows; rename them "
                "in the transform"
            )
        right = frame[[f_entity, f_ts, *columns]].rename(columns={f_entity: entity, f_ts: timestamp})
        right = right.dropna(subset=[entity, timestamp]).sort_values(timestamp, kind="stable")
        if right[entity].dtype != out[entity].dtype:
            try:
                right[entity] = right[entity].astype(out[entity].dtype)
            except (ValueError, TypeError) as e:
                raise DataError(
                    f"features/{name}: entity column {f_entity!r} ({right[entity].dtype}) cannot be "
                    f"matched to {entity!r} ({out[entity].dtype})"
                ) from e
        out = pd.merge_asof(
            out, right, on=timestamp, by=entity, direction="backward", allow_exact_matches=True
        )
    return out
