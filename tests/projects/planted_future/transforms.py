"""Feature transform for the planted-future test.

Every feature row says when it became known (`known_at`, epoch seconds = its own timestamp). Besides an
honest row per event, the transform plants a row one hour after every event, and a row far after the
end of the data, both with a sentinel value.
"""

import pandas as pd

FUTURE_SENTINEL = 9_999.0


def _epoch(ts: pd.Series) -> pd.Series:
    return (ts - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)


def with_future_rows(df: pd.DataFrame) -> pd.DataFrame:
    honest = pd.DataFrame({"user": df["user"], "ts": df["ts"], "score_feature": df["score"].astype(float)})
    soon = honest.assign(ts=honest["ts"] + pd.Timedelta(hours=1, seconds=30), score_feature=FUTURE_SENTINEL)
    last = honest.groupby("user", as_index=False)["ts"].max()
    late = last.assign(ts=df["ts"].max() + pd.Timedelta(days=30), score_feature=-FUTURE_SENTINEL)
    out = pd.concat([honest, soon, late], ignore_index=True)
    return out.assign(known_at=_epoch(out["ts"]).astype(float))


def raises(df: pd.DataFrame) -> pd.DataFrame:
    raise RuntimeError("boom: upstream feature store unavailable")
