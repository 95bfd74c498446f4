"""`mlops-dagster quarantine list|show`: batches held back because their blocking checks failed.

Quarantine lives with the data (`<data root>/.quarantine/<asset/key>/<partition or __all__>/`, see
`mlops_dagster.io.quarantine`), not in the Dagster instance: the data root is the Parquet IO manager's
default, `$DAGSTER_HOME/mlops/data`, or `--storage FOLDER|URL` (its `base_path`). Pipeline datasets are
held as `NAME/dataset`, feature groups as `features/<group>`.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mlops_dagster.cli.errors import CliError
from mlops_dagster.cli.output import clip, table
from mlops_dagster.cli.project import require_home

if TYPE_CHECKING:
    import dagster as dg
    import pandas as pd
    from upath import UPath

    from mlops_dagster.io.quarantine import Quarantine, QuarantineEntry

__all__ = ["register"]

NO_PARTITION = "-"
DEFAULT_ROWS = 10
# Check metadata `show` does not print (the full report, with these, is in `--json`).
HIDDEN_CHECK_KEYS = frozenset({"gx_result", "mlops/partition", "mlops/schema"})


# ------------------------------------------------------------------------------------------------
# where the quarantine is
# ------------------------------------------------------------------------------------------------


def data_root(storage: str | None) -> UPath:
    """The data root: `--storage`, else the IO manager's default under `$DAGSTER_HOME` (required)."""
    from upath import UPath

    if storage:
        try:
            root = UPath(storage)
            if root.protocol in ("", "file", "local"):
                root = root.expanduser().absolute()
            found = root.is_dir()
        except Exception as e:  # fsspec backends raise their own errors (credentials, missing package)
            raise CliError(f"cannot open --storage {storage}: {type(e).__name__}: {e}") from e
        if not found:
            raise CliError(
                f"--storage {storage}: no such folder (give the data root: the Parquet IO manager's "
                "base_path, by default $DAGSTER_HOME/mlops/data)"
            )
        return root
    if not os.environ.get("DAGSTER_HOME"):
        raise CliError(
            "DAGSTER_HOME is not set. Quarantined batches are kept with the data, by default under "
            "$DAGSTER_HOME/mlops/data: set DAGSTER_HOME to the instance folder your Dagster deployment uses "
            "(the one `dagster dev` runs with), or pass --storage FOLDER|URL (the IO manager's base_path)."
        )
    require_home()
    from mlops_dagster.io.parquet import ParquetIOManager

    return ParquetIOManager().root()


def _open(root: UPath) -> Quarantine:
    from mlops_dagster.io.quarantine import Quarantine

    return Quarantine(root)


def _known_names(root: UPath, quarantine: Quarantine) -> list[str]:
    """First asset-key parts with data or quarantine entries under the root (pipelines and `features`)."""
    names: set[str] = set()
    for folder in (root, quarantine.root):
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    return sorted(names)


def _require_known(root: UPath, quarantine: Quarantine, name: str) -> None:
    known = _known_names(root, quarantine)
    if name.split("/")[0] not in known:
        raise CliError(
            f"unknown pipeline {name!r}: nothing of it under the data root {root} "
            f"(names with data there: {', '.join(known) or 'none yet'})"
        )


def _entries(quarantine: Quarantine, key: dg.AssetKey | None) -> list[QuarantineEntry]:
    try:
        return quarantine.entries(key)
    except (OSError, ValueError) as e:  # an unreadable folder or report.json
        raise CliError(f"cannot read the quarantine under {quarantine.root}: {e}") from e


# ------------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------------


def _when(held_at: str) -> str:
    try:
        return datetime.fromisoformat(held_at).strftime("%Y-%m-%d %H:%M:%S UTC")
    except ValueError:
        return held_at or "-"


def _partition(partition: str | None) -> str:
    return partition if partition else NO_PARTITION


def _size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    if n < 1024:
        return f"{n} bytes"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _names(names: list[str], width: int = 80) -> str:
    """Whole names, comma-separated, as many as fit in `width`, then `+N more`."""
    shown: list[str] = []
    for i, name in enumerate(names):
        if shown and len(", ".join([*shown, name])) > width:
            return ", ".join([*shown, f"+{len(names) - i} more"])
        shown.append(name)
    return ", ".join(shown) or "-"


def _file_size(path: UPath) -> int | None:
    try:
        return int(path.stat().st_size)
    except (OSError, ValueError, AttributeError):
        return None


def _entry_json(e: QuarantineEntry) -> dict[str, Any]:
    r = e.report
    return {
        "asset": e.asset_key,
        "partition": e.partition,
        "held_at": e.held_at or None,
        "failed_checks": list(r.get("failed_checks", [])),
        "passed_checks": list(r.get("passed_checks", [])),
        "reasons": e.reasons,
        "run_id": r.get("run_id"),
        "files": list(r.get("files", [])),
        "path": e.path,
    }


