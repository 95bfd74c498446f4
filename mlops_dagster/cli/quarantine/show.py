"""`mlops-dagster quarantine show NAME [PARTITION]`: one held batch, its reasons, per-check details
and the first rows of its data."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from mlops_dagster.cli.errors import CliError
from mlops_dagster.cli.output import clip
from mlops_dagster.cli.quarantine.common import (
    NO_PARTITION,
    data_root,
    format_partition,
    format_size,
    format_when,
    open_quarantine,
    read_entries,
    require_known,
)

if TYPE_CHECKING:
    import dagster as dg
    import pandas as pd
    from upath import UPath

    from mlops_dagster.io.quarantine import Quarantine


def _file_size(path: UPath) -> int | None:
    try:
        return int(path.stat().st_size)
    except (OSError, ValueError, AttributeError):
        return None


def _check_lines(metadata: dict[str, Any]) -> list[str]:
    """The readable part of one check's metadata in a report: problems, observed value, unexpected rows."""
    from mlops_dagster.keys import Meta

    lines = []
    for problem in metadata.get(Meta.PROBLEMS) or []:
        lines.append(f"problem: {problem}")
    observed = metadata.get("observed_value")
    if isinstance(observed, dict) and set(observed) == {"value"}:
        observed = observed["value"]
    if observed is not None:
        lines.append(f"observed: {clip(json.dumps(observed, default=str), 100)}")
    count = metadata.get("unexpected_count")
    if isinstance(count, int | float) and count >= 0:
        pct = metadata.get("unexpected_percent")
        share = f" ({pct:.2f}%)" if isinstance(pct, int | float) and pct >= 0 else ""
        lines.append(f"unexpected: {int(count)}{share}")
    sample = metadata.get("unexpected_sample")
    if sample:
        lines.append(f"sample: {clip(json.dumps(sample, default=str), 100)}")
    champion = metadata.get(Meta.CHAMPION)
    if champion:
        lines.append(f"schema of champion: {champion}")
    known = {  # printed above
        Meta.PROBLEMS,
        Meta.CHAMPION,
        "observed_value",
        "unexpected_count",
        "unexpected_percent",
        "unexpected_sample",
    }
    # Check metadata `show` does not print (the full report, with these, is in `--json`).
    hidden = {"gx_result", Meta.PARTITION, Meta.SCHEMA}
    for k, v in metadata.items():
        if k in hidden or k in known:
            continue
        lines.append(f"{k}: {clip(json.dumps(v, default=str), 100)}")
    return lines


def _asset_key(name: str, asset: str) -> dg.AssetKey:
    """`--asset dataset` is `NAME/dataset`; an asset with a `/` (`features/<group>`) is a full key."""
    import dagster as dg

    parts = [p for p in asset.split("/") if p]
    if not parts:
        raise CliError(f"--asset {asset!r}: give `dataset` or `features/<group>`")
    return dg.AssetKey(parts if len(parts) > 1 else [name, *parts])


def _missing_partition(quarantine: Quarantine, key: dg.AssetKey, partition: str | None) -> CliError:
    asset = key.to_user_string()
    held = sorted(format_partition(e.partition) for e in read_entries(quarantine, key))
    what = f"partition {partition}" if partition else "without a partition"
    if not held:
        return CliError(f"no quarantined batch of {asset} {what}: nothing of {asset} is in quarantine")
    hint = ""
    if partition is None and NO_PARTITION not in held:
        hint = "; give a PARTITION"
    elif partition and held == [NO_PARTITION]:
        hint = f"; {asset} is unpartitioned: omit PARTITION or give `{NO_PARTITION}`"
    return CliError(f"no quarantined batch of {asset} {what} (held: {', '.join(held)}){hint}")


def _frame_payload(frame: pd.DataFrame, rows: int) -> dict[str, Any]:
    head = frame.head(rows)
    return {
        "rows_total": len(frame),
        "columns": {str(c): str(t) for c, t in frame.dtypes.items()},
        "rows": json.loads(head.to_json(orient="records", date_format="iso", default_handler=str)),
    }


