"""`mlops-dagster quarantine list [NAME]`: the held batches, all or those of one pipeline."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from mlops_dagster.cli.output import clip, table
from mlops_dagster.cli.quarantine.common import (
    data_root,
    format_names,
    format_partition,
    format_when,
    open_quarantine,
    read_entries,
    require_known,
)

if TYPE_CHECKING:
    from mlops_dagster.io.quarantine import QuarantineEntry


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


def cmd_list(args: argparse.Namespace) -> int:
    """Print the held batches, all or those of `args.name`, as a table (or JSON with `--json`)."""
    import dagster as dg

    root = data_root(args.storage)
    quarantine = open_quarantine(root)
    key = None
    if args.name:
        require_known(root, quarantine, args.name)
        key = dg.AssetKey([p for p in args.name.split("/") if p])
    entries = read_entries(quarantine, key)

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
            format_partition(e.partition),
            format_when(e.held_at),
            format_names(list(e.report.get("failed_checks", []))),
            clip(e.reasons[0], 70) if e.reasons else "-",
        ]
        for e in entries
    ]
    print(table(["ASSET", "PARTITION", "HELD AT", "FAILED CHECKS", "FIRST REASON"], rows))
    print()
    print("details: mlops-dagster quarantine show NAME PARTITION [--asset dataset|features/<group>]")
    return 0
