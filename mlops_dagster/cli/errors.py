"""The error the CLI raises when a command cannot run as asked."""

from __future__ import annotations

from mlops_dagster.errors import MlopsDagsterError


class CliError(MlopsDagsterError):
    """A command cannot run as asked (environment, arguments, project); the message says how to fix it."""
