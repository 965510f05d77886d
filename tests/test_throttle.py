"""The "how often" guardrails on memory and on a real Redis, including an outage."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from bot.command import EngageCommand
from bot.throttle import MemoryStore, Parked, RedisStore, Store, Throttle
from tests.peers import FLOW_SID, RedisServer, redis_server

COMMAND = EngageCommand(FLOW_SID, None, "+16175551212", "+16175550100", {"a": {"b": [1]}})
OTHER = EngageCommand(FLOW_SID, None, "+16175551213", "+16175550100", {})


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    server: RedisServer = request.getfixturevalue("redis")
    redis_store = RedisStore(server.url)
    await redis_store._redis.flushdb()
    yield redis_store
    await redis_store.aclose()


async def test_user_limit(store: Store) -> None:
    throttle = Throttle(store, user_rate="3/minute")
    waits = [await throttle.user_wait("U1") for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 50 < waits[3] <= 60
    assert await throttle.user_wait("U2") == 0.0  # per user


async def test_duplicate_window(store: Store) -> None:
    throttle = Throttle(store, duplicate_window=60)
    assert await throttle.claim("U1", COMMAND)
    assert not await throttle.claim("U1", COMMAND)
    assert await throttle.claim("U2", COMMAND)  # another user
    assert await throttle.claim("U1", OTHER)  # another contact
    await throttle.release("U1", COMMAND)  # it certainly did not start
    assert await throttle.claim("U1", COMMAND)


async def test_duplicate_window_expires(store: Store) -> None:
    throttle = Throttle(store, duplicate_window=0.3)
    assert await throttle.claim("U1", COMMAND)
    await asyncio.sleep(0.4)
    assert await throttle.claim("U1", COMMAND)


async def test_no_window_means_no_duplicate_check(store: Store) -> None:
    throttle = Throttle(store, duplicate_window=0)
    assert await throttle.claim("U1", COMMAND)
    assert await throttle.claim("U1", COMMAND)


async def test_parked_commands_come_back_once(store: Store) -> None:
    throttle = Throttle(store)
    token = await throttle.park("U1", COMMAND)
    assert await throttle.unpark(token) == Parked("U1", COMMAND)
    assert await throttle.unpark(token) is None
    assert await throttle.unpark("no-such-token") is None


async def test_pacing_queues_briefly_instead_of_failing(store: Store) -> None:
    throttle = Throttle(store, studio_rate="5/second", max_wait=5)
    started = time.monotonic()
    assert all([await throttle.pace() for _ in range(12)])
    elapsed = time.monotonic() - started
    assert 1.5 < elapsed < 4  # 12 at 5 per moving second: two full windows of waiting


async def test_pacing_gives_up_after_max_wait(store: Store) -> None:
    throttle = Throttle(store, studio_rate="2/minute", max_wait=0.2)
    assert await throttle.pace()
    assert await throttle.pace()
    started = time.monotonic()
    assert not await throttle.pace()
    assert time.monotonic() - started < 1


async def test_two_processes_share_one_redis(redis: RedisServer) -> None:
    a = Throttle(RedisStore(redis.url), user_rate="2/minute")
    b = Throttle(RedisStore(redis.url), user_rate="2/minute")
    await a._store._redis.flushdb()  # type: ignore[attr-defined]
    assert await a.user_wait("U9") == 0.0
    assert await b.user_wait("U9") == 0.0
    assert await a.user_wait("U9") > 0
    assert await b.claim("U9", COMMAND)
    assert not await a.claim("U9", COMMAND)
    token = await a.park("U9", COMMAND)
    assert await b.unpark(token) == Parked("U9", COMMAND)
    token = await a.park("U9", COMMAND, "FN" + "e" * 32)
    assert await b.unpark(token) == Parked("U9", COMMAND, "FN" + "e" * 32)
    await a.aclose()
    await b.aclose()


async def test_a_redis_outage_degrades_to_per_process_limits(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with redis_server() as server:
        throttle = Throttle(RedisStore(server.url, timeout=0.5), user_rate="2/minute")
        assert await throttle.user_wait("U1") == 0.0
        server.stop()
        # Still limited, never unlimited and never a crash: memory takes over.
        assert await throttle.user_wait("U1") == 0.0
        assert await throttle.user_wait("U1") == 0.0
        assert await throttle.user_wait("U1") > 0
        assert await throttle.claim("U1", COMMAND)
        assert not await throttle.claim("U1", COMMAND)
        assert await throttle.pace()
        await throttle.aclose()
    assert caplog.text.count("shared state unavailable") == 1  # said once, not per command


OPERATIONS = {
    "user_wait": lambda t: t.user_wait("U1"),
    "pace": lambda t: t.pace(),
    "claim": lambda t: t.claim("U1", COMMAND),
    "release": lambda t: t.release("U1", COMMAND),
    "park": lambda t: t.park("U1", COMMAND),
    "unpark": lambda t: t.unpark("some-token"),
    "remember_starter": lambda t: t.remember_starter("FN" + "e" * 32, "U1"),
    "starter_of": lambda t: t.starter_of("FN" + "e" * 32),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_redis_stopped_before_any_operation_falls_back(
    operation: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each operation meets the outage first (redis-py raises its own errors, not OSError)."""
    with redis_server() as server:
        throttle = Throttle(RedisStore(server.url, timeout=0.5))
        server.stop()
        await OPERATIONS[operation](throttle)  # no exception escapes
        await throttle.aclose()
    assert "shared state unavailable" in caplog.text


async def test_who_started_a_run_is_remembered(store: Store) -> None:
    throttle = Throttle(store)
    sid = "FN" + "f" * 32
    assert await throttle.starter_of(sid) is None
    await throttle.remember_starter(sid, "U1")
    assert await throttle.starter_of(sid) == "U1"


async def test_memory_forgets_expired_keys() -> None:
    store = MemoryStore()
    assert await store.add("k", "v", 0.05)
    await store.set("s", "v", 0.05)
    await asyncio.sleep(0.1)
    assert await store.get("s") is None
    assert await store.pop("k") is None
    assert await store.add("k", "w", 60)


def test_redis_tls_verification_can_be_turned_off_for_self_signed_servers() -> None:
    url = "rediss://:pw@redis.example.com:6380/0"
    checked = RedisStore(url)._redis.connection_pool.connection_kwargs
    unchecked = RedisStore(url, verify_tls=False)._redis.connection_pool.connection_kwargs
    assert checked.get("ssl_cert_reqs", "required") == "required"
    assert unchecked["ssl_cert_reqs"] == "none"
    plain = RedisStore("redis://127.0.0.1:6379/0", verify_tls=False)
    assert "ssl_cert_reqs" not in plain._redis.connection_pool.connection_kwargs
