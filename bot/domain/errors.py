"""Every exception the bot raises on purpose, in one place, so a reader sees what to catch.

    Exception
    ├── ValueError
    │   ├── CommandError        the /engage text does not parse (str() is the message)
    │   ├── ParameterError      a parameter breaks the rules of bot.domain.parameters (.token)
    │   ├── CsvError            a CSV file cannot be read as contacts (str() says why)
    │   │   └── TooManyRows     more rows than BULK_MAX_ROWS (.count, .limit)
    │   ├── PhoneError          not a number Twilio can reach (str() says why)
    │   └── BadRequest          a request to /slack/events that is not Slack's (.status)
    ├── ConfigError             the configuration cannot start the bot (.problems, by name)
    ├── StateUnavailable        the shared store (Redis) did not answer (cause: redis-py's)
    ├── SlackReplyError         Slack refused a reply (response_url or Web API)
    ├── SlackFileError          a file shared in Slack cannot be read (str() says why)
    └── StudioError             talking to Studio failed (.code, .more_info, .status)
        ├── StudioNotSent       nothing left the bot: nothing started
        │   ├── StudioConnectionError   no connection to Twilio could be opened
        │   └── StudioBusy      no room under STUDIO_RATE_LIMIT in time
        ├── StudioAPIError      Twilio answered with an error status
        │   └── StudioServerError   a 5xx: the flow may have started (also OutcomeUnknown)
        ├── StudioOutcomeUnknown    sent, no usable answer: the flow may have started
        └── StudioBadAnswer     a read's answer is not what the spec says

Where each is caught: ``CommandError`` by the listeners and the CLI (an ephemeral
error, exit 2); ``ConfigError`` at start-up (exit 2); ``StudioError`` by the use-case,
whose ``outcome_unknown`` decides between "not started" and "check the Console";
``StateUnavailable`` where durable state is needed (the user is told, nothing sent);
``SlackReplyError`` by the delivery of replies (logged: the audit line is the record).
Pure: no I/O, no imports from the rest of the bot.
"""

from __future__ import annotations


class CommandError(ValueError):
    """The text is not a valid ``/engage`` command. ``str()`` is the message for the user."""

    def __init__(self, problem: str, token: str | None = None) -> None:
        self.problem = problem
        self.token = token  # the part of the text at fault, when there is one
        super().__init__(problem)


class ParameterError(ValueError):
    """A parameter key or value breaks the rules (``bot.domain.parameters``); ``str()`` is the
    message, ``token`` the part of the input at fault."""

    def __init__(self, problem: str, token: str | None = None) -> None:
        self.problem = problem
        self.token = token
        super().__init__(problem)


class CsvError(ValueError):
    """A file cannot be read as a bulk run's contacts; ``str()`` says why, for people."""


class TooManyRows(CsvError):
    """More rows than BULK_MAX_ROWS: nothing is read further, nothing is sent."""

    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"{count} rows is more than BULK_MAX_ROWS={limit}")
        self.count = count
        self.limit = limit


class PhoneError(ValueError):
    """The text is not a phone number Twilio can reach; ``str()`` says why."""


class BadRequest(ValueError):
    """A request that is not Slack's, or not as Slack sends it; ``status`` says which."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class ConfigError(Exception):
    """The configuration cannot start the bot; ``problems`` names each one."""

    def __init__(self, problems: list[str], *, example: str = ".env.example") -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"studio-engage cannot start: {len(problems)} configuration problem(s):\n{lines}\n"
            f"Set them in the environment or in .env (see {example})."
        )


class StateUnavailable(Exception):
    """The shared store did not answer (what the client raised is named in ``str()``)."""


class SlackReplyError(Exception):
    """Slack did not take a reply: ``response_url`` answered an error, or the Web API did."""


class SlackFileError(Exception):
    """A file shared in Slack cannot be read whole from Slack's file host; ``str()`` says
    why, for people (never a URL or a token)."""


class StudioError(Exception):
    """Any failure talking to Studio. ``str()`` is a sentence for people."""

    #: True when the request may have reached Twilio and started the flow anyway.
    outcome_unknown: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        more_info: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.more_info = more_info

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status={self.status!r},"
            f" code={self.code!r}, more_info={self.more_info!r})"
        )


class StudioNotSent(StudioError):
    """Nothing left the bot (it stopped, or failed, before sending): nothing started."""


class StudioAPIError(StudioError):
    """Twilio answered with an error status. A 4xx started nothing (``StudioServerError``
    is the 5xx, which may have)."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        code: int | None = None,
        more_info: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, more_info=more_info)


class StudioConnectionError(StudioNotSent):
    """The request never reached Twilio: nothing was started."""


class StudioOutcomeUnknown(StudioError):
    """The request was sent but no usable answer came back: the flow may have started."""

    outcome_unknown = True


class StudioServerError(StudioAPIError, StudioOutcomeUnknown):
    """Twilio answered 5xx: the request arrived, and the flow may have started anyway."""


class StudioBadAnswer(StudioError):
    """A read (not a start) was answered with a body that is not what Twilio documents."""


class StudioBusy(StudioNotSent):
    """No room under STUDIO_RATE_LIMIT within the wait allowed: nothing was sent."""

    def __init__(self) -> None:
        super().__init__(
            "too many requests to Studio across the account right now (STUDIO_RATE_LIMIT);"
            " nothing was sent, try again in a moment"
        )