def _check_lines(metadata: dict[str, Any]) -> list[str]:
    """The readable part of one check's metadata in a report: problems, observed value, unexpected rows."""
    lines = []
    for problem in metadata.get("mlops/problems") or []:
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
    champion = metadata.get("mlops/champion_version")
    if champion:
        lines.append(f"schema of champion: {champion}")
    known = {"mlops/problems", "observed_value", "unexpected_count", "unexpected_percent"}
    for k, v in metadata.items():
        if k in HIDDEN_CHECK_KEYS or k in known or k in {"unexpected_sample", "mlops/champion_version"}:
            continue
        lines.append(f"{k}: {clip(json.dumps(v, default=str), 100)}")
    return lines


# ------------------------------------------------------------------------------------------------
# list
# ------------------------------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    """Print the held batches, all or those of `args.name`, as a table (or JSON with `--json`)."""
    import dagster as dg

    root = data_root(args.storage)
    quarantine = _open(root)
    key = None
    if args.name:
        _require_known(root, quarantine, args.name)
        key = dg.AssetKey([p for p in args.name.split("/") if p])
    entries = _entries(quarantine, key)

    if args.json:
        payload = {
            "storage": str(root),
            "name": args.name,
            "entries": [_entry_json(e) for e in entries],
        }
        print(json.dumps(payload, indent=2, default=str))
        return 0
    scope = f" for {args.name}" if args.name else ""
    if not entries:
        print(f"nothing in quarantine{scope} (under {quarantine.root})")
        return 0
    print(f"{len(entries)} batch(es) in quarantine{scope} (under {quarantine.root})")
    rows = [
        [
            e.asset_key,
            _partition(e.partition),
            _when(e.held_at),
            _names(list(e.report.get("failed_checks", []))),
            clip(e.reasons[0], 70) if e.reasons else "-",
        ]
        for e in entries
    ]
    print(table(["ASSET", "PARTITION", "HELD AT", "FAILED CHECKS", "FIRST REASON"], rows))
    print()
    print("details: mlops-dagster quarantine show NAME PARTITION [--asset dataset|features/<group>]")
    return 0


# ------------------------------------------------------------------------------------------------
# show
# ------------------------------------------------------------------------------------------------


def _asset_key(name: str, asset: str) -> dg.AssetKey:
    """`--asset dataset` is `NAME/dataset`; an asset with a `/` (`features/<group>`) is a full key."""
    import dagster as dg

    parts = [p for p in asset.split("/") if p]
    if not parts:
        raise CliError(f"--asset {asset!r}: give `dataset` or `features/<group>`")
    return dg.AssetKey(parts if len(parts) > 1 else [name, *parts])


def _missing_partition(quarantine: Quarantine, key: dg.AssetKey, partition: str | None) -> CliError:
    asset = key.to_user_string()
    held = sorted(_partition(e.partition) for e in _entries(quarantine, key))
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
    quarantine = _open(root)
    _require_known(root, quarantine, args.name)
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
    head = f"{entry.asset_key} {_partition(entry.partition)}: in quarantine"
    print(head + (f", {len(failed)} blocking check(s) failed" if failed else ""))

    def field(label: str, value: Any) -> None:
        if value not in (None, "", []):
            print(f"  {label:<16}{value}")

    field("held at", _when(entry.held_at))
    field("run", report.get("run_id"))
    field("stored at", str(folder))
    field("files", ", ".join(f"{f} ({_size(sizes[f])})" for f in [*files, REPORT]))
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
        print(f"Data: {folder / DATA} ({_size(sizes[DATA])}); --rows 0 shows no rows")
    for f in raw:
        print(f"Data: the raw source file, not a table: {folder / f} ({_size(sizes[f])})")
    if not files:
        print("Data: no file was kept with this entry")
    if data_error:
        raise CliError(data_error)
    return 0


# ------------------------------------------------------------------------------------------------
# parser
# ------------------------------------------------------------------------------------------------


def _add_storage(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--storage",
        metavar="URL",
        help="data root: a folder or s3:// URL, the IO manager's base_path "
        "(default $DAGSTER_HOME/mlops/data)",
    )


def _rows(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"give 0 or more, not {n}")
    return n


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `quarantine` command group to the top-level subparsers."""
    q = sub.add_parser("quarantine", help="batches held back by failed blocking checks, with the reasons")
    qsub = q.add_subparsers(dest="quarantine_command", metavar="ACTION")
    qsub.required = True

    p = qsub.add_parser("list", help="held batches: asset, partition, when, failed checks, first reason")
    p.add_argument(
        "name",
        nargs="?",
        metavar="NAME",
        help="pipeline name (its `NAME/dataset`), or `features` for the feature groups; default: all",
    )
    _add_storage(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = qsub.add_parser("show", help="one held batch: every reason, per-check details, the first rows")
    p.add_argument("name", metavar="NAME", help="pipeline name")
    p.add_argument(
        "partition",
        nargs="?",
        metavar="PARTITION",
        help=f"partition key; omit or `{NO_PARTITION}` for an unpartitioned asset (a feature group)",
    )
    p.add_argument(
        "--asset",
        default="dataset",
        metavar="dataset|features/<group>",
        help="which asset of the pipeline (default: dataset)",
    )
    p.add_argument(
        "--rows",
        type=_rows,
        default=DEFAULT_ROWS,
        metavar="N",
        help=f"show the first N rows of held data (default {DEFAULT_ROWS})",
    )
    _add_storage(p)
    p.add_argument("--json", action="store_true", help="machine-readable output (the full report)")
    p.set_defaults(func=cmd_show)
