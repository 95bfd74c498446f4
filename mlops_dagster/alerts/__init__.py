"""Alerts: an `Alert` data object and the `Notifier` resource that logs it or POSTs it to a webhook."""

from mlops_dagster.alerts.alert import Alert
from mlops_dagster.alerts.notifier import Notifier, NotifierConfigError

__all__ = ["Alert", "Notifier", "NotifierConfigError"]
