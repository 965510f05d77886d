"""Typed records as the store keeps them (bot.domain.record): containers go as JSON text
and read back as the values they were, including what older versions wrote."""

from __future__ import annotations

from bot.domain.schedule import Scheduled
from bot.runs.records import RunRecord
from bot.slack.follow import Followed

SCHEDULE = {
    "id": "s1",
    "flow_sid": "FW" + "a" * 32,
    "to": "+16175551212",
    "sender": "+16175550100",
    "user": "U1",
    "due": "1796212800.0",
}


def test_a_dict_goes_as_json_and_reads_back() -> None:
    item = Scheduled.model_validate({**SCHEDULE, "parameters": {"name": "Zoë", "n": {"a": 1}}})
    kept = item.fields()
    assert kept["parameters"] == '{"name": "Zo\\u00eb", "n": {"a": 1}}'
    assert Scheduled.of(kept) == item
    assert item.command.parameters == {"name": "Zoë", "n": {"a": 1}}


def test_what_an_older_version_wrote_still_reads() -> None:
    older = Scheduled.of({**SCHEDULE, "parameters": '{"first_name": "Zeke"}'})
    assert older is not None
    assert older.parameters == {"first_name": "Zeke"}
    card = Followed.of(
        {
            "sid": "FN" + "e" * 32,
            "flow_sid": "FW" + "a" * 32,
            "starter": "U1",
            "started": "1.0",
            "until": "2.0",
            "rank": "1|3|9",  # before 2026-12: progress as text
        }
    )
    assert card is not None
    assert card.shown == (0, 0, 0)  # the old field is ignored: the card is edited once more


def test_a_tuple_and_an_answer_map_read_back_typed() -> None:
    record = RunRecord.of(
        {
            "id": "r1",
            "flow_sid": "FW" + "a" * 32,
            "contact": "+1 617-•••-1212",
            "starter": "U1",
            "started_at": "1.0",
            "answers": '{"start": "5"}',
        }
    )
    assert record is not None
    assert record.answers == {"start": "5"}
    assert RunRecord.of(record.fields()) == record


def test_text_that_is_not_json_stays_for_the_field_to_refuse() -> None:
    assert Scheduled.of({**SCHEDULE, "parameters": "{not json"}) is None
    assert Scheduled.of({**SCHEDULE, "flow_alias": "[survey]"}) is not None  # text stays text
