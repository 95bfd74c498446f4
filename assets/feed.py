"""A deterministic, seeded synthetic data feed for the `churn` and `demand` demo pipelines.

The feed simulates one batch per pipeline per day over the calendar 2026-01-01 .. 2026-06-30.
`generate_batch` is pure: the same (pipeline, day, scenario) always gives an equal frame, seeded
from `zlib.crc32` (never Python's salted `hash()`). Customers come from a fixed pool of 2,000 whose
region, plan and base tenure/charges are stable across days and shared by both pipelines.

Scenarios:
    normal            the reference distribution.
    drift             clear covariate shift (churn: charges +40%, tenure halved, plan mix moved to
                      basic, support calls doubled; demand: price +50%, promo share 20% -> 60%) and a
                      slight change in the label relationship.
    quality_incident  ~5% null customer_id (the column becomes float64), tenure_months (churn) or
                      price (demand) turned into strings (dtype object), and out-of-range values
                      (tenure -5 / 9999, negative prices).

A bad release (the demo's last day): `restate_with_leak` re-delivers the churn history with
`support_calls` computed after the fact (customers who churned show the calls they made while leaving),
a leak present only in the training data: a model trained on it looks excellent on its holdout and
does badly on live batches, where the column is honest again. `load_churn_feedback` gives the late
labels of a day's batch (the true outcomes, the same before and after a restatement).

The landing folder is the record of what arrived: `landing/<pipeline>/<YYYY-MM-DD>.parquet`, each
written atomically. A simulated clock lives in `feed_state.json` next to it:
`{"today": "YYYY-MM-DD", "scenarios": {"YYYY-MM-DD": "normal" | "drift" | ..., ...}}`.

CLI (from the repo root):
    python -m assets.feed bootstrap --days 28
    python -m assets.feed advance --scenario drift
    python -m assets.feed status
"""

from __future__ import annotations

import argparse
import json
import os
import zlib
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

PIPELINES = ("churn", "demand")
SCENARIOS = ("normal", "drift", "quality_incident")
START = date(2026, 1, 1)
END = date(2026, 6, 30)  # last simulated day (the partitions' exclusive end is 2026-07-01)
N_CUSTOMERS = 2_000
PLANS = ("basic", "standard", "premium")
REGIONS = ("north", "south", "east", "west")
REPO_ROOT = Path(__file__).resolve().parents[1]

_NS_PER_DAY = 86_400 * 10**9


# --------------------------------------------------------------------------------------------
# Pure generation
# --------------------------------------------------------------------------------------------


def _as_date(day: date | datetime | str | pd.Timestamp) -> date:
    if isinstance(day, pd.Timestamp | datetime):
        return day.date()
    if isinstance(day, date):
        return day
    if isinstance(day, str):
        try:
            return date.fromisoformat(day.strip()[:10])
        except ValueError as e:
            raise ValueError(f"expected a day as 'YYYY-MM-DD', got {day!r}") from e
    raise TypeError(f"expected a date or 'YYYY-MM-DD' string, got {type(day).__name__}: {day!r}")


def _check(pipeline: str, scenario: str) -> None:
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}: valid pipelines are {', '.join(PIPELINES)}")
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}: valid scenarios are {', '.join(SCENARIOS)}")


def _seed(*parts: object) -> int:
    return zlib.crc32(":".join(str(p) for p in parts).encode("utf-8"))


@lru_cache(maxsize=1)
def _pool() -> dict[str, np.ndarray]:
    """The fixed customer pool: stable per-customer attributes shared by both pipelines."""
    rng = np.random.default_rng(_seed("customer-pool", N_CUSTOMERS))
    plan = rng.choice(len(PLANS), size=N_CUSTOMERS, p=[0.40, 0.35, 0.25])
    base_low = np.array([20.0, 50.0, 90.0])[plan]
    base_high = np.array([70.0, 110.0, 150.0])[plan]
    return {
        "customer_id": np.arange(100_001, 100_001 + N_CUSTOMERS, dtype=np.int64),
        "plan": plan,
        "region": rng.integers(0, len(REGIONS), size=N_CUSTOMERS),
        "tenure": rng.integers(0, 115, size=N_CUSTOMERS),
        "charges": rng.uniform(base_low, base_high),
        "call_rate": rng.gamma(shape=3.0, scale=0.5, size=N_CUSTOMERS),  # mean 1.5 calls
    }