def cmd_show(args: argparse.Namespace) -> int:
    """Print one held batch: its report, per-check details and the first rows (or the raw file)."""
    from mlops_dagster.io.quarantine import DATA, REPORT, UNPARTITIONED

    root = data_root(args.storage)
    quarantine = open_quarantine(root)
    require_known(root, quarantine, args.name)
    key = _asset_key(args.name, args.asset)
    partition = None if args.partition in (None, NO_PARTITION, UNPARTITIONED) else args.partition
    try:
        entry = quarantine.get(key, partition)
    except (OSError, ValueError) as e:
        where = quarantine.entry_dir(key, partition)
        raise CliError(f"cannot read the quarantine entry under {where}: {e}") from e
    if entry is None:
        raise _missing_partition(quarantine, key, partition)

    report = entry.report
    folder = quarantine.entry_dir(key, partition)
    files = [str(f) for f in report.get("files", [])]
    sizes = {f: _file_size(folder / f) for f in [*files, REPORT]}
    frame, data_error = None, None
    if DATA in files and (args.rows > 0 or args.json):
        try:
            frame = quarantine.read(key, partition)
        except (OSError, ValueError) as e:  # pyarrow's errors are OSError / ValueError subclasses
            data_error = f"cannot read {folder / DATA}: {type(e).__name__}: {e}"
    if frame is not None and report.get("pii"):  # declared personal data is never printed
        from mlops_dagster.quality.pii import mask_columns

        frame = mask_columns(frame, [str(c) for c in report["pii"]])
    raw = [f for f in files if f != DATA]

    if args.json:
        payload = {
            "storage": str(root),
            "asset": entry.asset_key,
            "partition": entry.partition,
            "path": str(folder),
            "files": [{"name": f, "path": str(folder / f), "size": sizes[f]} for f in files],
            "report": report,
            "data": _frame_payload(frame, args.rows) if frame is not None else None,
        }
        if data_error:
            payload["data_error"] = data_error
        print(json.dumps(payload, indent=2, default=str))
        return 1 if data_error else 0

    failed = list(report.get("failed_checks", []))
    passed = list(report.get("passed_checks", []))
    head = f"{entry.asset_key} {format_partition(entry.partition)}: in quarantine"
    print(head + (f", {len(failed)} blocking check(s) failed" if failed else ""))

    def field(label: str, value: Any) -> None:
        if value not in (None, "", []):
            print(f"  {label:<16}{value}")

    field("held at", format_when(entry.held_at))
    field("run", report.get("run_id"))
    field("stored at", str(folder))
    field("files", ", ".join(f"{f} ({format_size(sizes[f])})" for f in [*files, REPORT]))
    field("failed checks", ", ".join(failed))
    field("passed checks", ", ".join(passed))
    field("note", report.get("note"))

    print()
    print(f"Reasons ({len(entry.reasons)})")
    for reason in entry.reasons or ["(none recorded)"]:
        print(f"  - {reason}")

    checks: dict[str, Any] = dict(report.get("checks") or {})
    print()
    if failed or passed or checks:
        print(f"Checks ({len(failed)} failed, {len(passed)} passed)")
        order = [*failed, *passed, *(c for c in checks if c not in failed and c not in passed)]
        for name in order:
            status = "FAILED" if name in failed else "passed" if name in passed else "?"
            print(f"  {status:<7} {name}")
            metadata = checks.get(name)
            for line in _check_lines(metadata) if isinstance(metadata, dict) else []:
                print(f"            {line}")
    else:
        print("Checks: none ran (the batch could not be read as a table)")

    print()
    if frame is not None:
        shown = min(args.rows, len(frame))
        print(f"Data: first {shown} of {len(frame)} row(s), {len(frame.columns)} column(s) ({folder / DATA})")
        text = frame.head(shown).to_string(index=False, max_colwidth=30)
        print("\n".join(f"  {line}" for line in text.splitlines()))
    elif DATA in files and not data_error:
        print(f"Data: {folder / DATA} ({format_size(sizes[DATA])}); --rows 0 shows no rows")
    for f in raw:
        print(f"Data: the raw source file, not a table: {folder / f} ({format_size(sizes[f])})")
    if not files:
        print("Data: no file was kept with this entry")
    if data_error:
        raise CliError(data_error)
    return 0
