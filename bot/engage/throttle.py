"""How often: per-user limits, account-wide pacing of Studio requests, the duplicate window.

Kept in a ``BestEffort`` store (``bot.state.store``): shared through Redis when
``REDIS_URL`` is set, and on this process's memory while Redis fails: limits per
process, never unlimited and never a crash.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from bot.domain.command import EngageCommand
from bot.domain.rates import Rate
from bot.infra import metrics
from bot.state.admission import Admitted, ConsentCheck
from bot.state.store import BestEffort

SPACING = 1.04  # send a little slower than the limit: requests arrive with jitter
BULK_HORIZON = 0.1  # seconds ahead a bulk row may reserve (single commands go first)
# A send this late for its slot takes a new one (a stall would bunch them). Sends are
# SPACING apart, so any second holds at most the rate while each is under 40 ms late.
LATE = 0.04
LATE_RETRIES = 3  # ...at most this often: a loop always late still sends


class Throttle:
    """The "how often" guardrails."""

    def __init__(
        self,
        state: BestEffort | None = None,
        *,
        user_rate: str = "10/minute",
        studio_rate: str = "20/second",
        max_wait: float = 10.0,
        duplicate_window: float = 60.0,
        name: str = "studio",
    ) -> None:
        self.name = name  # the schedule's key: starts and reads pace apart
        self.state = state or BestEffort()
        self.user_rate = user_rate
        self.studio_rate = studio_rate
        self._user_item = Rate.parse(user_rate)
        self._studio_item = Rate.parse(studio_rate)
        self.max_wait = max_wait
        self.duplicate_window = duplicate_window
        # A bulk row or schedule asks for a slot only when the next is a moment away, so
        # many of them waiting at once would win slots by chance: 10,000 schedules due
        # together went out of due order, one 42 s late. In line, they ask in turn.
        self._in_line = asyncio.Lock()  # FIFO: in the order they asked, in this process

    async def user_wait(self, user_id: str, kind: str = "user") -> float:
        """Count one use for ``user_id``: 0 if within USER_RATE_LIMIT, else seconds to wait.

        ``kind`` keeps separate counts: starts (``user``) and looks at runs (``actions``).
        """
        return (await self._admit(user_id, kind, None)).wait

    async def admit(
        self,
        user_id: str,
        command: EngageCommand,
        *,
        rate: bool = True,
        claim: bool = True,
        consent: ConsentCheck | None = None,
    ) -> Admitted:
        """A start's guardrails in one round trip to the store: with ``consent``, the
        suppression list and the contact's caps (``bot.engage.consent``); a use counted
        under USER_RATE_LIMIT (unless not ``rate``) and, if it fits, the duplicate claim
        (unless not ``claim``). ``wait`` > 0 (at least a second) when the use does not fit.

        With ``consent`` the shared store must answer (``StateUnavailable`` if not): a
        list this process's memory does not hold would let an opted-out contact through."""
        window_claim = self._duplicate_key(user_id, command) if claim else None
        if window_claim is not None and self.duplicate_window <= 0:
            window_claim = None  # no window: never a duplicate
        if not rate and window_claim is None and consent is None:
            return Admitted(claimed=True)
        return await self._admit(user_id, "user" if rate else None, window_claim, consent)

    async def _admit(
        self,
        user_id: str,
        kind: str | None,
        claim: str | None,
        consent: ConsentCheck | None = None,
    ) -> Admitted:
        item = self._user_item
        limit = item.amount if kind is not None else -1
        uses = f"uses:{kind}:{user_id}" if kind is not None else "uses:-"
        admitted = await self.state.use(
            lambda store: store.admit(
                uses, limit, item.seconds, claim, self.duplicate_window, consent
            ),
            fallback=consent is None,
        )
        return replace(admitted, wait=max(1.0, admitted.wait)) if admitted.wait else admitted

    @property
    def per_second(self) -> float:
        """STUDIO_RATE_LIMIT as requests per second."""
        return self._studio_item.per_second

    async def pace(self, requests: int = 1, *, bulk: bool = False, queue: bool = False) -> bool:
        """Wait for a send time under STUDIO_RATE_LIMIT (account-wide): a schedule with
        one send every ``1 / rate`` seconds (a little more: arrivals jitter), shared by
        every process through the store, so that no second ever carries more than the
        rate, whichever process sends. False when the slot is more than ``max_wait``
        away (nothing reserved). A ``bulk`` row waits as long as it takes, reserving
        only the next moments' slots, so that a single command asking meanwhile is
        served right after them. With ``queue``, the next free slot is taken however far
        away it is, in one step, and waited for (reads that must happen, in order).

        A request woken more than ``LATE`` after its slot (the event loop was busy
        while it slept) takes a new slot rather than go out with the next one's, up to
        ``LATE_RETRIES`` times."""
        cost = max(1, min(requests, self._studio_item.amount))
        interval = cost * SPACING / self.per_second
        horizon = float("inf") if queue else BULK_HORIZON if bulk else self.max_wait
        clock = asyncio.get_running_loop().time
        late, asked = 0, clock()
        while True:
            if bulk and not queue:
                async with self._in_line:  # the first to ask reserves first
                    wait = await self._slot_soon(interval, horizon)
            else:
                wait = await self._reserve(interval, horizon)
                if wait < 0:
                    return False
            due = clock() + wait
            if wait > 0:
                await asyncio.sleep(wait)
            if clock() - due > LATE and late < LATE_RETRIES and not queue:
                # The loop stalled past the slot: sent now, this request would
                # arrive with the next ones. Its slot stays empty; take a new one.
                late += 1
                continue
            metrics.PACE_SECONDS.labels(self.name).observe(clock() - asked)
            return True

    async def _reserve(self, interval: float, horizon: float) -> float:
        """The wait for the next free slot, reserved; or, past ``horizon``, minus it."""
        return await self.state.use(
            lambda store: store.reserve(f"pace:{self.name}", interval, horizon)
        )

    async def _slot_soon(self, interval: float, horizon: float) -> float:
        """A slot at most ``horizon`` away, reserved once there is one (a bulk row's)."""
        while True:
            wait = await self._reserve(interval, horizon)
            if wait >= 0:
                return wait
            await asyncio.sleep(min(-wait - horizon, 0.25))

    @staticmethod
    def _duplicate_key(user_id: str, command: EngageCommand) -> str:
        return f"dup:{user_id}:{command.flow_sid}:{command.to}"

    async def claim(self, user_id: str, command: EngageCommand) -> bool:
        """Mark this user/flow/contact as just started; False if it already was, recently."""
        return (await self.admit(user_id, command, rate=False)).claimed

    async def restart_window(self, user_id: str, command: EngageCommand) -> None:
        """This user/flow/contact was just started again (confirmed): its duplicate window
        runs from now, whatever was claimed before."""
        if self.duplicate_window > 0:
            key, now = self._duplicate_key(user_id, command), f"{time.time():.6f}"
            await self.state.use(lambda s: s.set(key, now, self.duplicate_window))

    async def release(self, user_id: str, command: EngageCommand) -> None:
        """Forget a claim whose engagement certainly did not start, so a retry is not a duplicate."""
        if self.duplicate_window > 0:
            key = self._duplicate_key(user_id, command)
            await self.state.use(lambda s: s.pop(key))
