from __future__ import annotations

from pathlib import Path

import pytest

from bot.app.config import load_settings, studio_base_url
from bot.app.studio_flows import FlowSpec, parse_flows
from bot.domain.errors import ConfigError
from tests.peers import (
    ACCOUNT_SID,
    API_SECRET,
    AUTH_TOKEN,
    BOT_TOKEN,
    CONSENT_KEY,
    FLOW_SID,
    REDIS_PASSWORD,
    SIGNING_SECRET,
    SURVEY_SID,
)

GOOD = {
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "STUDIO_FLOW_SID": FLOW_SID,
    "STUDIO_FROM": "+16175550100",
    "SLACK_BOT_TOKEN": BOT_TOKEN,
    "SLACK_SIGNING_SECRET": SIGNING_SECRET,
    "CONSENT_KEY": CONSENT_KEY,
}


def set_env(monkeypatch: pytest.MonkeyPatch, values: dict[str, str]) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_a_complete_environment_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, GOOD)
    settings = load_settings(need_slack=True)
    assert settings.twilio_base_url == "https://studio.twilio.com"
    assert settings.twilio_credentials[0] == ACCOUNT_SID
    assert settings.twilio_credentials[1].get_secret_value() == AUTH_TOKEN
    assert settings.port == 3000
    assert settings.host == "0.0.0.0"
    assert not settings.socket_mode
    assert settings.command_defaults.flow_sid == FLOW_SID


def test_dotenv_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("\n".join(f"{k}={v}" for k, v in GOOD.items()) + "\nPORT=8080\n")
    settings = load_settings(need_slack=True)
    assert settings.port == 8080
    assert settings.studio_flow_sid == FLOW_SID


def test_every_problem_is_listed_at_once_by_name_never_by_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_env(
        monkeypatch,
        {
            "TWILIO_ACCOUNT_SID": "ACnot-a-sid",
            "TWILIO_AUTH_TOKEN": "",
            "STUDIO_FLOWS": "survey=FWnope",
            "STUDIO_FROM": "+18001234567",
            "SLACK_BOT_TOKEN": "xoxp-user-token-5ecret",
            "PHONE_DEFAULT_REGION": "XX",
            "PORT": "99999",
            "TWILIO_EDGE": "Not A Host",
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(need_slack=True)
    message = str(caught.value)
    for name in [
        "TWILIO_ACCOUNT_SID",
        "TWILIO_AUTH_TOKEN",
        "STUDIO_FLOWS",
        "STUDIO_FROM",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "PHONE_DEFAULT_REGION",
        "PORT",
        "TWILIO_EDGE",
    ]:
        assert name in message, name
    assert ".env.example" in message
    for value in ["xoxp-user-token-5ecret", "ACnot-a-sid", "FWnope", "99999"]:
        assert value not in message


def test_trigger_does_not_need_slack(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {k: v for k, v in GOOD.items() if not k.startswith("SLACK")})
    assert load_settings(need_slack=False).slack_bot_token is None
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        load_settings(need_slack=True)


def test_socket_mode_needs_no_signing_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {k: v for k, v in GOOD.items() if k != "SLACK_SIGNING_SECRET"})
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-1-5ecret")
    assert load_settings(need_slack=True).socket_mode


def test_api_key_is_preferred_and_needs_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {k: v for k, v in GOOD.items() if k != "TWILIO_AUTH_TOKEN"})
    monkeypatch.setenv("TWILIO_API_KEY", "SK" + "f" * 32)
    with pytest.raises(ConfigError, match="TWILIO_API_KEY and TWILIO_API_SECRET"):
        load_settings(need_slack=False)
    monkeypatch.setenv("TWILIO_API_SECRET", API_SECRET)
    settings = load_settings(need_slack=False)
    assert settings.twilio_credentials[0] == "SK" + "f" * 32
    assert settings.credential_names == ("TWILIO_API_KEY", "TWILIO_API_SECRET")


