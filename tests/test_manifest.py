"""``manifest.yml`` as Slack takes it (issue 32, 19): *Create New App → From an app
manifest* refuses a manifest its schema refuses, so the README's first step would fail.

Slack publishes the schema in the public repository slackapi/manifest-schema
(``schemas/manifest.schema.2.0.0.json``, MIT; read at commit c50cfa8). Two checks:

- the limits of that schema that bear on the fields this manifest uses, as facts
  (lengths, counts, the parameter types, the functions' shape), always;
- the whole schema, with ``jsonschema``, from ``shared/slack/manifest.schema.2.0.0.json``
  beside the checkout where the workplace provides that copy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO.parent / "shared" / "slack" / "manifest.schema.2.0.0.json"

# Slack's schema: "app-manifests.v1.hermes.types.type" -> "type" -> "enum"
PARAMETER_TYPES = {
    "integer", "number", "boolean", "string", "object", "array",
    "slack#/types/user_context", "slack#/types/user_permission", "slack#/types/user_id",
    "slack#/types/channel_id", "slack#/types/usergroup_id", "slack#/types/timestamp",
    "slack#/types/blocks", "slack#/types/credential/oauth2", "slack#/types/date",
    "slack#/types/interactivity", "slack#/types/rich_text", "slack#/types/form_input",
    "slack#/types/form_input_object", "slack#/types/message_ts", "slack#/types/message_context",
}  # fmt: skip


def manifest() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / "manifest.yml").read_text())
    return loaded


def within(text: str, low: int, high: int) -> bool:
    return low <= len(text) <= high


def test_display_and_bot_names_fit() -> None:
    shown = manifest()["display_information"]
    assert within(shown["name"], 1, 35)
    assert within(shown["description"], 1, 140)
    assert within(manifest()["features"]["bot_user"]["display_name"], 1, 80)


def test_every_shortcut_fits_slacks_limits() -> None:
    """The finding: two shortcut names were 29 and 25 characters; Slack allows 24."""
    shortcuts = manifest()["features"]["shortcuts"]
    assert 1 <= len(shortcuts) <= 10
    for shortcut in shortcuts:
        assert set(shortcut) <= {"name", "type", "callback_id", "description"}
        assert within(shortcut["name"], 1, 24), shortcut["name"]
        assert within(shortcut["description"], 1, 150), shortcut["name"]
        assert within(shortcut["callback_id"], 1, 255)
        assert shortcut["type"] in {"message", "global"}


def test_the_slash_command_fits() -> None:
    (command,) = manifest()["features"]["slash_commands"]
    assert command["command"].startswith("/")
    assert within(command["command"], 2, 32)
    assert within(command["description"], 1, 2000)
    assert within(command["usage_hint"], 1, 1000)
    assert command["url"].startswith(("https://", "http://"))


def test_functions_declare_their_parameters_as_slack_reads_them() -> None:
    """``input_parameters``/``output_parameters`` hold ``properties`` (and ``required``
    naming some of them): a flat map of parameters is refused."""
    functions = manifest()["functions"]
    assert 0 < len(functions) <= 50
    for function in functions.values():
        assert set(function) == {"title", "description", "input_parameters", "output_parameters"}
        for side in ("input_parameters", "output_parameters"):
            declared = function[side]
            assert set(declared) <= {"properties", "required"}
            assert len(declared["properties"]) <= 50
            assert set(declared.get("required", [])) <= set(declared["properties"])
            for parameter in declared["properties"].values():
                assert parameter["type"] in PARAMETER_TYPES


def test_bot_events_and_scopes_fit() -> None:
    settings = manifest()["settings"]
    events = settings["event_subscriptions"]["bot_events"]
    assert len(events) <= 100
    assert all(within(event, 1, 50) for event in events)
    scopes = manifest()["oauth_config"]["scopes"]["bot"]
    assert all(within(scope, 1, 50) for scope in scopes)


@pytest.mark.skipif(not SCHEMA.exists(), reason=f"Slack's schema is not at {SCHEMA}")
def test_the_manifest_validates_against_slacks_whole_schema() -> None:
    import jsonschema  # type: ignore[import-untyped]

    schema = json.loads(SCHEMA.read_text())
    document = {"_metadata": {"major_version": 2}, **manifest()}
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=str)
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []
