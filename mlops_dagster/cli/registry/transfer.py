"""`mlops-dagster registry export|import`: move a version between environments as checked files.

Both commands load the project's Definitions (`--defs FILE`, default `./definitions.py`, or
`--specs PATH...`) as the code location does, so the environment chosen by `MLOPS_ENV` (or Dagster+)
gives the storage root of its model mirror; the registry is the instance at `$DAGSTER_HOME`.
`export` reads the source environment's instance and store; `import` is run against the target's.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from mlops_dagster.cli.errors import CliError
from mlops_dagster.cli.output import short
from mlops_dagster.cli.project import (
    add_defs_options,
    load_defs,
    open_instance,
    requested_by,
    require_pipeline_records,
)
from mlops_dagster.cli.registry.lookup import MIN_PREFIX, resolve

if TYPE_CHECKING:
    import dagster as dg


def register_transfer(rsub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `registry export` and `registry import` to the registry's subparsers."""
    p = rsub.add_parser(
        "export", help="write a version (model, card, drift reference, sha256 manifest) to a folder or s3://"
    )
    p.add_argument("name", metavar="NAME", help="pipeline name")
    p.add_argument("version", metavar="VERSION", help=f"version or unique prefix (>= {MIN_PREFIX})")
    p.add_argument("--to", required=True, metavar="URI", help="a new folder or s3://bucket/prefix")
    add_defs_options(p)
    p.set_defaults(func=cmd_export)

    p = rsub.add_parser(
        "import", help="check an export and record it as a candidate here (the gates decide the champion)"
    )
    p.add_argument("name", metavar="NAME", help="pipeline name")
    p.add_argument("--from", dest="source", required=True, metavar="URI", help="folder or s3:// prefix")
    add_defs_options(p)
    p.set_defaults(func=cmd_import)


def _environment() -> str:
    from mlops_dagster.environments import active

    env = active()
    name = env.name or "default"
    return f"{name} (branch {env.branch})" if env.branch else name


def _require_pipeline(defs: dg.Definitions, name: str, source: str) -> None:
    from mlops_dagster.keys import champion_key

    keys = set(defs.resolve_all_asset_keys())
    if champion_key(name) not in keys:
        known = sorted(k.path[0] for k in keys if len(k.path) == 2 and k.path[1] == "champion")
        raise CliError(
            f"unknown pipeline {name!r} in {source}: no asset {champion_key(name).to_user_string()} to "
            f"gate an import (pipelines: {', '.join(known) or 'none'})"
        )


def cmd_export(args: argparse.Namespace) -> int:
    """Export `args.version` of `args.name` to `args.to`."""
    from mlops_dagster.registry import records
    from mlops_dagster.registry.transfer import export_version

    load_defs(args)  # chooses the environment, hence where its model mirror is
    with open_instance() as instance:
        require_pipeline_records(instance, args.name)
        record = resolve(records.candidate_history(instance, args.name, limit=1000), args.name, args.version)
        export = export_version(instance, args.name, record.version, args.to)
    _audit(args.name, "export", export.version, {"to": args.to, "model_sha256": export.sha256})
    files = export.files.files
    print(f"exported {args.name}:{export.version} from environment {_environment()} to {args.to}")
    print(f"  sha256    {export.sha256}")
    print(f"  files     {', '.join(sorted(files))} ({export.files.size} bytes), manifest.json last")
    print(f"  import it with: mlops-dagster registry import {args.name} --from {args.to}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Check the export at `args.source` and record it as a candidate of `args.name` in this instance."""
    from mlops_dagster.registry.mirror import mirror_path
    from mlops_dagster.registry.transfer import import_version

    defs, source = load_defs(args)  # the target environment: its storage root holds the mirror
    _require_pipeline(defs, args.name, source)
    with open_instance() as instance:
        result = import_version(instance, args.name, args.source)
    export = result.export
    if result.recorded:
        _audit(args.name, "import", export.version, {"from": args.source, "model_sha256": export.sha256})
    home = os.environ.get("DAGSTER_HOME")
    mirror = mirror_path(args.name, export.version)
    print(
        f"verified {len(export.files.files)} files of {args.name}:{export.version} against "
        f"{args.source}/manifest.json"
    )
    print(f"  sha256    {export.sha256}")
    print(f"  stored    {result.model_path}" + (f" (mirror {mirror})" if mirror is not None else ""))
    if result.recorded:
        print(
            f"recorded as a candidate of {args.name} in environment {_environment()} "
            f"(DAGSTER_HOME={home}; trigger import)"
        )
    else:
        print(
            f"{args.name}:{short(export.version)} is already a candidate in this instance "
            f"(DAGSTER_HOME={home}): nothing recorded again"
        )
    print(
        f"it becomes champion here only through this environment's gates, on its data: materialize "
        f"{args.name}/champion, or `mlops-dagster registry promote {args.name} {short(export.version)}`"
    )
    return 0


def _audit(pipeline: str, action: str, version: str, extra: dict[str, str]) -> None:
    """An export or import in the pipeline's audit log, under the environment's root."""
    from mlops_dagster.audit import record_decision
    from mlops_dagster.environments import active

    record_decision(
        pipeline,
        action,
        version=version,
        trigger="cli",
        by=requested_by(),
        environment=active().name or "default",
        extra=extra,
    )