def test_secrets_are_masked_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, GOOD)
    monkeypatch.setenv("TWILIO_API_SECRET", API_SECRET)
    monkeypatch.setenv("TWILIO_API_KEY", "SK" + "f" * 32)
    settings = load_settings(need_slack=True)
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        for secret in (AUTH_TOKEN, BOT_TOKEN, SIGNING_SECRET, API_SECRET):
            assert secret not in text


def test_flows() -> None:
    assert parse_flows(f"onboarding={FLOW_SID}, survey = {SURVEY_SID},") == {
        "onboarding": FlowSpec(FLOW_SID),
        "survey": FlowSpec(SURVEY_SID),
    }
    assert parse_flows(f"survey={SURVEY_SID};users=U1AAA|W2BBB;channels=C3CCC") == {
        "survey": FlowSpec(SURVEY_SID, frozenset({"U1AAA", "W2BBB"}), frozenset({"C3CCC"}))
    }
    for bad in [
        f"={FLOW_SID}",
        "a=FW1",
        f"a {FLOW_SID}",
        f"a={FLOW_SID},A={SURVEY_SID}",
        f"help={FLOW_SID}",
        f"1a={FLOW_SID}",
    ]:
        with pytest.raises(ValueError, match="alias"):
            parse_flows(bad)


def test_flows_alone_are_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {k: v for k, v in GOOD.items() if k != "STUDIO_FLOW_SID"})
    monkeypatch.setenv("STUDIO_FLOWS", f"survey={SURVEY_SID}")
    assert load_settings(need_slack=True).command_defaults.flows == {"survey": SURVEY_SID}


