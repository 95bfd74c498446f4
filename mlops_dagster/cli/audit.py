"""`mlops-dagster audit list|verify`: the tamper-evident decision log of each pipeline.

The log is `<storage root>/audit/<p>.jsonl` (`mlops_dagster.audit`). The storage root is the
environment's: with `--defs FILE`, `--specs PATH...`, or a `./definitions.py` in the working folder,
the project's Definitions are loaded (which activates the environment chosen by `MLOPS_ENV` or
Dagster+); otherwise the default root, `$DAGSTER_HOME/mlops`. `verify` also checks the log against
the Dagster instance when `$DAGSTER_HOME` is set: a champion decision there that the log lacks is a
problem.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_dagster.cli.errors import CliError
from mlops_dagster.cli.output import clip, short, table
from mlops_dagster.cli.project import DEFAULT_DEFS, add_defs_options, load_defs

if TYPE_CHECKING:
    import dagster as dg

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `audit` command group to the top-level subparsers."""
    a = sub.add_parser("audit", help="the hash-chained log of every decision: list it, verify it")
    asub = a.add_subparsers(dest="audit_command", metavar="ACTION")
    asub.required = True

    p = asub.add_parser("list", help="a pipeline's decisions, oldest first")
    p.add_argument("name", metavar="NAME", help="pipeline name")
    p.add_argument("--json", action="store_true", help="the records as JSON")
    add_defs_options(p)
    p.set_defaults(func=cmd_list)

    p = asub.add_parser(
        "verify", help="check the hash chain (and the instance's decisions against it); exit 1 if not intact"
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="pipeline name; default: every pipeline")
    add_defs_options(p)
    p.set_defaults(func=cmd_verify)


def _root(args: argparse.Namespace) -> str:
    """The storage root of the project's environment (loading its Definitions when there are any)."""
    from mlops_dagster.io.parquet import default_storage_root

    if args.defs or args.specs or Path(DEFAULT_DEFS).is_file():
        load_defs(args)  # activates the environment: its storage root holds the logs
    return default_storage_root()


def _who(record: dict[str, Any]) -> str:
    by, trigger = record.get("by"), record.get("trigger")
    return f"{by} ({trigger})" if by and trigger else str(by or trigger or "-")


def cmd_list(args: argparse.Namespace) -> int:
    """Print the records of `args.name`'s audit log."""
    from mlops_dagster.audit import audit_path, logged_pipelines, read_log
    from mlops_dagster.audit.verify import check_chain

    root = _root(args)
    path = audit_path(args.name, root)
    records = read_log(args.name, root)
    if not records and not path.exists():
        raise CliError(
            f"no audit log for {args.name!r} at {path} "
            f"(pipelines with a log there: {', '.join(logged_pipelines(root)) or 'none yet'})"
        )
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        print(f"{args.name}: {len(records)} records in {path}")
        rows = [
            [
                str(r.get("seq")),
                str(r.get("time", "-"))[:19].replace("T", " "),
                str(r.get("action")),
                short(r.get("version")),
                short(r.get("previous")),
                _who(r),
                clip((r.get("reasons") or ["-"])[0], 60),
            ]
            for r in records
        ]
        if rows:
            print(table(["SEQ", "TIME (UTC)", "ACTION", "VERSION", "PREVIOUS", "BY", "REASON"], rows))
    problems = check_chain(path).problems
    if problems:
        print(f"warning: the log does not verify: {problems[0]}", file=sys.stderr)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify one pipeline's log, or every pipeline's; 0 only when all are intact."""
    from mlops_dagster.audit import audit_path, logged_pipelines

    root = _root(args)
    if not os.environ.get("DAGSTER_HOME"):
        print("note: DAGSTER_HOME is not set: the logs are not checked against a Dagster instance")
        return _verify(args.name, root, None)
    from mlops_dagster.cli.project import known_pipelines, open_instance

    with open_instance() as instance:
        if args.name is None:
            return _verify(None, root, instance, extra=known_pipelines(instance))
        if not audit_path(args.name, root).exists() and args.name not in known_pipelines(instance):
            raise CliError(
                f"no audit log for {args.name!r} at {audit_path(args.name, root)} and no registry of it "
                f"in the instance (pipelines with a log: {', '.join(logged_pipelines(root)) or 'none yet'})"
            )
        return _verify(args.name, root, instance)


def _verify(
    name: str | None, root: str, instance: dg.DagsterInstance | None, extra: list[str] | None = None
) -> int:
    from mlops_dagster.audit import audit_path, logged_pipelines
    from mlops_dagster.audit.verify import check_chain, instance_problems

    if name is not None:
        names = [name]
    else:
        names = sorted({*logged_pipelines(root), *(extra or [])})
        if not names:
            print(f"no audit logs under {audit_path('x', root).parent}: nothing to verify")
            return 0
    failed = 0
    for pipeline in names:
        path = audit_path(pipeline, root)
        if name is not None and instance is None and not path.exists():
            raise CliError(
                f"no audit log for {name!r} at {path} "
                f"(pipelines with a log: {', '.join(logged_pipelines(root)) or 'none yet'})"
            )
        check = check_chain(path)
        problems = list(check.problems)
        if instance is not None:
            problems += instance_problems(instance, pipeline, path, check)
        if problems:
            failed += 1
            print(f"FAILED: {pipeline}")
            for problem in problems:
                print(f"  {problem}")
        else:
            print(f"ok: {pipeline} ({check.records} records)")
    if failed:
        print(f"error: {failed} of {len(names)} audit log(s) not intact", file=sys.stderr)
    return 1 if failed else 0
