"""What Slack's Web API said when it refused a call, in words for a log line or a person."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError


def slack_refusal(exc: SlackApiError) -> str:
    """What Slack's Web API said in refusing a call: its error code (``not_in_channel``),
    or the HTTP status where the answer was not Slack's JSON (an edge's 503 page)."""
    data = exc.response.data
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    return f"HTTP {exc.response.status_code}"


def slack_retry_after(exc: SlackApiError) -> float | None:
    """Seconds Slack asked to wait (a 429's ``Retry-After``), or None if it did not."""
    if exc.response.status_code != 429:
        return None
    headers = exc.response.headers or {}
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if isinstance(value, list):
        value = value[0] if value else None
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except (TypeError, ValueError):
        return 1.0