def test_guardrail_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, GOOD)
    settings = load_settings(need_slack=True)
    assert settings.allowed_slack_users is None  # unset: everyone
    assert settings.user_rate_limit == "10/minute"
    assert settings.duplicate_window_seconds == 60
    set_env(
        monkeypatch,
        {
            "ALLOWED_SLACK_USERS": "U0AAA, W0BBB",
            "ALLOWED_SLACK_CHANNELS": "C0CCC",
            "ALLOWED_COUNTRIES": "us,ca",
            "ALLOW_PREMIUM_NUMBERS": "true",
            "MASK_NUMBERS": "1",
            "USER_RATE_LIMIT": "3/minute",
            "REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        },
    )
    settings = load_settings(need_slack=True)
    assert settings.allowed_slack_users == frozenset({"U0AAA", "W0BBB"})
    assert settings.allowed_countries == frozenset({"US", "CA"})
    assert settings.allow_premium_numbers
    assert settings.mask_numbers
    assert REDIS_PASSWORD not in repr(settings)


def test_guardrail_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, GOOD)
    set_env(
        monkeypatch,
        {
            "ALLOWED_SLACK_USERS": "zeke",
            "ALLOWED_SLACK_CHANNELS": "#ops",
            "ALLOWED_COUNTRIES": "USA",
            "USER_RATE_LIMIT": "lots",
            "DUPLICATE_WINDOW_SECONDS": "-1",
            "REDIS_URL": f"http://{REDIS_PASSWORD}@x",
        },
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(need_slack=True)
    message = str(caught.value)
    for name in [
        "ALLOWED_SLACK_USERS",
        "ALLOWED_SLACK_CHANNELS",
        "ALLOWED_COUNTRIES",
        "USER_RATE_LIMIT",
        "DUPLICATE_WINDOW_SECONDS",
        "REDIS_URL",
    ]:
        assert name in message
    assert REDIS_PASSWORD not in message


@pytest.mark.parametrize(
    ("region", "edge", "url"),
    [
        (None, None, "https://studio.twilio.com"),
        ("ie1", None, "https://studio.ie1.twilio.com"),
        ("au1", "sydney", "https://studio.sydney.au1.twilio.com"),
        (None, "dublin", "https://studio.dublin.us1.twilio.com"),
    ],
)
def test_region_and_edge_as_twilio_builds_them(
    region: str | None, edge: str | None, url: str
) -> None:
    assert studio_base_url(region, edge) == url


def test_base_url_overrides_region(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, GOOD)
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    monkeypatch.setenv("STUDIO_BASE_URL", "http://127.0.0.1:4010/")
    assert load_settings(need_slack=True).twilio_base_url == "http://127.0.0.1:4010"


def test_the_leak_check_finds_secrets() -> None:
    from tests.peers import leaked_secrets

    assert leaked_secrets(f"log line with {AUTH_TOKEN} inside") == ["tok…"]
    assert leaked_secrets(f"{BOT_TOKEN} and {SIGNING_SECRET}") == ["xox…", "5ec…"]
    assert leaked_secrets("nothing secret here") == []


MG = "MG" + "ab" * 16


@pytest.mark.parametrize(
    "url",
    [
        "redis://:Zk/Qy@127.0.0.1:6379/0",
        "redis://:Zk#Qy@127.0.0.1:6379/0",
        "redis://:Zk?Qy@127.0.0.1:6379/0",
        "redis://user:Zk/Qy@127.0.0.1:6379",
        "redis://:1/Qy@h",
        "redis://127.0.0.1:6379/ZkQy",
        "redis://default:6380?ZkQy@127.0.0.1:6379",  # would connect to host "default"
        "redis://:Zk@Qy@127.0.0.1:6379",
    ],
)
def test_a_redis_url_that_would_split_inside_the_password_is_a_named_problem(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    set_env(monkeypatch, GOOD | {"REDIS_URL": url})
    with pytest.raises(ConfigError) as caught:
        load_settings(need_slack=True)
    (problem,) = caught.value.problems
    assert problem.startswith("REDIS_URL: ")
    assert "URL-encoded" in problem
    assert "Zk" not in str(caught.value)
    assert "Qy" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:pa%2Fss%23x%3F@127.0.0.1:6379/1",
        "rediss://user:secret@redis.example.com:6380",
        "unix:///run/redis.sock",
    ],
)
def test_good_redis_urls_load_and_redis_reads_them(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    from redis.asyncio.connection import parse_url

    set_env(monkeypatch, GOOD | {"REDIS_URL": url})
    settings = load_settings(need_slack=True)
    assert settings.redis_url is not None
    parse_url(settings.redis_url.get_secret_value())  # redis-py reads it too


@pytest.mark.parametrize("name", ["SLACK_SIGNING_SECRET", "SLACK_BOT_TOKEN"])
def test_whitespace_alone_is_missing(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    set_env(monkeypatch, GOOD | {name: "   "})
    with pytest.raises(ConfigError) as caught:
        load_settings(need_slack=True)
    assert any(p.startswith(f"{name}: missing") for p in caught.value.problems)


def test_a_whitespace_app_token_is_not_socket_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, GOOD | {"SLACK_APP_TOKEN": " \t"})
    assert not load_settings(need_slack=True).socket_mode


def test_sids_are_normalised_once(monkeypatch: pytest.MonkeyPatch) -> None:
    upper_default = "FW" + FLOW_SID[2:].upper()
    upper_survey = "FW" + SURVEY_SID[2:].upper()
    set_env(
        monkeypatch,
        GOOD
        | {
            "STUDIO_FLOW_SID": upper_default,
            "STUDIO_FLOWS": f"survey={upper_survey};users=U0BOSS",
        },
    )
    settings = load_settings(need_slack=True)
    assert settings.studio_flow_sid == FLOW_SID
    assert settings.studio_flows["survey"].sid == SURVEY_SID
    assert SURVEY_SID in settings.policy.per_flow


def test_messaging_service_senders(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, GOOD | {"STUDIO_FROM": MG, "STUDIO_API": "v2"})
    assert load_settings(need_slack=True).studio_from == MG
    set_env(monkeypatch, GOOD | {"STUDIO_FROM": MG, "STUDIO_API": "v1"})
    with pytest.raises(ConfigError) as caught:
        load_settings(need_slack=True)
    assert caught.value.problems == [
        "STUDIO_FROM: a Messaging Service (MG…) sender needs STUDIO_API=v2; Studio's v1"
        " Engagements API takes only a phone number as From"
    ]
    set_env(monkeypatch, GOOD | {"STUDIO_FROM": "MG123", "STUDIO_API": "v2"})
    with pytest.raises(ConfigError, match="STUDIO_FROM: is not a valid"):
        load_settings(need_slack=True)


def test_a_flow_may_name_its_own_sender(monkeypatch: pytest.MonkeyPatch) -> None:
    flows = f"survey={SURVEY_SID};from={MG},onboarding={FLOW_SID};from=+16175550199"
    set_env(monkeypatch, GOOD | {"STUDIO_FLOWS": flows, "STUDIO_API": "v2"})
    defaults = load_settings(need_slack=True).command_defaults
    assert defaults.flow_senders == {SURVEY_SID: MG, FLOW_SID: "+16175550199"}
    set_env(monkeypatch, GOOD | {"STUDIO_FLOWS": flows, "STUDIO_API": "v1"})
    with pytest.raises(ConfigError, match="STUDIO_FLOWS survey from: a Messaging Service"):
        load_settings(need_slack=True)
    with pytest.raises(ValueError, match="flow 'survey' from"):
        parse_flows(f"survey={SURVEY_SID};from=nope")


def test_quiet_hours_and_schedules_are_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        GOOD
        | {
            "QUIET_HOURS": "22:30-07:15",
            "QUIET_HOURS_TZ": "Europe/London",
            "SCHEDULE_MAX_DAYS": "7",
            "STUDIO_FLOWS": f"survey={SURVEY_SID},codes={FLOW_SID};quiet=off",
        },
    )
    settings = load_settings(need_slack=True)
    clock = settings.contact_clock
    assert str(clock.quiet) == "22:30-07:15"
    assert clock.fallback == "Europe/London"
    assert clock.exempt == frozenset({FLOW_SID})
    assert settings.schedule_max_days == 7
    monkeypatch.setenv("QUIET_HOURS", "off")
    assert load_settings(need_slack=True).contact_clock.quiet is None


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("QUIET_HOURS", "9pm-8am", "QUIET_HOURS: must be HH:MM-HH:MM"),
        ("QUIET_HOURS", "08:00-08:00", "QUIET_HOURS: start and end are the same time"),
        ("QUIET_HOURS_TZ", "Mars/Olympus", "QUIET_HOURS_TZ: must be a tz database name"),
        ("SCHEDULE_MAX_DAYS", "0", "SCHEDULE_MAX_DAYS: must be a number of days"),
        ("STUDIO_FLOWS", f"codes={FLOW_SID};quiet=maybe", "quiet: must be off"),
    ],
)
def test_bad_quiet_hours_and_schedule_settings_are_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, says: str
) -> None:
    set_env(monkeypatch, GOOD | {name: value})
    with pytest.raises(ConfigError, match=says):
        load_settings(need_slack=True)


