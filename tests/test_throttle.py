"""The "how often" guardrails on memory and on a real Redis, including an outage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from bot.domain.command import EngageCommand
from bot.engage.throttle import Throttle
from bot.state.store import BestEffort, RedisStore, Store
from tests.peers import FLOW_SID, RedisServer, redis_server

COMMAND = EngageCommand(FLOW_SID, None, "+16175551212", "+16175550100", {"a": {"b": [1]}})
OTHER = EngageCommand(FLOW_SID, None, "+16175551213", "+16175550100", {})


async def test_user_limit(store: Store) -> None:
    throttle = Throttle(BestEffort(store), user_rate="3/minute")
    waits = [await throttle.user_wait("U1") for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 50 < waits[3] <= 60
    assert await throttle.user_wait("U2") == 0.0  # per user


async def test_duplicate_window(store: Store) -> None:
    throttle = Throttle(BestEffort(store), duplicate_window=60)
    assert await throttle.claim("U1", COMMAND)
    assert not await throttle.claim("U1", COMMAND)
    assert await throttle.claim("U2", COMMAND)  # another user
    assert await throttle.claim("U1", OTHER)  # another contact
    await throttle.release("U1", COMMAND)  # it certainly did not start
    assert await throttle.claim("U1", COMMAND)


async def test_duplicate_window_expires(store: Store) -> None:
    throttle = Throttle(BestEffort(store), duplicate_window=0.3)
    assert await throttle.claim("U1", COMMAND)
    await asyncio.sleep(0.4)
    assert await throttle.claim("U1", COMMAND)


async def test_no_window_means_no_duplicate_check(store: Store) -> None:
    throttle = Throttle(BestEffort(store), duplicate_window=0)
    assert await throttle.claim("U1", COMMAND)
    assert await throttle.claim("U1", COMMAND)


async def test_pacing_queues_briefly_instead_of_failing(store: Store) -> None:
    throttle = Throttle(BestEffort(store), studio_rate="5/second", max_wait=5)
    started = time.monotonic()
    assert all([await throttle.pace() for _ in range(12)])
    elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 4  # 12 at 5 per moving second: two full windows of waiting


async def test_pacing_gives_up_after_max_wait(store: Store) -> None:
    throttle = Throttle(BestEffort(store), studio_rate="2/minute", max_wait=0.2)
    assert await throttle.pace()
    started = time.monotonic()
    assert not await throttle.pace()  # the next send time is 31 s away
    assert time.monotonic() - started < 1


async def test_a_request_woken_late_takes_a_new_slot(store: Store) -> None:
    """A stalled event loop must not send a late request together with the next one's."""
    throttle = Throttle(BestEffort(store), studio_rate="10/second")
    interval = 1.04 / 10
    assert await throttle.pace()  # now; the next slot is ~0.1 s away
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, time.sleep, 0.3)  # the loop is busy past that slot
    assert await throttle.pace()
    # The missed slot stayed empty and a fresh one was taken just now, so the schedule's
    # next free slot is about one interval away (not in the past, as it would be had the
    # request gone out late on its missed slot).
    wait = await throttle.state.use(lambda s: s.reserve("pace:studio", interval, 0.0))
    assert -interval * 1.1 < wait < -interval * 0.5


def most_in_a_second(times: list[float]) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


async def test_two_processes_pace_smoothly_on_one_schedule(redis: RedisServer) -> None:
    """Sends are spaced, not bunched at the start of each second, across processes."""
    stores = [RedisStore(redis.url.replace("/0", "/9")) for _ in range(2)]
    await stores[0].redis.flushdb()
    throttles = [Throttle(BestEffort(s), studio_rate="10/second", max_wait=10) for s in stores]
    sent: list[float] = []

    async def send(throttle: Throttle) -> None:
        assert await throttle.pace(bulk=True)
        sent.append(time.monotonic())

    started = time.monotonic()
    await asyncio.gather(*(send(throttles[i % 2]) for i in range(25)))
    took = time.monotonic() - started
    for store in stores:
        await store.aclose()
    assert most_in_a_second(sent) <= 10
    assert 2.2 < took < 4.0  # 25 sends at 10 a second (a little under): about 2.5 s
    gaps = [b - a for a, b in zip(sorted(sent), sorted(sent)[1:], strict=False)]
    assert min(gaps) > 0.05  # spaced, never a burst


async def test_a_single_command_goes_first_while_bulk_rows_wait(store: Store) -> None:
    throttle = Throttle(BestEffort(store), studio_rate="5/second", max_wait=10)

    async def bulk_rows() -> None:
        for _ in range(20):
            await throttle.pace(bulk=True)

    rows = asyncio.create_task(bulk_rows())
    await asyncio.sleep(0.5)  # the rows have the schedule to themselves a moment
    started = time.monotonic()
    assert await throttle.pace()
    waited = time.monotonic() - started
    rows.cancel()
    assert waited < 0.6  # behind the next moments' rows, not behind all twenty


