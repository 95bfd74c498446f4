"""What a failed in-process run says, as one text: shared by the bad-input tests."""

from __future__ import annotations

import dagster as dg


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    """Step failures (with their causes) and the descriptions of failed checks."""
    parts = []
    for event in result.all_events:
        if event.event_type_value == "ASSET_CHECK_EVALUATION":
            evaluation = event.event_specific_data
            if not evaluation.passed:
                parts.append(f"{evaluation.check_name}: {evaluation.description}")
        if event.is_step_failure and event.step_failure_data.error:
            err = event.step_failure_data.error
            while err is not None:
                parts.append(err.message.strip())
                err = err.cause
    return "\n".join(parts)
