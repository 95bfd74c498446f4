"""Feature transforms of the demo project (`feature_groups[].transform` in pipelines/*.yaml)."""

from __future__ import annotations

import numpy as np
import pandas as pd

ACTIVITY_INPUTS = ("customer_id", "event_time", "monthly_charges", "support_calls", "email")
ACTIVITY_COLUMNS = (
    "customer_id",
    "event_time",
    "avg_charges_7d",
    "support_calls_7d",
    "active_days_7d",
    "email",
)


def customer_activity(df: pd.DataFrame) -> pd.DataFrame:
    """Trailing-7-day activity per customer, point in time, for every row of the churn dataset.

    For a row (customer_id, event_time = t), using only that customer's rows at or before t
    (ties at exactly t included, so the result does not depend on row order):

    - avg_charges_7d:   mean of monthly_charges over the window (t - 7 days, t]
    - support_calls_7d: sum of support_calls over the same window
    - active_days_7d:   number of distinct calendar days with events among the 7 days ending on
                        t's day (t's own day counts, since the row itself is an event)

    Rows are kept one for one, in the input order and with the input index. Rows without a
    customer_id or event_time cannot be attributed and get NaN features. The three features are
    float64 (NaN-able).

    Raises:
        KeyError: naming the missing input column(s).
    """
    missing = [c for c in ACTIVITY_INPUTS if c not in df.columns]
    if missing:
        raise KeyError(f"customer_activity: missing input column(s) {missing}; got {list(df.columns)}")

    event_time = pd.to_datetime(df["event_time"])
    if getattr(event_time.dt, "tz", None) is not None:
        event_time = event_time.dt.tz_convert("UTC").dt.tz_localize(None)
    work = pd.DataFrame(
        {
            "customer_id": df["customer_id"].to_numpy(),
            "event_time": event_time.to_numpy(),
            "charges": pd.to_numeric(df["monthly_charges"], errors="coerce").to_numpy(dtype=np.float64),
            "calls": pd.to_numeric(df["support_calls"], errors="coerce").to_numpy(dtype=np.float64),
        }
    )  # positional RangeIndex: the input index may repeat (e.g. concatenated days)
    n = len(work)
    avg = np.full(n, np.nan)
    calls = np.full(n, np.nan)
    active = np.full(n, np.nan)

    known = work[work["customer_id"].notna() & work["event_time"].notna()]
    if len(known):
        srt = known.sort_values(["customer_id", "event_time"], kind="mergesort")
        # groupby(sort=False) over a frame sorted by customer keeps the rows in `srt` order.
        window = srt.groupby("customer_id", sort=False).rolling("7D", on="event_time", closed="right")
        mean_charges = window["charges"].mean()
        if not np.array_equal(mean_charges.index.get_level_values(-1), srt["event_time"].to_numpy()):
            raise RuntimeError("customer_activity: rolling output is not aligned with its input")
        rolled = pd.DataFrame({"charges": mean_charges.to_numpy(), "calls": window["calls"].sum().to_numpy()})
        # Ties (same customer, same instant): every tied row sees all of them -> take the last one's.
        keys = [srt["customer_id"].to_numpy(), srt["event_time"].to_numpy()]
        rolled = rolled.groupby(keys, sort=False).transform("last")

        # Distinct active days: one row per (customer, day), a 7-day rolling count over those days.
        per_row = pd.DataFrame(
            {
                "customer_id": srt["customer_id"].to_numpy(),
                "day": srt["event_time"].dt.normalize().to_numpy(),
                "one": 1.0,
            }
        )
        days = per_row.drop_duplicates(["customer_id", "day"], ignore_index=True)
        days = days.assign(
            active=days.groupby("customer_id", sort=False)
            .rolling("7D", on="day", closed="right")["one"]
            .sum()
            .to_numpy()
        )
        active_sorted = per_row.merge(
            days[["customer_id", "day", "active"]],
            on=["customer_id", "day"],
            how="left",
            validate="many_to_one",
        )["active"]

        pos = srt.index.to_numpy()
        avg[pos] = rolled["charges"].to_numpy()
        calls[pos] = rolled["calls"].to_numpy()
        active[pos] = active_sorted.to_numpy(dtype=np.float64)

    return pd.DataFrame(
        {
            "customer_id": df["customer_id"].to_numpy(),
            "event_time": event_time.to_numpy(),
            "avg_charges_7d": avg,
            "support_calls_7d": calls,
            "active_days_7d": active,
            "email": df["email"].to_numpy(),
        },
        index=df.index,
        columns=list(ACTIVITY_COLUMNS),
    )
