"""Studio flow definitions written for the tests, shaped as Studio exports them."""

from __future__ import annotations

from typing import Any


def trigger(first: str | None) -> dict[str, Any]:
    """The Trigger widget; ``first`` is where its REST API transition leads (None: nowhere)."""
    rest: dict[str, Any] = {"event": "incomingRequest"}
    if first is not None:
        rest["next"] = first
    return {
        "name": "Trigger",
        "type": "trigger",
        "transitions": [
            {"event": "incomingMessage"},
            {"event": "incomingCall"},
            {"event": "incomingConversationMessage"},
            rest,
            {"event": "incomingParent"},
        ],
        "properties": {"offset": {"x": 0, "y": 0}},
    }


def flow(*states: dict[str, Any], first: str | None = "start") -> dict[str, Any]:
    return {
        "description": "A flow for the tests",
        "states": [trigger(first), *states],
        "initial_state": "Trigger",
        "flags": {"allow_concurrent_calls": True},
    }


SMS_SURVEY = flow(
    {
        "name": "start",
        "type": "send-and-wait-for-reply",
        "transitions": [{"next": "check", "event": "incomingMessage"}, {"event": "timeout"}],
        "properties": {
            "from": "{{flow.channel.address}}",
            "body": "Hi {{flow.data.first_name}}! How was your {{ flow.data.plan | default: 'visit' }}?"
            " Reply 1-5.",
            "timeout": "3600",
        },
    },
    {
        "name": "check",
        "type": "split-based-on",
        "transitions": [{"next": "thanks", "event": "noMatch"}],
        "properties": {"input": "{{widgets.start.inbound.Body}}"},
    },
    {
        "name": "thanks",
        "type": "send-message",
        "transitions": [{"event": "sent"}],
        "properties": {
            "body": "{% if flow.data.vip %}Thank you, valued member{% else %}Thanks{% endif %},"
            " {{flow.data['first_name']}}.",
        },
    },
)

VOICE_IVR = flow(
    {
        "name": "start",
        "type": "gather-input-on-call",
        "transitions": [{"next": "route", "event": "keypress"}],
        "properties": {
            "say": "Hello {{flow.data.customer.name}}, your order {{flow.data.order.id}} ships"
            " {{flow.data['ship-date']}}. Press 1 to talk to us.",
            "number_of_digits": 1,
        },
    },
    {
        "name": "route",
        "type": "connect-call-to",
        "transitions": [{"event": "callCompleted"}],
        "properties": {"to": "{{flow.data.agent_number | default: '+16175550100'}}"},
    },
)

HTTP_REQUEST = flow(
    {
        "name": "start",
        "type": "make-http-request",
        "transitions": [{"event": "success"}, {"event": "failed"}],
        "properties": {
            "method": "POST",
            "content_type": "application/json;charset=utf-8",
            "url": "https://crm.example.com/contacts/{{flow.data.crm_id}}",
            "body": '{"name": "{{flow.data.first_name}}", "tags": {{flow.data.tags | to_json}}}',
        },
    }
)

FUNCTION_CALL = flow(
    {
        "name": "start",
        "type": "run-function",
        "transitions": [{"event": "success"}, {"event": "fail"}],
        "properties": {
            "service_sid": "ZS" + "0" * 32,
            "function_sid": "ZH" + "0" * 32,
            "url": "https://example-1234.twil.io/lookup",
            "parameters": [
                {"key": "account", "value": "{{flow.data.account_id}}"},
                {"key": "coupon", "value": "{{flow.data.coupon | default: ''}}"},
            ],
        },
    }
)

SUBFLOW = flow(
    {
        "name": "start",
        "type": "run-subflow",
        "transitions": [{"event": "completed"}, {"event": "failed"}],
        "properties": {
            "flow_sid": "FW" + "0" * 32,
            "flow_revision": "LatestPublished",
            "parameters": [{"key": "plan", "value": "{{flow.data.plan}}"}],
        },
    }
)

READS_EVERYTHING = flow(
    {
        "name": "start",
        "type": "make-http-request",
        "transitions": [{"event": "success"}],
        "properties": {"url": "https://x.example.com", "body": "{{flow.data | to_json}}"},
    },
    {
        "name": "greet",
        "type": "send-message",
        "transitions": [{"event": "sent"}],
        "properties": {"body": "Hi {{flow.data.first_name}}"},
    },
)

NOT_REST_READY = flow(
    {
        "name": "start",
        "type": "send-message",
        "transitions": [{"event": "sent"}],
        "properties": {"body": "Hi {{flow.data.first_name}}"},
    },
    first=None,
)
