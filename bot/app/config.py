"""Configuration: the environment (or ``.env``) -> one validated ``Settings``.

Every problem is found at once and reported by variable name, never by value:
``load_settings`` raises ``ConfigError`` listing them all.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from datetime import time
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import phonenumbers
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.app.studio_flows import (
    SLACK_CHANNEL,
    FlowSpec,
    parse_flows,
    parse_ids,
    parse_studio_sender,
)
from bot.domain.command import FLOW_SID, Defaults
from bot.domain.consent import DEFAULT_OPT_OUT_WORDS, Cap, parse_cap, parse_words
from bot.domain.contact_clock import ContactClock, QuietHours, zone
from bot.domain.errors import ConfigError
from bot.domain.phone import is_messaging_service, normal_sid
from bot.domain.policy import SLACK_USER, Access, Policy
from bot.domain.rates import Rate

DEFAULT_STUDIO_URL = "https://studio.twilio.com"

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_API_KEY_SID = re.compile(r"^SK[0-9a-fA-F]{32}$")
_HOST_LABEL = re.compile(r"^[a-z0-9-]+$")


def check_redis_url(url: str) -> None:
    """Raise ValueError (never quoting the URL) unless redis-py can read ``url`` as meant.

    A password holding ``/``, ``#``, ``?``, ``@`` or ``:`` must be URL-encoded; otherwise
    the URL splits inside the password and the client would print part of it.
    """
    encode = "; a password with / # ? @ or : must be URL-encoded (%2F %23 %3F %40 %3A)"
    if not re.match(r"^(rediss?|unix)://", url):
        raise ValueError("must be a redis://, rediss:// or unix:// URL")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("is not a valid URL: its port is not a number" + encode) from None
    if parts.fragment:
        raise ValueError("is not a valid URL: it holds a #" + encode)
    if parts.netloc.count("@") > 1 or "@" in parts.path + parts.query:
        # e.g. redis://default:6380?x@127.0.0.1:6379 reads as host "default", port 6380
        raise ValueError("is ambiguous: an @ stands where the host should end" + encode)
    if parts.scheme != "unix":
        if not parts.hostname:
            raise ValueError("is not a valid URL: it names no host" + encode)
        if not re.fullmatch(r"(/\d*)?", parts.path):
            raise ValueError("is not a valid URL: the path must be a database number" + encode)


def studio_base_url(region: str | None, edge: str | None) -> str:
    """The Studio host as Twilio's libraries build it: ``studio.{edge}.{region}.twilio.com``.

    An edge without a region implies ``us1``, as in twilio-python.
    """
    if not region and not edge:
        return DEFAULT_STUDIO_URL
    labels = ["studio", edge, region or "us1", "twilio.com"]
    return "https://" + ".".join(label for label in labels if label)


def _check(pattern: re.Pattern[str], shape: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value is not None and not pattern.match(str(value)):
            raise ValueError(f"must be {shape}")
        return value

    return check


def _id_list(pattern: re.Pattern[str], what: str) -> Callable[[Any], Any]:
    """A validator for a comma-separated list of Slack IDs."""

    def check(value: Any) -> Any:
        return parse_ids(value, pattern, what) if isinstance(value, str) else value

    return check


def _token_kind(prefix: str, kind: str) -> Callable[[SecretStr | None], SecretStr | None]:
    def check(value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(prefix):
            raise ValueError(f"must be {kind} ({prefix}…)")
        return value

    return check


class Settings(BaseSettings):
    """Everything the bot reads from its environment. Secrets are ``SecretStr``."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        env_ignore_empty=True,  # a blank line in .env or a cleared PaaS field: the default
    )

    slack_bot_token: SecretStr | None = Field(
        default=None, description="`xoxb-…` bot token", json_schema_extra={"needed": "to serve"}
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        description="verifies every request from Slack (unsigned, wrongly signed or older"
        " than 5 minutes: 401)",
        json_schema_extra={"needed": "HTTP mode"},
    )
    slack_app_token: SecretStr | None = Field(
        default=None,
        description="`xapp-…` with `connections:write`; when set, the bot connects by Socket"
        " Mode instead of listening on HTTP",
        json_schema_extra={"needed": "Socket Mode"},
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/",
        description="Slack Web API base (proxies, tests); the bot token is sent for file"
        " downloads only to `files.slack.com` (or this URL's host, when it is not Slack's)",
    )

    twilio_account_sid: str | None = Field(
        default=None, description="the account SID, `AC…`", json_schema_extra={"needed": "yes"}
    )
    twilio_auth_token: SecretStr | None = Field(
        default=None,
        description="the account's auth token (or the API key pair below); also verifies"
        " Event Streams deliveries",
        json_schema_extra={"needed": "one of"},
    )
    twilio_api_key: str | None = Field(
        default=None,
        description="an `SK…` API key, Twilio's recommended credential (used when its"
        " secret is set too)",
        json_schema_extra={"needed": "one of"},
    )
    twilio_api_secret: SecretStr | None = Field(
        default=None, description="the API key's secret", json_schema_extra={"needed": "one of"}
    )
    twilio_region: str | None = Field(
        default=None,
        description="as Twilio's own libraries: `studio.{edge}.{region}.twilio.com`",
    )
    twilio_edge: str | None = Field(default=None, description="an edge alone implies region `us1`")

    studio_flow_sid: str | None = Field(
        default=None,
        description="the default flow, `FW…` (or `STUDIO_FLOWS`: with one named flow it is"
        " the default, with several a command must name one)",
        json_schema_extra={"needed": "yes*"},
    )
    studio_flows: Annotated[dict[str, FlowSpec], NoDecode] = Field(
        default={},
        description="named flows: `onboarding=FW…,survey=FW…`; a flow may be narrowed to some"
        " users or channels and have its own sender:"
        " `survey=FW…;users=U01|U02;channels=C01;from=+16175550100` (a Messaging Service"
        " `from=MG…` needs `STUDIO_API=v2`); `;quiet=off` exempts it from `QUIET_HOURS`;"
        " `;cap=1/7d` caps its starts to one contact (besides `CONTACT_CAP`)",
    )
    studio_from: str | None = Field(
        default=None,
        description="default sender: a Twilio number (E.164), `whatsapp:+…`, or a Messaging"
        " Service SID `MG…` (`STUDIO_API=v2` only)",
        json_schema_extra={"needed": "yes"},
    )
    studio_base_url: str | None = Field(
        default=None,
        description="Studio's base URL, default `https://studio.twilio.com`; overrides"
        " region and edge (proxies, tests)",
    )
    studio_api: Literal["v1", "v2"] = Field(
        default="v1",
        description="`v1` (Engagements) or `v2` (Executions, recommended: only v2 can end a"
        " run; v1's End deletes it)",
    )

    phone_default_region: str | None = Field(
        default=None,
        description="ISO country (`US`) for numbers typed without `+`; unset, a `+` is needed",
    )
    host: str = Field(default="0.0.0.0", description="the HTTP listener's address")
    port: int = Field(
        ge=1, le=65535, default=3000, description="the HTTP listener's port (a PaaS sets `$PORT`)"
    )
    shutdown_grace_seconds: float = Field(
        ge=0,
        le=600,
        default=25.0,
        description="after SIGTERM, how long work in flight may take to finish and report"
        " (a PaaS kills at about 30)",
    )

    # -- guardrails -----------------------------------------------------------
    admin_slack_users: Annotated[frozenset[str] | None, NoDecode] = Field(
        default=None,
        description="user IDs who may end anyone's run and read flows not configured here",
    )
    allowed_slack_users: Annotated[frozenset[str] | None, NoDecode] = Field(
        default=None, description="user IDs (`U…`, not names) who may start flows; unset: everyone"
    )
    allowed_slack_channels: Annotated[frozenset[str] | None, NoDecode] = Field(
        default=None,
        description="channel IDs (`C…`/`G…`/`D…`) where flows may be started; unset: everywhere",
    )
    workflow_unattended_users: Annotated[frozenset[str] | None, NoDecode] = Field(
        default=None,
        description="user IDs a Workflow Builder step may act for when nobody ran the workflow"
        " by hand (a scheduled or event trigger: Slack names no person); unset: nobody while"
        " `ALLOWED_SLACK_USERS`, `ADMIN_SLACK_USERS` or a flow's `users=` restrict users, else"
        " whoever *On behalf of* names",
    )
    allowed_countries: Annotated[frozenset[str] | None, NoDecode] = Field(
        default=None,
        description="ISO codes of the countries contacts may be in (`US,CA`); unset: any",
    )
    allow_premium_numbers: bool = Field(
        default=False, description="`true` allows premium-rate and shared-cost contacts"
    )
    mask_numbers: bool = Field(
        default=False,
        description="`true` shows contacts as `+1 617-•••-1212` in the channel (the starter"
        " still sees the whole number)",
    )
    user_rate_limit: str = Field(
        default="10/minute",
        description="starts one user may make (`5/minute`, `100/day`, `2/3 hours`)",
    )
    studio_rate_limit: str = Field(
        default="20/second",
        description="account-wide pace of Studio requests (Studio's documented limit);"
        " excess waits in a queue",
    )
    pacing_max_wait_seconds: float = Field(
        ge=0,
        le=86400,
        default=10.0,
        description="how long a start may wait in that queue before it is refused",
    )
    duplicate_window_seconds: float = Field(
        ge=0,
        le=86400,
        default=60.0,
        description="the same user, flow and contact again within this asks first; `0`: off",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="`redis://…` or `rediss://…`: state shared by every process (limits,"
        " confirmations, followed runs, bulk runs); unset: this process's memory. A"
        " password holding `/ # ? @ :` must be URL-encoded",
    )
    flow_parameter_check: Literal["confirm", "refuse", "off"] = Field(
        default="confirm",
        description="parameters a flow lacks or never reads: `confirm` (ask first), `refuse`"
        " or `off`",
    )
    flow_cache_seconds: float = Field(
        ge=0,
        le=86400,
        default=300.0,
        description="how long a flow's definition is kept before Studio is asked again",
    )
    bulk_slack_users: Annotated[frozenset[str] | None, NoDecode] = Field(
        default=None,
        description="user IDs who may start bulk runs; unset: whoever may start the flow",
    )
    bulk_max_rows: int = Field(
        ge=1, le=200_000, default=5000, description="the most contacts in one bulk run"
    )
    follow_minutes: float = Field(
        ge=0,
        le=7 * 24 * 60,
        default=60.0,
        description="how long a card follows its run; `0` turns following off",
    )
    studio_read_rate_limit: str = Field(
        default="5/second",
        description="account-wide pace of the reads that follow runs, apart from starts",
    )
    twilio_events_url: str | None = Field(
        default=None,
        description="the public URL of `/twilio/events` as the Event Streams sink has it"
        " (needs `TWILIO_AUTH_TOKEN`); unset: runs are followed by polling",
    )
    run_record_days: float = Field(
        ge=1,
        le=3650,
        default=90.0,
        description="how long a record of each start (how it ended, its answers) is kept;"
        " longer than Studio's 30 days",
    )
    bulk_follow_hours: float = Field(
        ge=0,
        le=24 * 30,
        default=48.0,
        description="how long runs are followed to their end for their records (flows wait"
        " hours for replies); a run still active then is reported as such",
    )
    quiet_hours: Annotated[QuietHours | None, NoDecode] = Field(
        default=QuietHours(time(21), time(8)),
        description="`HH:MM-HH:MM` in the contact's local time (from the number's time zones)"
        " when nothing is started; `off` disables; a flow is exempt only by `;quiet=off`",
    )
    quiet_hours_tz: str = Field(
        default="UTC",
        description="the time zone of a number whose zone libphonenumber does not know, or"
        " that is not geographic (toll-free, VoIP, shared-cost, …)",
    )
    schedule_max_days: float = Field(
        gt=0,
        le=366,
        default=30.0,
        description="how far ahead `--at`, `--in` and the form may schedule",
    )
    schedule_late_minutes: float = Field(
        default=60.0,
        ge=0,
        le=7 * 24 * 60,
        description="a schedule that could not fire at its time (every process was down)"
        " fires late up to this many minutes, saying how late; later, it is cancelled and"
        " its starter told",
    )
    consent_key: SecretStr | None = Field(
        default=None,
        description="the secret the opt-out list is keyed by (HMAC-SHA256 of each number), at"
        " least 32 characters (`python -c 'import secrets; print(secrets.token_hex(32))'`);"
        " required with REDIS_URL; never change it: the list would no longer match anyone."
        " Unset without Redis: a key for this process (the list lives in its memory)",
    )
    contact_cap: Annotated[Cap | None, NoDecode] = Field(
        default=None,
        description="at most so many starts to one contact across every flow, e.g. `2/24h`"
        " (recommended; unset: no cap): a start Twilio accepted counts, a refused one does"
        " not; a flow's `;cap=` in STUDIO_FLOWS adds its own",
    )
    opt_out_words: Annotated[frozenset[str], NoDecode] = Field(
        default=frozenset(DEFAULT_OPT_OUT_WORDS),
        description="comma-separated answers that opt a contact out (case and spaces do not"
        " matter); Twilio's standard set by default",
    )
    metrics_enabled: bool = Field(
        default=True,
        description="`false`: nothing is counted and `/metrics` answers 404",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description="when set, `GET /metrics` answers only a request carrying"
        " `Authorization: Bearer <token>` (401 otherwise); recommended wherever the bot's"
        " port is public (a PaaS); unset: `/metrics` is open",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`json`: every log line one JSON object (time, level, logger, message,"
        " and the run or bulk run it concerns), for a log service; `text`: for a terminal",
    )
    redis_tls_verify: bool = Field(
        default=True,
        description="`false` uses a `rediss://` URL without checking the server's certificate"
        " (Heroku Redis's is self-signed)",
    )

    # -- field shapes (each reported by name; values are never echoed) --------

    _account_sid = field_validator("twilio_account_sid")(
        _check(_ACCOUNT_SID, "AC followed by 32 hex digits")
    )
    _api_key = field_validator("twilio_api_key")(
        _check(_API_KEY_SID, "SK followed by 32 hex digits")
    )

    @field_validator("studio_flow_sid")
    @classmethod
    def _flow_sid(cls, value: str | None) -> str | None:
        if value is not None and not FLOW_SID.match(value):
            raise ValueError("must be FW followed by 32 hex digits")
        return normal_sid(value) if value else None

    _edge_region = field_validator("twilio_region", "twilio_edge")(
        _check(_HOST_LABEL, "a lower-case host label such as ie1 or dublin")
    )

    _bot_token = field_validator("slack_bot_token")(_token_kind("xoxb-", "a bot token"))
    _app_token = field_validator("slack_app_token")(_token_kind("xapp-", "an app-level token"))

    @field_validator("studio_flows", mode="before")
    @classmethod
    def _flows(cls, value: Any) -> Any:
        return parse_flows(value) if isinstance(value, str) else value

    _users = field_validator(
        "allowed_slack_users",
        "admin_slack_users",
        "bulk_slack_users",
        "workflow_unattended_users",
        mode="before",
    )(_id_list(SLACK_USER, "user IDs"))
    _channels = field_validator("allowed_slack_channels", mode="before")(
        _id_list(SLACK_CHANNEL, "channel IDs")
    )

    @field_validator("allowed_countries", mode="before")
    @classmethod
    def _countries(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        codes = frozenset(c.strip().upper() for c in value.split(",") if c.strip())
        if not codes or not codes <= phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("must be ISO 3166 country codes such as US,CA,GB")
        return codes

    @field_validator("user_rate_limit", "studio_rate_limit", "studio_read_rate_limit")
    @classmethod
    def _rate(cls, value: str) -> str:
        Rate.parse(value)  # ValueError: "must be a rate such as 10/minute or 20/second"
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_redis_url(value.get_secret_value())
        return value

    @field_validator("studio_from")
    @classmethod
    def _sender(cls, value: str | None) -> str | None:
        return parse_studio_sender(value) if value is not None else None

    @field_validator("phone_default_region")
    @classmethod
    def _region(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError("must be an ISO 3166 country code such as US or GB")
        return value.upper() if value else None

    @field_validator("quiet_hours", mode="before")
    @classmethod
    def _quiet_hours(cls, value: Any) -> Any:
        return QuietHours.parse(value) if isinstance(value, str) else value

    @field_validator("contact_cap", mode="before")
    @classmethod
    def _cap(cls, value: Any) -> Any:
        return parse_cap(value) if isinstance(value, str) else value

    @field_validator("opt_out_words", mode="before")
    @classmethod
    def _words(cls, value: Any) -> Any:
        return parse_words(value) if isinstance(value, str) else value

    @field_validator("consent_key")
    @classmethod
    def _consent_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < 32:
            raise ValueError("must be at least 32 characters (a random secret)")
        return value

    @field_validator("quiet_hours_tz")
    @classmethod
    def _quiet_zone(cls, value: str) -> str:
        if zone(value) is None:
            raise ValueError("must be a tz database name such as UTC or America/New_York")
        return value

    @field_validator("slack_api_url", "studio_base_url", "twilio_events_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("must be an http(s):// URL")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _every_problem(cls, data: Any, handler: Callable[[Any], Settings]) -> Settings:
        """Report field problems and missing combinations together, by name."""
        if isinstance(data, Mapping):  # blank or all-space means the default, for every variable
            data = {key: value for key, value in data.items() if not _blank(value)}
        raw = data if isinstance(data, Mapping) else {}
        problems = cls.required(raw)
        try:
            settings = handler(data)
        except ValidationError as exc:
            problems = _field_problems(exc) + problems
            raise ConfigError(problems) from None
        problems += settings.inconsistencies()
        if problems:
            raise ConfigError(problems)
        return settings

    def inconsistencies(self) -> list[str]:
        """Values that are each valid but do not work together."""
        problems = []
        if self.twilio_events_url and self.twilio_auth_token is None:
            problems.append(
                "TWILIO_EVENTS_URL: Event Streams deliveries are signed with the auth token;"
                " set TWILIO_AUTH_TOKEN too (an API key cannot verify them)"
            )
        if self.redis_url is not None and self.consent_key is None:
            problems.append(
                "CONSENT_KEY: required with REDIS_URL (the opt-out list is kept there, keyed"
                " by it); generate one with python -c 'import secrets;"
                " print(secrets.token_hex(32))' and never change it"
            )
        if self.studio_api == "v1":
            senders = [("STUDIO_FROM", self.studio_from)] + [
                (f"STUDIO_FLOWS {alias} from", spec.sender)
                for alias, spec in self.studio_flows.items()
            ]
            problems += [
                f"{name}: a Messaging Service (MG…) sender needs STUDIO_API=v2; Studio's v1"
                " Engagements API takes only a phone number as From"
                for name, sender in senders
                if sender and is_messaging_service(sender)
            ]
        return problems

    # -- derived values -----------------------------------------------------

    @property
    def twilio_base_url(self) -> str:
        """Where Studio's API is: STUDIO_BASE_URL, else from TWILIO_REGION/TWILIO_EDGE."""
        base = self.studio_base_url or studio_base_url(self.twilio_region, self.twilio_edge)
        return base.rstrip("/")

    @property
    def twilio_credentials(self) -> tuple[str, SecretStr]:
        """The HTTP Basic pair: the API key and secret when set, else account SID and token."""
        if self.twilio_api_key and self.twilio_api_secret:
            return self.twilio_api_key, self.twilio_api_secret
        if self.twilio_account_sid is None or self.twilio_auth_token is None:
            raise ConfigError(["TWILIO_AUTH_TOKEN: missing"])  # required() rules this out
        return self.twilio_account_sid, self.twilio_auth_token

    @property
    def credential_names(self) -> tuple[str, str]:
        """The variables ``twilio_credentials`` came from, for masked output."""
        if self.twilio_api_key and self.twilio_api_secret:
            return "TWILIO_API_KEY", "TWILIO_API_SECRET"
        return "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"

    @property
    def command_defaults(self) -> Defaults:
        """What the ``/engage`` parser falls back on."""
        return Defaults(
            flows={alias: spec.sid for alias, spec in self.studio_flows.items()},
            flow_sid=self.studio_flow_sid,
            sender=self.studio_from,
            region=self.phone_default_region,
            flow_senders={s.sid: s.sender for s in self.studio_flows.values() if s.sender},
            api=self.studio_api,
        )

    @property
    def policy(self) -> Policy:
        """Who may start which flow from where, and which destinations are allowed."""
        return Policy(
            everywhere=Access(self.allowed_slack_users, self.allowed_slack_channels),
            per_flow={
                spec.sid: Access(spec.users, spec.channels)
                for spec in self.studio_flows.values()
                if spec.users is not None or spec.channels is not None
            },
            countries=self.allowed_countries,
            allow_costly=self.allow_premium_numbers,
            admins=self.admin_slack_users or frozenset(),
            configured=self.configured_flows,
            unattended=self.workflow_unattended_users,
        )

    @property
    def contact_clock(self) -> ContactClock:
        """Quiet hours as configured, with the flows exempt from them."""
        exempt = frozenset(spec.sid for spec in self.studio_flows.values() if not spec.quiet)
        return ContactClock(self.quiet_hours, self.quiet_hours_tz, exempt)

    @property
    def consent_secret(self) -> bytes:
        """CONSENT_KEY as bytes; unset (no Redis): a random key for this process."""
        if self.consent_key is None:
            return secrets.token_bytes(32)
        return self.consent_key.get_secret_value().strip().encode()

    @property
    def flow_caps(self) -> dict[str, Cap]:
        """Each flow's own ``;cap=``, by SID."""
        return {spec.sid: spec.cap for spec in self.studio_flows.values() if spec.cap}

    @property
    def configured_flows(self) -> frozenset[str]:
        """Every flow SID this bot is configured with (the default and the named ones)."""
        named = {spec.sid for spec in self.studio_flows.values()}
        return frozenset(named | ({self.studio_flow_sid} if self.studio_flow_sid else set()))

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @classmethod
    def required(cls, raw: Mapping[str, Any]) -> list[str]:
        """What must be set, alone or in combination, for the bot to reach Studio."""
        return _missing_for_studio(raw)


class SlackSettings(Settings):
    """Settings for serving Slack: Studio's plus the Slack tokens."""

    @classmethod
    def required(cls, raw: Mapping[str, Any]) -> list[str]:
        problems = super().required(raw)
        if not _present(raw, "slack_bot_token"):
            problems.append("SLACK_BOT_TOKEN: missing (the bot token, xoxb-…)")
        if not _present(raw, "slack_app_token") and not _present(raw, "slack_signing_secret"):
            problems.append(
                "SLACK_SIGNING_SECRET: missing (verifies Slack's requests over HTTP;"
                " or set SLACK_APP_TOKEN for Socket Mode)"
            )
        return problems


def _blank(value: Any) -> bool:
    """A value that says nothing (empty, or spaces alone), as a secret or as text."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return isinstance(value, str) and not value.strip()


def _present(raw: Mapping[str, Any], name: str) -> bool:
    value = raw.get(name)
    if value is None or _blank(value):  # whitespace alone is as good as unset
        return False
    return not isinstance(value, dict) or bool(value)


def _missing_for_studio(raw: Mapping[str, Any]) -> list[str]:
    problems = []
    if not _present(raw, "twilio_account_sid"):
        problems.append("TWILIO_ACCOUNT_SID: missing (your account SID, AC…)")
    has_key = _present(raw, "twilio_api_key")
    has_secret = _present(raw, "twilio_api_secret")
    if has_key != has_secret:
        problems.append("TWILIO_API_KEY and TWILIO_API_SECRET: set both, or neither")
    elif not has_key and not _present(raw, "twilio_auth_token"):
        problems.append(
            "TWILIO_AUTH_TOKEN: missing (or set TWILIO_API_KEY and TWILIO_API_SECRET instead)"
        )
    if not _present(raw, "studio_flow_sid") and not _present(raw, "studio_flows"):
        problems.append("STUDIO_FLOW_SID: missing (the default flow, FW…; or set STUDIO_FLOWS)")
    if not _present(raw, "studio_from"):
        problems.append("STUDIO_FROM: missing (the Twilio number flows send from, +…)")
    return problems


_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_UNITS = ("seconds", "minutes", "hours", "days", "rows")


def _range_problem(field: str) -> str:
    """What a number out of its ``Field(ge=…, le=…)`` bounds should be, in the words
    the rest of the configuration's problems use ("must be a number of days, 1-3650")."""
    low = high = None
    low_open = False
    for bound in Settings.model_fields[field].metadata:
        low = getattr(bound, "ge", low)
        if (above := getattr(bound, "gt", None)) is not None:
            low, low_open = above, True
        high = getattr(bound, "le", high)
    unit = next((u for u in _UNITS if field.endswith(u)), "")
    what = "a TCP port" if field == "port" else f"a number of {unit}" if unit else "a number"
    span = f"up to {high:g}" if low_open or low is None else f"{low:g}-{high:g}"
    return f"must be {what}, {span}"


def _field_problems(exc: ValidationError) -> list[str]:
    problems = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] in _RANGE_ERRORS and field in Settings.model_fields:
            message = _range_problem(field)
        problems.append(f"{(field or 'configuration').upper()}: {message}")
    return problems


def load_settings(*, need_slack: bool, **overrides: Any) -> Settings:
    """Read and validate the configuration. Raises ``ConfigError`` naming every problem.

    ``need_slack`` is false for ``python -m bot trigger``, which talks to Studio only.
    """
    cls = SlackSettings if need_slack else Settings
    return cls(**overrides)