def _optional_names() -> list[str]:
    from bot.app.config import SlackSettings

    return [name.upper() for name in SlackSettings.model_fields if name.upper() not in GOOD]


@pytest.mark.parametrize("blank", ["", "   "])
def test_every_variable_left_blank_means_its_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, blank: str
) -> None:
    """A cleared PaaS field or a blank line in .env is the default, never "off" or an error."""
    from bot.app.config import SlackSettings

    monkeypatch.chdir(tmp_path)
    set_env(monkeypatch, GOOD)
    names = _optional_names()
    assert "QUIET_HOURS" in names
    assert "USER_RATE_LIMIT" in names
    for name in names:
        monkeypatch.setenv(name, blank)
    settings = load_settings(need_slack=True)
    defaults = SlackSettings.model_construct()
    for name in names:
        field = name.lower()
        assert getattr(settings, field) == getattr(defaults, field), name
    assert str(settings.quiet_hours) == "21:00-08:00"  # the night-time guardrail stays on
    assert settings.host == "0.0.0.0"


def test_blank_lines_in_dotenv_are_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    lines = [f"{k}={v}" for k, v in GOOD.items()] + [f"{name}=" for name in _optional_names()]
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    settings = load_settings(need_slack=True)
    assert str(settings.quiet_hours) == "21:00-08:00"
    assert settings.port == 3000
    assert settings.user_rate_limit == "10/minute"


def test_quiet_hours_go_off_only_by_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, {**GOOD, "QUIET_HOURS": "off"})
    assert load_settings(need_slack=True).quiet_hours is None
