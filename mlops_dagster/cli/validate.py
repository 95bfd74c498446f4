"""`mlops-dagster validate PATH...`: load spec files or folders and check them deeply (imports, scorers,
references) without running anything."""

from __future__ import annotations

import argparse

from mlops_dagster.cli.project import add_cwd_to_path


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate the specs under `args.paths`; print one line per pipeline."""
    from mlops_dagster.spec import load_specs, read_spec_files, validate_deep

    add_cwd_to_path()
    specs = load_specs(*args.paths)
    validate_deep(specs)
    if not specs:
        print(f"no pipelines found in {' '.join(args.paths)} (feature groups alone are not a pipeline)")
        return 0
    for spec in specs:
        groups = [g.name for g in spec.feature_groups]
        print(
            f"{spec.name}: {len(groups)} feature group(s)"
            f"{' (' + ', '.join(groups) + ')' if groups else ''}, estimator {spec.model.estimator}"
        )
    environments = read_spec_files(*args.paths).environments  # already checked by load_specs
    if environments:
        print(f"environments: {', '.join(e.name for e in environments)}")
    print(f"ok: {len(specs)} pipeline(s) valid")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `validate` command to the top-level subparsers."""
    p = sub.add_parser("validate", help="check spec files or folders (imports, scorers, references)")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_validate)
