"""Request bodies for each notifier kind: pure functions from an `Alert` to a JSON-able dict."""

from __future__ import annotations

from typing import Any

from mlops_dagster.alerts.alert import Alert

SEVERITY_EMOJI = {"info": ":information_source:", "warning": ":warning:", "error": ":rotating_light:"}

# Slack Block Kit limits (characters): header plain_text 150, section text 3000, context element 2000.
_HEADER_MAX, _SECTION_MAX, _CONTEXT_MAX, _FALLBACK_MAX = 150, 3000, 2000, 3000


def webhook_payload(alert: Alert) -> dict[str, Any]:
    """The generic webhook body: the alert's own fields, exactly as `Alert.to_json()` writes them."""
    return alert.to_dict()


def slack_payload(alert: Alert) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook body: fallback `text` plus header, section and context blocks.

    The header carries the severity emoji and the title; the section the text; the context line the
    severity, pipeline, asset and partition (those that are set). Text is escaped for Slack mrkdwn and
    cut to Slack's block limits, so a long list of failed checks never gets the message refused.
    """
    emoji = SEVERITY_EMOJI[alert.severity]
    context = [f"*severity:* {alert.severity}"]
    for label, value in (
        ("pipeline", alert.pipeline),
        ("asset", alert.asset_key),
        ("partition", alert.partition),
    ):
        if value:
            context.append(f"*{label}:* {_escape(value)}")
    return {
        "text": _cut(f"{emoji} {_escape(alert.title)}: {_escape(alert.text)}", _FALLBACK_MAX),
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": _cut(f"{emoji} {alert.title}", _HEADER_MAX),
                    "emoji": True,
                },
            },
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _cut(_escape(alert.text) or " ", _SECTION_MAX)},
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": _cut("  |  ".join(context), _CONTEXT_MAX)}],
            },
        ],
    }


def _escape(text: str) -> str:
    """Slack mrkdwn control characters (`&`, `<`, `>`) as entities, so user text cannot ping or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
