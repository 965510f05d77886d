"""A CSV file shared in Slack, read the way a careless user, a hostile one and a bad
network would have it read: delivered in pieces, cut short, crafted to send the bot
token elsewhere, in Excel's encodings (issue 21, findings 1, 2 and 5)."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from tests.harness import Harness, buttons, text_of, wired
from tests.peers import FakeSlack, FakeStudio, serve
from tests.test_bulk_e2e import csv_shortcut, results, until

NUMBERS = ["+4930123456790", "+4930123456791", "+4930123456792"]
FILE = ("to,first_name\n" + "".join(f"{n},Name{i}\n" for i, n in enumerate(NUMBERS))).encode()


async def shared(
    monkeypatch: pytest.MonkeyPatch, slack: FakeSlack, url: str | None = None
) -> dict[str, Any]:
    """FILE shared in ``slack`` as list.csv, the shortcut used on it: the first reply."""
    slack.files["list.csv"] = FILE
    async with wired(monkeypatch, FakeStudio(), slack) as run:
        await csv_shortcut(run, "survey", "list.csv", url=url)
        (reply,) = await run.slack.wait_for_replies(1)
    return reply


async def shown_preview(run: Harness) -> dict[str, Any]:
    (shown,) = await run.slack.wait_for_replies(1)
    return shown


async def test_a_file_delivered_in_pieces_is_read_whole_and_sends_only_its_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slack = FakeSlack(split_files=True)
    slack.files["list.csv"] = FILE
    async with wired(monkeypatch, FakeStudio(), slack) as run:
        await csv_shortcut(run, "survey", "list.csv")
        shown = await shown_preview(run)
        assert "3 valid, 0 invalid" in shown["text"]
        await run.click("bulk_start", buttons(shown)["bulk_start"]["value"])
        await until(lambda: run.slack.uploads)
    assert sorted(c["form"]["To"] for c in run.studio.creates()) == NUMBERS


async def test_a_400_row_file_in_pieces_previews_400(monkeypatch: pytest.MonkeyPatch) -> None:
    slack = FakeSlack(split_files=True)
    slack.files["big.csv"] = ("to\n" + "".join(f"+1617555{i:04d}\n" for i in range(400))).encode()
    async with wired(monkeypatch, FakeStudio(), slack) as run:
        await csv_shortcut(run, "survey", "big.csv")
        shown = await shown_preview(run)
    assert "400 valid" in shown["text"]


@pytest.mark.parametrize(
    ("setup", "said"),
    [
        ({"cut_files": {"list.csv": 40}}, "broke off"),
        ({"file_sizes": {"list.csv": len(FILE) + 10}}, "ended early"),
    ],
)
async def test_a_file_that_ends_early_is_refused_and_nothing_is_previewed(
    monkeypatch: pytest.MonkeyPatch, setup: dict[str, Any], said: str
) -> None:
    slack = FakeSlack(**setup)
    slack.files["list.csv"] = FILE
    async with wired(monkeypatch, FakeStudio(), slack) as run:
        await csv_shortcut(run, "survey", "list.csv")
        shown = await shown_preview(run)
        await run.idle()
    assert said in shown["text"]
    assert "bulk_start" not in text_of(shown)
    assert run.studio.requests == []


async def test_the_token_never_goes_to_a_url_from_the_payload_or_off_slacks_file_host(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stolen: list[str] = []

    async def thief(request: web.Request) -> web.Response:
        stolen.append(request.headers.get("Authorization", ""))
        return web.Response(body=FILE)

    app = web.Application()
    app.router.add_get("/{tail:.*}", thief)
    async with serve(app) as evil:
        # A crafted payload names another host: the bot asks Slack by ID instead.
        shown = await shared(monkeypatch, FakeSlack(), url=f"{evil}/list.csv")
        assert "3 valid" in shown["text"]
        # Slack itself (or a crafted files.info) naming another host, or Slack's file
        # host redirecting elsewhere: refused, the token does not follow.
        for slack in (
            FakeSlack(file_urls={"list.csv": f"{evil}/list.csv"}),
            FakeSlack(redirect_files={"list.csv": f"{evil}/list.csv"}),
        ):
            refused = await shared(monkeypatch, slack)
            assert "not on Slack's file host" in refused["text"]
    assert stolen == []


async def test_who_may_start_a_bulk_run_is_checked_before_the_file_is_fetched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for env in ({"ALLOWED_SLACK_USERS": "U0BOSS"}, {"BULK_SLACK_USERS": "U0BOSS"}):
        slack = FakeSlack()
        slack.files["list.csv"] = FILE
        async with wired(monkeypatch, FakeStudio(), slack, env=env) as run:
            await csv_shortcut(run, "survey", "list.csv")
            (refused,) = await run.slack.wait_for_replies(1)
            await run.idle()
        assert "not allowed" in refused["text"]
        assert "files.info" not in slack.api_calls
        assert slack.downloads == []


@pytest.mark.parametrize(
    ("data", "name"),
    [
        ("to,name\n+16175551212,José Müller\n".encode("cp1252"), "Windows-1252"),
        ("to\tname\r\n+16175551212\tJosé Müller\r\n".encode("utf-16"), "UTF-16"),
    ],
)
async def test_excel_encodings_reach_studio_as_written(
    monkeypatch: pytest.MonkeyPatch, data: bytes, name: str
) -> None:
    slack = FakeSlack()
    slack.files["excel.csv"] = data
    async with wired(monkeypatch, FakeStudio(), slack) as run:
        await csv_shortcut(run, "survey", "excel.csv")
        shown = await shown_preview(run)
        assert f"as {name}" in text_of(shown)
        await run.click("bulk_start", buttons(shown)["bulk_start"]["value"])
        await until(lambda: run.slack.uploads)
    (create,) = run.studio.creates()
    assert '"name":"José Müller"' in create["form"]["Parameters"]


async def test_the_results_file_neutralises_formulas_from_twilio_and_contacts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    formula = "=cmd|' /C calc'!A0"
    studio = FakeStudio(answers=[(400, {"code": 21211, "message": formula, "status": 400})])
    slack = FakeSlack()
    slack.files["list.csv"] = b"to\n+16175551212\n"
    async with wired(monkeypatch, studio, slack) as run:
        await csv_shortcut(run, "survey", "list.csv")
        shown = await shown_preview(run)
        await run.click("bulk_start", buttons(shown)["bulk_start"]["value"])
        await until(lambda: run.slack.uploads)
    (row,) = results(run.slack)
    assert row["message"] == "'" + formula
    assert row["contact"] == "'+16175551212"  # text in a spreadsheet, not a number