def _sample_rows(rng: np.random.Generator, day: date, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Customer indices and sorted event times (UTC-naive, within `day`) for one batch."""
    idx = rng.integers(0, N_CUSTOMERS, size=rows)
    offsets = np.sort(rng.integers(0, _NS_PER_DAY, size=rows))
    times = np.datetime64(day.isoformat(), "ns") + offsets.astype("timedelta64[ns]")
    return idx, times


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _churn(rng: np.random.Generator, day: date, rows: int, drift: bool) -> pd.DataFrame:
    pool = _pool()
    idx, times = _sample_rows(rng, day, rows)
    months = max(0, (day - START).days // 30)
    tenure = np.clip(pool["tenure"][idx] + months, 0, 120)
    plan = pool["plan"][idx].copy()
    charges = pool["charges"][idx] * rng.normal(1.0, 0.05, size=rows)
    call_rate = pool["call_rate"][idx]
    if drift:
        charges = charges * 1.4
        tenure = tenure // 2
        plan = np.where(rng.random(rows) < 0.5, 0, plan)  # half the non-basic customers move to basic
        call_rate = call_rate * 2.0
    charges = np.round(np.clip(charges, 20.0, 150.0 * (1.4 if drift else 1.0)), 2)
    calls = np.clip(rng.poisson(call_rate), 0, 10).astype(np.int64)
    region = pool["region"][idx]
    is_basic = (plan == 0).astype(float)
    is_premium = (plan == 2).astype(float)
    if not drift:
        logit = (
            -1.5
            + 0.60 * (calls - 1.5)
            - 0.035 * (tenure - 55)
            + 0.025 * (charges - 80)
            + 0.9 * is_basic
            - 0.4 * is_premium
        )
    else:  # a slightly different relationship: calls matter less, the south region starts churning
        logit = (
            -2.6
            + 0.45 * (calls - 1.5)
            - 0.035 * (tenure - 55)
            + 0.015 * (charges - 80)
            + 0.9 * is_basic
            - 0.4 * is_premium
            + 0.6 * (region == 1)
        )
    churned = (rng.random(rows) < _sigmoid(logit)).astype(np.int64)
    customer_id = pool["customer_id"][idx]
    return pd.DataFrame(
        {
            "customer_id": customer_id,
            "event_time": times,
            "tenure_months": tenure.astype(np.int64),
            "monthly_charges": charges.astype(np.float64),
            "support_calls": calls,
            "plan": np.array(PLANS, dtype=object)[plan],
            "region": np.array(REGIONS, dtype=object)[region],
            "email": [f"user{c}@example.com" for c in customer_id],
            "churned": churned,
        }
    )


def _demand(rng: np.random.Generator, day: date, rows: int, drift: bool) -> pd.DataFrame:
    pool = _pool()
    idx, times = _sample_rows(rng, day, rows)
    price = rng.uniform(5.0, 50.0, size=rows) * (1.5 if drift else 1.0)
    promo = (rng.random(rows) < (0.6 if drift else 0.2)).astype(np.int64)
    dow = np.full(rows, day.weekday(), dtype=np.int64)  # Monday=0 .. Sunday=6, as pandas dayofweek
    plan = pool["plan"][idx]
    elasticity = -0.45 if drift else -0.60
    units = (
        40.0
        + elasticity * price
        + 8.0 * promo
        + np.array([0.0, 3.0, 6.0])[plan]
        + 0.5 * dow
        + rng.normal(0.0, 6.0, size=rows)
    )
    return pd.DataFrame(
        {
            "customer_id": pool["customer_id"][idx],
            "event_time": times,
            "price": np.round(price, 2),
            "promo": promo,
            "day_of_week": dow,
            "plan": np.array(PLANS, dtype=object)[plan],
            "units": np.round(np.clip(units, 0.0, None), 1),
        }
    )


def _corrupt(rng: np.random.Generator, df: pd.DataFrame, pipeline: str) -> pd.DataFrame:
    """A quality incident: null keys, a dtype change to object, out-of-range values."""
    df = df.copy()
    n = len(df)
    null_ids = rng.random(n) < 0.05
    df["customer_id"] = df["customer_id"].astype(np.float64).mask(null_ids)
    bad = rng.random(n) < 0.04
    if pipeline == "churn":
        values = df["tenure_months"].to_numpy().copy()
        values[bad] = rng.choice(np.array([-5, 9999]), size=int(bad.sum()))
        df["tenure_months"] = pd.Series(values.astype(str), index=df.index, dtype=object)
    else:
        values = df["price"].to_numpy().copy()
        values[bad] = -values[bad]
        df["price"] = pd.Series([f"{v:.2f}" for v in values], index=df.index, dtype=object)
    return df


def generate_batch(pipeline: str, day: date | str, scenario: str = "normal", rows: int = 300) -> pd.DataFrame:
    """One day's batch for `pipeline` ("churn" or "demand") under `scenario`.

    Pure and deterministic: the seed is `zlib.crc32(f"{pipeline}:{day}:{scenario}")` (and `rows`
    when it is not the default 300), so equal inputs give equal frames in any process.

    Raises:
        ValueError: for an unknown pipeline or scenario (naming the valid ones), or `rows` < 1.
    """
    _check(pipeline, scenario)
    the_day = _as_date(day)
    if rows < 1:
        raise ValueError(f"rows must be >= 1, got {rows}")
    key = f"{pipeline}:{the_day.isoformat()}:{scenario}" + ("" if rows == 300 else f":{rows}")
    rng = np.random.default_rng(zlib.crc32(key.encode("utf-8")))
    make = _churn if pipeline == "churn" else _demand
    df = make(rng, the_day, rows, drift=scenario == "drift")
    if scenario == "quality_incident":
        df = _corrupt(rng, df, pipeline)
    return df


# --------------------------------------------------------------------------------------------
# Landing folder and simulated clock
# --------------------------------------------------------------------------------------------


def landing_dir() -> Path:
    """`$MLOPS_DEMO_DATA/landing`, defaulting to `<repo root>/data/landing`."""
    return Path(os.environ.get("MLOPS_DEMO_DATA", str(REPO_ROOT / "data"))) / "landing"


def state_path() -> Path:
    """The simulated clock: `feed_state.json` next to the landing folder."""
    return landing_dir().parent / "feed_state.json"


def batch_path(pipeline: str, day: date | str) -> Path:
    """Where the batch of `pipeline` for `day` lands: `landing/<pipeline>/<YYYY-MM-DD>.parquet`."""
    if pipeline not in PIPELINES:
        raise ValueError(f"unknown pipeline {pipeline!r}: valid pipelines are {', '.join(PIPELINES)}")
    return landing_dir() / pipeline / f"{_as_date(day).isoformat()}.parquet"


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_batch(pipeline: str, day: date | str, scenario: str = "normal") -> Path:
    """Generate the batch and land it atomically (tmp file, then `os.replace`). Returns its path."""
    df = generate_batch(pipeline, day, scenario)
    path = batch_path(pipeline, day)
    _atomic_write(path, lambda tmp: df.to_parquet(tmp, index=False))
    return path


def _read_state() -> dict[str, Any] | None:
    path = state_path()
    if not path.exists():
        return None
    state = json.loads(path.read_text())
    state.setdefault("scenarios", {})
    return state


def _write_state(state: dict[str, Any]) -> None:
    text = json.dumps(state, indent=2, sort_keys=True) + "\n"
    _atomic_write(state_path(), lambda tmp: tmp.write_text(text))


def current_day() -> date | None:
    """The last simulated day that has landed, or None before the first one."""
    state = _read_state()
    return date.fromisoformat(state["today"]) if state and state.get("today") else None


def scenario_of(day: date | str) -> str | None:
    """The scenario recorded for `day` by `advance_day`/`bootstrap`, or None if none was."""
    state = _read_state()
    return state["scenarios"].get(_as_date(day).isoformat()) if state else None


def _land(state: dict[str, Any], day: date, scenario: str) -> None:
    for pipeline in PIPELINES:
        write_batch(pipeline, day, scenario)
    state["today"] = day.isoformat()
    state["scenarios"][day.isoformat()] = scenario


def advance_day(scenario: str = "normal") -> date:
    """Move the clock one day on, land that day's batch for both pipelines, record it, return the day.

    The first call (no state yet) lands 2026-01-01.

    Raises:
        ValueError: for an unknown scenario, or when the simulated calendar (to 2026-06-30) is over.
    """
    _check(PIPELINES[0], scenario)
    state = _read_state() or {"today": None, "scenarios": {}}
    day = START if not state.get("today") else date.fromisoformat(state["today"]) + timedelta(days=1)
    if day > END:
        raise ValueError(f"the simulated calendar ends on {END.isoformat()}; nothing left to advance to")
    _land(state, day, scenario)
    _write_state(state)
    return day


def bootstrap(days: int = 28) -> list[date]:
    """Land 2026-01-01 .. 2026-01-01 + days - 1 as "normal" when no state exists; a no-op (returns [])
    otherwise.

    Raises:
        ValueError: if `days` is not between 1 and the calendar's length.
    """
    total = (END - START).days + 1
    if not 1 <= days <= total:
        raise ValueError(f"days must be between 1 and {total}, got {days}")
    if _read_state() is not None:
        return []
    state: dict[str, Any] = {"today": None, "scenarios": {}}
    landed = [START + timedelta(days=i) for i in range(days)]
    for day in landed:
        _land(state, day, "normal")
    _write_state(state)
    return landed


# --------------------------------------------------------------------------------------------
# Dataset sources (dataset.source.python in pipelines/*.yaml)
# --------------------------------------------------------------------------------------------


def _load(pipeline: str, context: Any) -> pd.DataFrame:
    """The landed batch for the context's partition; if none landed, land it first (the scenario
    recorded for that day, else "normal") so the landing folder stays the record of what arrived."""
    day = _as_date(context.partition_key)
    path = batch_path(pipeline, day)
    if not path.exists():
        path = write_batch(pipeline, day, scenario_of(day) or "normal")
    return pd.read_parquet(path)


def load_churn_feedback(context: Any) -> pd.DataFrame:
    """Source of `churn`'s `feedback:`: the outcomes of the day's batch, known after its predictions."""
    batch = _load("churn", context)
    return batch[["customer_id", "event_time", "churned"]].copy()


def leak_calls(batch: pd.DataFrame) -> pd.DataFrame:
    """The batch with `support_calls` recorded after the outcome: churners 7-10 calls, others at most 3.

    Pure: the noise is seeded from the batch's own first event time.
    """
    seed = zlib.crc32(f"leak:{batch['event_time'].iloc[0]}".encode()) if len(batch) else 0
    rng = np.random.default_rng(seed)
    calls = batch["support_calls"].to_numpy()
    leaked = np.where(
        batch["churned"].to_numpy() == 1, rng.integers(7, 11, size=len(batch)), np.minimum(calls, 3)
    )
    return batch.assign(support_calls=leaked.astype(np.int64))


def restate_with_leak(days: list[date]) -> list[Path]:
    """Re-deliver the landed churn batches of `days` with the leaky `support_calls` (idempotent).

    Returns the rewritten paths. Raises ValueError for a day that has not landed.
    """
    paths = []
    for day in days:
        path = batch_path("churn", day)
        if not path.exists():
            raise ValueError(f"churn has no landed batch for {day.isoformat()}: nothing to restate")
        original = generate_batch("churn", day, scenario_of(day) or "normal")
        restated = leak_calls(original)
        _atomic_write(path, lambda tmp, frame=restated: frame.to_parquet(tmp, index=False))
        paths.append(path)
    return paths


def load_churn(context: Any) -> pd.DataFrame:
    """Source of the `churn` dataset: one daily partition (`context.partition_key`, 'YYYY-MM-DD')."""
    return _load("churn", context)


def load_demand(context: Any) -> pd.DataFrame:
    """Source of the `demand` dataset: one daily partition (`context.partition_key`, 'YYYY-MM-DD')."""
    return _load("demand", context)


# --------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------


def _status() -> str:
    today = current_day()
    lines = [f"landing: {landing_dir()}", f"today:   {today.isoformat() if today else '(not started)'}"]
    for pipeline in PIPELINES:
        folder = landing_dir() / pipeline
        count = len(list(folder.glob("*.parquet"))) if folder.exists() else 0
        lines.append(f"{pipeline + ':':8} {count} batch(es) landed")
    state = _read_state()
    special = {d: s for d, s in (state or {}).get("scenarios", {}).items() if s != "normal"}
    lines.append("scenarios: " + (", ".join(f"{d}={s}" for d, s in sorted(special.items())) or "all normal"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assets.feed", description="Synthetic data feed (demo)")
    sub = parser.add_subparsers(dest="command", required=True)
    adv = sub.add_parser("advance", help="land the next simulated day for both pipelines")
    adv.add_argument("--scenario", choices=SCENARIOS, default="normal")
    boot = sub.add_parser("bootstrap", help="land the first N days as normal (no-op if already started)")
    boot.add_argument("--days", type=int, default=28)
    sub.add_parser("status", help="show the simulated clock and what has landed")
    args = parser.parse_args(argv)

    try:
        if args.command == "advance":
            day = advance_day(args.scenario)
            print(f"landed {day.isoformat()} ({args.scenario}) for {', '.join(PIPELINES)} in {landing_dir()}")
        elif args.command == "bootstrap":
            landed = bootstrap(args.days)
            if landed:
                first, last = landed[0].isoformat(), landed[-1].isoformat()
                print(f"bootstrapped {len(landed)} day(s) {first} .. {last} (normal) in {landing_dir()}")
            else:
                print(f"already started (today = {current_day()}); nothing to do")
        else:
            print(_status())
    except ValueError as e:
        parser.exit(2, f"error: {e}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