async def test_bulk_waiters_take_their_slots_in_the_order_they_asked(store: Store) -> None:
    """The finding: 10,000 schedules due together each asked for the next moment's slot
    in turn, so who got it was chance; one waited 42 s past its place. In line, the
    first to ask is the first to go."""
    throttle = Throttle(BestEffort(store), studio_rate="20/second", max_wait=10)
    went: list[int] = []

    async def row(n: int) -> None:
        await throttle.pace(bulk=True)
        went.append(n)

    waiting = []
    for n in range(12):  # far more than the slots within a bulk row's horizon
        waiting.append(asyncio.create_task(row(n)))
        await asyncio.sleep(0.002)  # each asks after the one before
    await asyncio.gather(*waiting)
    assert went == list(range(12))


async def test_two_processes_share_one_redis(redis: RedisServer) -> None:
    a = Throttle(BestEffort(RedisStore(redis.url)), user_rate="2/minute")
    b = Throttle(BestEffort(RedisStore(redis.url)), user_rate="2/minute")
    await a.state.store.redis.flushdb()  # type: ignore[attr-defined]
    assert await a.user_wait("U9") == 0.0
    assert await b.user_wait("U9") == 0.0
    assert await a.user_wait("U9") > 0
    assert await b.claim("U9", COMMAND)
    assert not await a.claim("U9", COMMAND)
    await a.state.store.aclose()
    await b.state.store.aclose()


async def test_a_redis_outage_degrades_to_per_process_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with redis_server() as server:
        throttle = Throttle(BestEffort(RedisStore(server.url, timeout=0.5)), user_rate="2/minute")
        assert await throttle.user_wait("U1") == 0.0
        server.stop()
        # Still limited, never unlimited and never a crash: memory takes over.
        assert await throttle.user_wait("U1") == 0.0
        assert await throttle.user_wait("U1") == 0.0
        assert await throttle.user_wait("U1") > 0
        assert await throttle.claim("U1", COMMAND)
        assert not await throttle.claim("U1", COMMAND)
        assert await throttle.pace()
        await throttle.state.store.aclose()
    assert caplog.text.count("shared state unavailable") == 1  # said once, not per command


@pytest.mark.parametrize(
    "operation",
    ["user_wait", "pace", "claim", "release"],
)
async def test_redis_stopped_before_any_operation_falls_back(
    operation: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each operation meets the outage first (redis-py raises its own errors, not OSError)."""
    with redis_server() as server:
        throttle = Throttle(BestEffort(RedisStore(server.url, timeout=0.5)))
        server.stop()
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "user_wait": lambda: throttle.user_wait("U1"),
            "pace": lambda: throttle.pace(),
            "claim": lambda: throttle.claim("U1", COMMAND),
            "release": lambda: throttle.release("U1", COMMAND),
        }
        await calls[operation]()  # no exception escapes
        await throttle.state.store.aclose()
    assert "shared state unavailable" in caplog.text


async def test_a_starts_guardrails_take_two_round_trips_to_redis(redis: RedisServer) -> None:
    """The user's limit and the duplicate claim in one script, the pace in another: a
    start pays two round trips to Redis for its guardrails (issue 27)."""
    from pydantic import SecretStr

    from bot.domain.caller import Caller
    from bot.engage.start import Engager
    from bot.studio.client import StudioClient

    store = RedisStore(redis.url.replace("/0", "/12"))
    await store.redis.flushdb()
    trips = 0
    original = store.call

    async def counted(operation: Awaitable[object]) -> object:
        nonlocal trips
        trips += 1
        return await original(operation)

    store.call = counted  # type: ignore[method-assign,assignment]
    studio = StudioClient(base_url="http://127.0.0.1:9", username="AC", password=SecretStr("x"))
    engager = Engager(studio, throttle=Throttle(BestEffort(store), user_rate="2/minute"))
    caller = Caller("U1", "C1")
    assert await engager.check(COMMAND, caller, claim=True) is None
    assert await engager.throttle.pace()
    assert trips == 2
    again = await engager.check(COMMAND, caller, claim=True)  # the same start: a duplicate
    assert again is not None
    assert again.kind == "duplicate"
    limited = await engager.check(OTHER, caller, claim=True)  # a third use in the minute
    assert limited is not None
    assert limited.kind == "rate_limited"
    assert 50 < limited.wait <= 60
    assert trips == 4
    await studio.aclose()
    await store.aclose()


async def test_a_confirmed_start_again_restarts_the_window(store: Store) -> None:
    """Issue 32, 15: *Start again* claimed with SET NX, which restarts nothing: the
    window of the first start ran out early and a third start was not asked about."""
    throttle = Throttle(BestEffort(store), duplicate_window=0.6)
    assert await throttle.claim("U1", COMMAND)
    await asyncio.sleep(0.4)
    await throttle.restart_window("U1", COMMAND)  # started again, confirmed
    await asyncio.sleep(0.4)  # past the first window, inside the second
    assert not await throttle.claim("U1", COMMAND)
