"""`Notifier`: the resource the library's sensors and assets send alerts through.

Secrets come from the environment, never from a spec or a YAML file in clear::

    notifier = Notifier(
        kind="slack",
        url=dg.EnvVar("MLOPS_ALERT_WEBHOOK_URL"),
        token=dg.EnvVar("MLOPS_ALERT_TOKEN"),  # optional: sent as `Authorization: Bearer ...`
    )

Sending an alert never fails the run or the sensor tick that sends it: `send` returns False and logs a
warning (with the URL cut to scheme://host and the token masked). A caller with a time limit (a sensor
tick) passes `deadline=` so that retries stop in time. A misconfigured notifier, on the other
hand, fails at resource setup with `NotifierConfigError`, before any work is done.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal
from urllib.parse import urlsplit

import dagster as dg
from pydantic import Field

from mlops_dagster.alerts.alert import Alert
from mlops_dagster.alerts.delivery import Attempt, post_json, redact_url, scrub
from mlops_dagster.alerts.formats import slack_payload, webhook_payload
from mlops_dagster.errors import MlopsDagsterError

LOGGER_NAME = "mlops_dagster.alerts"
URL_ENV_VAR = "MLOPS_ALERT_WEBHOOK_URL"
_LOG_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_ALERT_IN_WARNING_CHARS = 2000


class NotifierConfigError(MlopsDagsterError):
    """A `Notifier` cannot work as configured (no URL for a webhook, a non-http URL, bad retry bounds)."""


class Notifier(dg.ConfigurableResource):
    """Sends `Alert`s to a log, a JSON webhook, or a Slack-compatible incoming webhook.

    Give `url` and `token` with `dg.EnvVar(...)`; they are never written to logs. Delivery is retried on
    connection errors, timeouts, 429 and 5xx, with capped exponential backoff and jitter, and is
    abandoned (with a warning, never an exception) after `max_attempts`, or earlier when the caller's
    `deadline` comes.

    Example:
        >>> notifier = Notifier(kind="webhook", url=dg.EnvVar("MLOPS_ALERT_WEBHOOK_URL"))
        >>> notifier.send(Alert(title="...", text="...", severity="error"), log=context.log)  # doctest: +SKIP
    """

    kind: Literal["log", "webhook", "slack"] = Field(
        default="log",
        description="'log': one structured log line; 'webhook': POST the alert as JSON; "
        "'slack': POST a Slack-compatible {text, blocks} payload.",
    )
    url: str | None = Field(
        default=None,
        repr=False,
        description=f"Webhook URL, required for 'webhook' and 'slack'. Give it with "
        f'dg.EnvVar("{URL_ENV_VAR}"), never in clear: it often embeds a secret.',
    )
    token: str | None = Field(
        default=None,
        repr=False,
        description="Optional bearer token, sent as 'Authorization: Bearer <token>'. Give it with dg.EnvVar.",
    )
    timeout_seconds: float = Field(default=5.0, description="Timeout of each HTTP attempt.")
    max_attempts: int = Field(default=4, description="HTTP attempts in all, the first one included.")
    backoff_seconds: float = Field(
        default=0.5, description="Base of the exponential backoff between attempts (jittered, capped at 10s)."
    )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        problem = self.config_problem()
        if problem:
            raise NotifierConfigError(problem)

    def config_problem(self) -> str | None:
        """What makes this notifier unusable, in words that name the field and the fix; None if fine."""
        if self.max_attempts < 1:
            return f"Notifier.max_attempts must be at least 1, got {self.max_attempts}."
        if self.timeout_seconds <= 0:
            return f"Notifier.timeout_seconds must be positive, got {self.timeout_seconds:g}."
        if self.backoff_seconds < 0:
            return f"Notifier.backoff_seconds must not be negative, got {self.backoff_seconds:g}."
        if self.kind == "log":
            return None
        url = self._url()
        if not url:
            if isinstance(self.url, dg.EnvVar):
                return (
                    f"Notifier(kind={self.kind!r}) needs `url`, but url=dg.EnvVar({self.url.env_var_name!r}) "
                    f"is unset or empty: set that variable where runs and sensors execute, or use kind='log'."
                )
            return (
                f"Notifier(kind={self.kind!r}) needs `url`, and it is empty. Give it from the environment, "
                f'e.g. Notifier(kind={self.kind!r}, url=dg.EnvVar("{URL_ENV_VAR}")), and check that the '
                f"variable is set and non-empty where runs and sensors execute; or use kind='log'."
            )
        try:
            scheme = urlsplit(url).scheme
        except ValueError:
            scheme = ""
        if scheme not in ("http", "https"):
            return (
                f"Notifier.url must be an http:// or https:// URL; got scheme {scheme!r} "
                f"(the URL itself is not shown: it may hold a secret)."
            )
        return None

    def send(
        self,
        alert: Alert,
        log: logging.Logger | logging.LoggerAdapter[Any] | None = None,
        *,
        deadline: float | None = None,
    ) -> bool:
        """Deliver `alert`; True if delivered (or logged), False otherwise. Never raises.

        Args:
            alert: What to send.
            log: Where to log (e.g. `context.log` in an asset or sensor); the python logger
                `mlops_dagster.alerts` when None. The `log` kind writes the alert here; the other kinds
                write retries (debug) and a final failure (warning) here.
            deadline: A `time.monotonic()` value by which delivery must be over, or None for no limit
                (then only `max_attempts` bounds it). No attempt starts with less than
                `delivery.MIN_ATTEMPT_SECONDS` left, attempts are cut short to end by it, and retries
                stop when the next one could not start in time: False, with a warning that says the
                time budget ran out (no request at all if it has already passed). The `log` kind
                ignores it.
        """
        logger: logging.Logger | logging.LoggerAdapter[Any] = (
            log if log is not None else logging.getLogger(LOGGER_NAME)
        )
        try:
            return self._send(alert, logger, deadline)
        except Exception as e:  # a bug here must not fail the run that raised the alert
            try:
                logger.warning(self._hide(f"mlops alert not sent: unexpected {type(e).__name__}: {e}"))
            except Exception:
                pass
            return False

    def _send(
        self, alert: Alert, logger: logging.Logger | logging.LoggerAdapter[Any], deadline: float | None
    ) -> bool:
        if self.kind == "log":
            logger.log(_LOG_LEVELS[alert.severity], f"mlops alert {alert.to_json()}")
            return True
        problem = self.config_problem()
        if problem:
            logger.warning(f"mlops alert not sent: {problem} Alert: {_short(alert)}")
            return False
        payload = slack_payload(alert) if self.kind == "slack" else webhook_payload(alert)
        target = f"{self.kind} {redact_url(self._url())}"

        def on_retry(number: int, attempt: Attempt, delay: float) -> None:
            logger.debug(
                self._hide(
                    f"mlops alert to {target}: attempt {number} failed ({attempt.reason}); "
                    f"retry in {delay:.2f}s"
                )
            )

        delivery = post_json(
            self._url(),
            json.dumps(payload, default=str, ensure_ascii=False).encode("utf-8"),
            headers=self._headers(),
            timeout=self.timeout_seconds,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            on_retry=on_retry,
            deadline=deadline,
        )
        if delivery.ok:
            logger.debug(f"mlops alert delivered to {target} (attempt {delivery.attempts}): {alert.title}")
            return True
        if delivery.attempts == 0:
            logger.warning(
                self._hide(f"mlops alert not sent to {target}: {delivery.reason}. Alert: {_short(alert)}")
            )
            return False
        logger.warning(
            self._hide(
                f"mlops alert not delivered to {target} after {delivery.attempts} attempt(s): "
                f"{delivery.reason}. Alert: {_short(alert)}"
            )
        )
        return False

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "mlops_dagster-notifier"}
        token = _resolve(self.token)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _hide(self, text: str) -> str:
        return scrub(text, [self._url(), _resolve(self.token)])

    def _url(self) -> str:
        return _resolve(self.url)


def _resolve(value: str | None) -> str:
    """A setting's value, stripped.

    Inside Dagster an `EnvVar` is resolved before resource setup; used directly (a script, a test), the
    `EnvVar` object itself is here, and is read now.
    """
    if isinstance(value, dg.EnvVar):
        value = value.get_value()
    return (value or "").strip()


def _short(alert: Alert) -> str:
    """The alert's JSON, cut: a failed delivery still leaves the alert itself in the log."""
    text = alert.to_json()
    return text if len(text) <= _ALERT_IN_WARNING_CHARS else text[: _ALERT_IN_WARNING_CHARS - 1] + "…"
