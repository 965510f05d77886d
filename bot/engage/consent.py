"""The suppression list and the contact caps, over the state store: who may not be
reached (they opted out), and who may not be reached again yet (``CONTACT_CAP``,
``;cap=``). The rules are pure (``bot.domain.consent``); this keeps them.

- The list is a hash keyed by ``Keyer.key`` (HMAC-SHA256 under ``CONSENT_KEY``): a copy
  of the store does not list numbers; each entry says when and how (masked). It never
  expires; a contact leaves it only by ``opt_in`` (an admin, with a reason).
- A start's check is part of the guardrails' one atomic step (``Store.admit``, through
  ``Throttle.admit``): ``check`` says what to ask. A start admitted holds a place in the
  contact's caps until ``release`` gives it back (nothing was sent, or Twilio refused).
- A bulk preview screens every row in one pass per few thousand (``screen``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bot.domain.caller import Caller
from bot.domain.command import EngageCommand
from bot.domain.consent import (
    DEFAULT_OPT_OUT_WORDS,
    Cap,
    Keyer,
    OptOut,
    Source,
    Suppressed,
    normal_word,
    opt_out_in,
)
from bot.domain.phone import mask
from bot.infra import audit
from bot.runs.records import RunRecord
from bot.state.admission import Admitted, CapRule, ConsentCheck
from bot.state.store import Durable

log = logging.getLogger(__name__)

OPTOUTS = "optouts"  # hash: contact key -> OptOut (JSON); and :latest, :sources
LATEST = 50  # the latest additions kept for /engage optouts
SCREEN_CHUNK = 2000  # contacts per script call when screening a bulk run
OVER = 2**31  # a cap's amount for a start an admin let over it: counted, never capped


REACH = "reach:"  # + a contact's key: its starts, counted by the caps


def _reach(key: str) -> str:
    return REACH + key


@dataclass(frozen=True)
class Listing:
    """``/engage optouts``: how many, by source, and the latest additions."""

    total: int
    by_source: dict[str, int] = field(default_factory=dict)
    latest: tuple[OptOut, ...] = ()


class Consent:
    """The suppression list and the caps, over ``Durable`` state. Raises
    ``StateUnavailable`` (every caller refuses to send on it)."""

    def __init__(
        self,
        state: Durable,
        *,
        secret: bytes,
        words: Iterable[str] = DEFAULT_OPT_OUT_WORDS,
        contact_cap: Cap | None = None,
        flow_caps: Mapping[str, Cap] | None = None,
    ) -> None:
        self.state = state
        self._keyer = Keyer(secret)
        self.words = frozenset(normal_word(w) for w in words)
        self.contact_cap = contact_cap
        self.flow_caps = dict(flow_caps or {})  # flow SID -> its ;cap=

    def key(self, to: str) -> str:
        """The contact's key in the list (an HMAC of its number)."""
        return self._keyer.key(to)

    def caps(self, flow_sid: str, *, over: bool = False) -> tuple[CapRule, ...]:
        """The caps a start of ``flow_sid`` is judged by (``over``: counted, not judged)."""
        rules: list[CapRule] = []
        if self.contact_cap is not None:
            rules.append((self.contact_cap.amount, self.contact_cap.seconds, ""))
        if (cap := self.flow_caps.get(flow_sid)) is not None:
            rules.append((cap.amount, cap.seconds, f"{flow_sid}|"))
        return tuple((OVER if over else a, s, p) for a, s, p in rules)

    def cap_text(self, flow_sid: str) -> str:
        """The caps of ``flow_sid`` as people read them."""
        parts = [f"{self.contact_cap} across flows (CONTACT_CAP)"] if self.contact_cap else []
        if (cap := self.flow_caps.get(flow_sid)) is not None:
            parts.append(f"{cap} for this flow (;cap=)")
        return " and ".join(parts)

    def check(
        self, command: EngageCommand, user_id: str, *, hold: bool, over: bool
    ) -> ConsentCheck:
        """What a start's admission asks of the store: the list, and (``hold``: a start
        now, not one kept for later) its place in the contact's caps (``over``: an admin
        lets it over them; it still counts)."""
        key = self.key(command.to)
        # a start kept for later is judged by the caps when it fires, not now
        caps = self.caps(command.flow_sid, over=over) if hold else ()
        member = f"{command.flow_sid}|{user_id}|{secrets.token_hex(4)}" if hold else ""
        return ConsentCheck(OPTOUTS, key, _reach(key) if caps else "", caps, member)

    def refusal(self, admitted: Admitted, flow_sid: str) -> Suppressed | None:
        """Why the store refused a start on consent, if it did."""
        return self._why(admitted.optout, admitted.again, flow_sid)

    def _why(self, entry: str | None, again: float, flow_sid: str) -> Suppressed | None:
        """The store's answer (its list's entry, when capped until) as a refusal."""
        if entry is not None:
            return Suppressed("opted_out", optout=OptOut.model_validate_json(entry))
        if again:
            return Suppressed("capped", until=again, cap=self.cap_text(flow_sid))
        return None

    async def release(self, user_id: str, command: EngageCommand) -> None:
        """Give back the hold a start took on the contact's caps: it reached no one."""
        if self.caps(command.flow_sid):
            reach, prefix = _reach(self.key(command.to)), f"{command.flow_sid}|{user_id}|"
            await self.state.use(lambda s: s.unhold(reach, prefix))

    # -- the list -------------------------------------------------------------------

    async def opt_out(self, to: str, source: Source, **about: str) -> bool:
        """Add ``to`` (adding is always safe); False if it was on the list already (its
        first entry is kept). ``about``: ``opt_out_key``'s who, why, which flow and run."""
        return await self.opt_out_key(self.key(to), mask(to), source, **about)

    async def opt_out_key(
        self,
        key: str,
        masked: str,
        source: Source,
        *,
        by: str = "",
        reason: str = "",
        flow_sid: str = "",
        sid: str = "",
    ) -> bool:
        """``opt_out`` by the contact's key (a run's record keeps the key, not the number)."""
        entry = OptOut(
            at=time.time(),
            source=source,
            contact=masked,
            by=by,
            reason=reason[:200],
            flow_sid=flow_sid,
            sid=sid,
        )
        text = entry.model_dump_json()
        return await self.state.use(lambda s: s.suppress(OPTOUTS, key, text, source, LATEST))

    async def opt_in(self, to: str) -> OptOut | None:
        """Take ``to`` off the list: its entry as it was, or None if it was not on it."""
        key = self.key(to)
        entry = await self.state.use(lambda s: s.unsuppress(OPTOUTS, key))
        return OptOut.model_validate_json(entry) if entry else None

    async def entry(self, to: str) -> OptOut | None:
        """The list's entry for ``to``, if it opted out."""
        return await self._entry(self.key(to))

    async def _entry(self, key: str) -> OptOut | None:
        entry = await self.state.use(lambda s: s.hget(OPTOUTS, key))
        return OptOut.model_validate_json(entry) if entry else None

    async def listing(self, shown: int = 10) -> Listing:
        """How many opted out, by source, and the ``shown`` latest (newest first)."""
        total = await self.state.use(lambda s: s.hlen(OPTOUTS))
        counts = await self.state.use(lambda s: s.hgetall(OPTOUTS + ":sources"))
        keys = await self.state.use(
            lambda s: s.zrange(OPTOUTS + ":latest", float("-inf"), float("inf"))
        )
        entries = await asyncio.gather(*(self._entry(key) for key in reversed(keys[-shown:])))
        latest = [entry for entry in entries if entry is not None]
        by_source = {source: int(n) for source, n in counts.items() if int(n) > 0}
        return Listing(total, by_source, tuple(latest))

    async def screen(self, contacts: Sequence[str], flow_sid: str) -> dict[str, Suppressed]:
        """Every contact of ``contacts`` that may not be reached now (opted out, or
        capped), judged as a start would be, nothing held: a few round trips for any
        number (``SCREEN_CHUNK`` contacts each)."""
        caps = self.caps(flow_sid)
        found: dict[str, Suppressed] = {}
        unique = list(dict.fromkeys(contacts))
        chunks = [unique[i : i + SCREEN_CHUNK] for i in range(0, len(unique), SCREEN_CHUNK)]
        screened = await asyncio.gather(*(self._screen(chunk, caps) for chunk in chunks))
        for chunk, answers in zip(chunks, screened, strict=True):
            for i, answer in answers.items():  # "o" + its entry, or "c" + when reachable
                entry, again = (answer[1:], 0.0) if answer[0] == "o" else (None, float(answer[1:]))
                if why := self._why(entry, again, flow_sid):
                    found[chunk[i]] = why
        return found

    async def _screen(self, contacts: list[str], caps: tuple[CapRule, ...]) -> dict[int, str]:
        keys = [self.key(to) for to in contacts]
        reach = REACH if caps else ""
        return await self.state.use(lambda s: s.screen(OPTOUTS, keys, reach, caps))

    async def heard(self, record: RunRecord, context: object) -> None:
        """A run ended: if an answer is an opt-out word, or Twilio's 21610 is in its
        context, its contact joins the list (audited, masked). Raises ``StateUnavailable``."""
        found = opt_out_in(record.answers, context, self.words)
        if found is None:
            return
        source, word = found
        if not record.contact_key:  # recorded before the list existed: the number is unknown
            log.warning("run %s: an opt-out (%s) whose contact is not known", record.sid, source)
            return
        added = await self.opt_out_key(
            record.contact_key,
            record.contact,
            source,
            reason=word,
            flow_sid=record.flow_sid,
            sid=record.sid,
        )
        if added:
            detail = f"{source} in run {record.sid}, flow {record.flow_sid}; {record.contact}"
            audit.record("opt_out_added", Caller(record.starter, record.channel), detail=detail)
