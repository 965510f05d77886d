"""The "how often" guardrails on memory and on a real Redis, including an outage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from bot.command import EngageCommand
from bot.store import BestEffort, RedisStore, Store
from bot.throttle import Throttle
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
    assert await throttle.pace()
    started = time.monotonic()
    assert not await throttle.pace()
    assert time.monotonic() - started < 1


async def test_two_processes_share_one_redis(redis: RedisServer) -> None:
    a = Throttle(BestEffort(RedisStore(redis.url)), user_rate="2/minute")
    b = Throttle(BestEffort(RedisStore(redis.url)), user_rate="2/minute")
    await a.state.store._redis.flushdb()  # type: ignore[attr-defined]
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
