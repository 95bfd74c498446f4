"""`mlops-dagster deploy render` and `deploy check`: one environment's deployment configuration.

    mlops-dagster deploy render --target {k8s,ecs,dagster-plus} --env NAME --image IMAGE --out DIR
        [--specs PATH...] [--agent k8s|ecs] [--location NAME] [--namespace NS]
        [--postgres-host H] [--postgres-port P] [--postgres-db DB] [--postgres-user U] [--secret-prefix P]
    mlops-dagster deploy check DIR

`render` prints what it wrote and its warnings (exit 0); `check` prints one line per file checked and
each problem as `file:line key.path: message` (exit 1 when there is any). The deploy package, and
through it dagster-k8s, dagster-aws and kubernetes-validate, load only when a command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

TARGET_CHOICES = ("k8s", "ecs", "dagster-plus")


def cmd_render(args: argparse.Namespace) -> int:
    """Render the configuration of `args.env` for `args.target` into `args.out`."""
    from mlops_dagster.deploy import Settings, build_plan, parse_image, render_files, write_files

    settings = Settings(
        target=args.target,
        env=args.env,
        image=parse_image(args.image),
        location=args.location,
        agent=args.agent,
        namespace=args.namespace,
        postgres_host=args.postgres_host,
        postgres_port=args.postgres_port,
        postgres_db=args.postgres_db,
        postgres_user=args.postgres_user,
        secret_prefix=args.secret_prefix,
    )
    plan = build_plan(args.specs, settings)
    out = Path(args.out)
    written = write_files(render_files(plan, str(out)), out)
    agent = f" ({args.agent} agent)" if args.target == "dagster-plus" else ""
    print(f"rendered {args.target}{agent} for environment {args.env!r} into {out}:")
    for path in written:
        print(f"  {path.name}")
    for warning in plan.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"next: mlops-dagster deploy check {out}; then follow {out / 'NOTES.md'}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the rendered files in `args.dir`; exit 1 when any problem is found."""
    from mlops_dagster.deploy import check_dir

    checked, issues = check_dir(Path(args.dir))
    for line in checked:
        print(f"checked {line}")
    for issue in issues:
        print(str(issue), file=sys.stderr)
    if issues:
        print(f"error: {len(issues)} problem(s) in {args.dir}", file=sys.stderr)
        return 1
    print(f"ok: {len(checked)} file(s) valid")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `deploy` command group to the top-level subparsers."""
    p = sub.add_parser("deploy", help="render and check deployment configuration (k8s, ECS, Dagster+)")
    group = p.add_subparsers(dest="deploy_command", metavar="COMMAND")
    group.required = True

    r = group.add_parser("render", help="write one environment's configuration for a target")
    r.add_argument("--target", required=True, choices=TARGET_CHOICES)
    r.add_argument("--env", required=True, metavar="NAME", help="an environment declared in the specs")
    r.add_argument("--image", required=True, help="the user-code image, with a tag: REPOSITORY:TAG")
    r.add_argument("--out", required=True, metavar="DIR", help="output folder (its parent must exist)")
    r.add_argument("--specs", nargs="+", default=["pipelines"], metavar="PATH", help="default: pipelines")
    r.add_argument("--agent", choices=("k8s", "ecs"), default="k8s", help="dagster-plus: the agent kind")
    r.add_argument("--location", default="mlops", help="code location name (default: mlops)")
    r.add_argument("--namespace", help="k8s: the namespace (default: mlops-<env>)")
    r.add_argument("--postgres-host", default="postgresql", help="k8s: external PostgreSQL host")
    r.add_argument("--postgres-port", type=int, default=5432)
    r.add_argument("--postgres-db", default="dagster")
    r.add_argument("--postgres-user", default="dagster")
    r.add_argument(
        "--secret-prefix", help="ECS: prefix of each secret's valueFrom (default: /mlops-dagster/<env>/)"
    )
    r.set_defaults(func=cmd_render)

    c = group.add_parser("check", help="validate a rendered folder offline")
    c.add_argument("dir", metavar="DIR")
    c.set_defaults(func=cmd_check)
