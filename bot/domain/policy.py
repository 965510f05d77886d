"""Who may start, read and end what, and to where: the rules an operator configures.

Pure: no I/O. Each ``*_refusal`` returns the reason something may not happen
(naming the rule, so the user knows whom to ask), or None.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.domain.command import EngageCommand
from bot.domain.phone_facts import NumberFacts, facts

SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")  # a user ID, as Slack writes one


@dataclass(frozen=True)
class Access:
    """Slack IDs allowed; None means everyone."""

    users: frozenset[str] | None = None
    channels: frozenset[str] | None = None


@dataclass(frozen=True)
class Policy:
    everywhere: Access = field(default_factory=Access)
    per_flow: Mapping[str, Access] = field(default_factory=dict)  # flow SID -> narrower access
    countries: frozenset[str] | None = None  # ISO codes; None means any
    allow_costly: bool = False  # premium-rate and shared-cost numbers
    admins: frozenset[str] = frozenset()  # ADMIN_SLACK_USERS: end any run, read any flow
    configured: frozenset[str] | None = None  # the flows set up here; None: not known
    unattended: frozenset[str] | None = None  # WORKFLOW_UNATTENDED_USERS; None: unset


def restricts_users(policy: Policy) -> bool:
    """Whether any rule tells users apart (who may start, a flow's users, admins)."""
    return (
        policy.everywhere.users is not None
        or bool(policy.admins)
        or any(access.users is not None for access in policy.per_flow.values())
    )


def unattended_refusal(policy: Policy, user_id: str) -> str | None:
    """Why a workflow that nobody ran by hand (a schedule, an event) may not act for
    ``user_id``, or None. Nobody vouches for such a workflow's *On behalf of*: it may act
    only for the users ``WORKFLOW_UNATTENDED_USERS`` names, or, while that is unset,
    for anyone only where no rule tells users apart."""
    if policy.unattended is not None:
        if user_id in policy.unattended:
            return None
        return (
            "this workflow was not started by a person (a schedule or an event), and"
            f" WORKFLOW_UNATTENDED_USERS does not name {user_id}; set On behalf of to a user"
            " it names, or start the workflow from a form or a button"
        )
    if restricts_users(policy):
        return (
            "this workflow was not started by a person (a schedule or an event), so nobody"
            " vouches for On behalf of while ALLOWED_SLACK_USERS, ADMIN_SLACK_USERS or a"
            " flow's users= restrict who may start flows; start the workflow from a form or"
            " a button, or ask an admin to name the users it may act for in"
            " WORKFLOW_UNATTENDED_USERS"
        )
    return None


def destination_refusal(
    policy: Policy, command: EngageCommand, known: NumberFacts | None = None
) -> str | None:
    """Why the contact may not be reached (toll-fraud rules), or None (``known``: its
    number's facts, when already read)."""
    info = known or facts(command.to)
    if policy.countries is not None and info.country not in policy.countries:
        allowed = ",".join(sorted(policy.countries))
        return (
            f"numbers in {info.country} are not allowed here (ALLOWED_COUNTRIES={allowed});"
            " ask an admin if this contact is legitimate"
        )
    if info.costly and not policy.allow_costly:
        return (
            f"the contact is {info.costly}, refused to prevent toll fraud"
            " (ALLOW_PREMIUM_NUMBERS is off)"
        )
    return None


def access_refusal(
    policy: Policy, flow_sid: str, name: str | None, user_id: str, channel_id: str | None
) -> str | None:
    """Why ``user_id`` may not use ``flow_sid`` (named ``name``) in ``channel_id``, or None.
    ``channel_id`` None: not known yet (a form opened from the Home tab, where the channel
    is chosen in the form): only the user rules apply, and the channel is checked when
    the form is submitted."""
    rules = [("ALLOWED_SLACK_USERS", "ALLOWED_SLACK_CHANNELS", policy.everywhere)]
    narrower = policy.per_flow.get(flow_sid)
    if narrower is not None:
        name = name or flow_sid
        rules.append((f"STUDIO_FLOWS {name} users", f"STUDIO_FLOWS {name} channels", narrower))
    for users_rule, channels_rule, access in rules:
        if access.users is not None and user_id not in access.users:
            return f"you are not allowed to use this flow ({users_rule}); ask an admin"
        if (
            channel_id is not None
            and access.channels is not None
            and (channel_id not in access.channels)
        ):
            return f"this flow cannot be used from this channel ({channels_rule})"
    return None


def refusal(policy: Policy, command: EngageCommand, user_id: str, channel_id: str) -> str | None:
    """Why ``user_id`` may not run ``command`` in ``channel_id``, or None if it may."""
    return access_refusal(
        policy, command.flow_sid, command.flow_alias, user_id, channel_id
    ) or destination_refusal(policy, command)


def read_refusal(
    policy: Policy, flow_sid: str, name: str | None, user_id: str, channel_id: str
) -> str | None:
    """Why ``user_id`` may not look at (or end) runs of ``flow_sid``: the access rules of
    starting it, and a flow not configured here is for admins only."""
    known = policy.configured is None or flow_sid in policy.configured
    if not known and user_id not in policy.admins:
        return (
            "that flow is not configured here (STUDIO_FLOW_SID, STUDIO_FLOWS); only admins"
            " (ADMIN_SLACK_USERS) can look at its runs"
        )
    return access_refusal(policy, flow_sid, name, user_id, channel_id)


def may_end(policy: Policy, user_id: str, starter: str | None) -> bool:
    """The End rule: the person who started the run, or an admin."""
    return user_id in policy.admins or (starter is not None and user_id == starter)


def optout_refusal(policy: Policy, user_id: str) -> str | None:
    """Why ``user_id`` may not add a contact to the opt-out list, or None: anyone who may
    start flows may (adding is always safe), from any channel."""
    users = policy.everywhere.users
    if users is None or user_id in users or user_id in policy.admins:
        return None
    return (
        "only people who may start flows (ALLOWED_SLACK_USERS) can opt contacts out; ask an admin"
    )


def admin_refusal(policy: Policy, user_id: str, what: str) -> str | None:
    """Why ``user_id`` may not do ``what`` (an admin's act), or None."""
    if user_id in policy.admins:
        return None
    return f"only admins (ADMIN_SLACK_USERS) can {what}"
