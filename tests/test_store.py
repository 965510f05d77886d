"""The state store on memory and a real Redis: its operations, best effort and durable use,
and what each does when Redis stops (redis-py raises its own errors, not OSError)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from bot.domain.command import EngageCommand
from bot.domain.errors import StateUnavailable
from bot.engage.confirmations import Confirmations, Parked
from bot.runs.registry import RunRegistry, Shown
from bot.state import redis_store as bot_redis_store
from bot.state import scripts as bot_scripts
from bot.state.store import BestEffort, Durable, RedisStore, Store
from tests.peers import FLOW_SID, RedisServer, redis_server

COMMAND = EngageCommand(FLOW_SID, None, "+16175551212", "+16175550100", {"a": {"b": [1]}})
RUN = "FN" + "e" * 32


async def test_a_burst_waits_for_a_connection_instead_of_failing(redis: RedisServer) -> None:
    """More calls at once than the pool has connections: each waits its turn (redis-py's
    default pool refused the 101st at once, which read as Redis being down)."""
    store = RedisStore(redis.url)
    try:
        added = await asyncio.gather(
            *(store.add(f"burst:{n}", "1", 60) for n in range(10 * bot_redis_store.POOL_SIZE))
        )
    finally:
        await store.aclose()
    assert all(added)


async def test_a_record_with_its_indexes_and_a_large_hash(store: Store) -> None:
    """One step for a record and its indexes; a hash too large for one script (a bulk
    run's rows) is kept all the same."""
    await store.hset_indexed("rec:1", {"a": "1", "b": "2"}, 60, {"ix": {"1": 5.0, "x": 7.5}})
    assert await store.hgetall("rec:1") == {"a": "1", "b": "2"}
    assert await store.zrange("ix", 5.0, 7.5) == ["1", "x"]
    rows = {str(n): f"row {n}" for n in range(3 * bot_scripts.PUT_MOST)}
    await store.hset("rows", rows, 60)
    assert await store.hgetall("rows") == rows


async def test_keys_and_hashes(store: Store) -> None:
    assert await store.add("k", "1", 60)
    assert not await store.add("k", "2", 60)  # an atomic claim
    assert await store.get("k") == "1"
    await store.set("k", "3", 60)
    assert await store.pop("k") == "3"
    assert await store.pop("k") is None
    await store.hset("h", {"a": "1"}, 60)
    await store.hset("h", {"b": "2"}, 60)
    assert await store.hgetall("h") == {"a": "1", "b": "2"}
    assert await store.hgetall("nothing") == {}


async def test_a_lease_is_released_only_by_its_holder(store: Store) -> None:
    assert await store.add("lease:r", "me", 60)
    assert not await store.delete_if("lease:r", "another")  # not theirs to release
    assert await store.get("lease:r") == "me"
    assert await store.delete_if("lease:r", "me")
    assert await store.get("lease:r") is None
    assert not await store.delete_if("lease:r", "me")  # gone already


async def test_keys_and_hashes_expire(store: Store) -> None:
    assert await store.add("k", "v", 0.05)
    await store.hset("h", {"a": "1"}, 0.05)
    await asyncio.sleep(0.15)
    assert await store.get("k") is None
    assert await store.hgetall("h") == {}
    assert await store.add("k", "w", 60)


async def test_parked_commands_come_back_once(store: Store) -> None:
    confirmations = Confirmations(Durable(store))
    token = await confirmations.park("U1", COMMAND)
    assert await confirmations.take(token) == Parked("U1", COMMAND)
    assert await confirmations.take(token) is None
    assert await confirmations.take("no-such-token") is None
    token = await confirmations.park("U1", COMMAND, RUN)
    assert await confirmations.take(token) == Parked("U1", COMMAND, RUN)


async def test_who_started_a_run_and_where_it_is_shown(store: Store) -> None:
    registry = RunRegistry(Durable(store))
    assert await registry.lookup(RUN) is None
    await registry.remember(RUN, Shown("U1", FLOW_SID, "C1"))
    assert await registry.lookup(RUN) == Shown("U1", FLOW_SID, "C1")
    await registry.remember(RUN, Shown("U1", FLOW_SID, "C1", "1700000000.000100"))
    assert await registry.lookup(RUN) == Shown("U1", FLOW_SID, "C1", "1700000000.000100")


async def test_two_processes_share_durable_state(redis: RedisServer) -> None:
    a, b = RedisStore(redis.url), RedisStore(redis.url)
    await a.redis.flushdb()
    token = await Confirmations(Durable(a)).park("U9", COMMAND)
    assert await Confirmations(Durable(b)).take(token) == Parked("U9", COMMAND)
    await RunRegistry(Durable(a)).remember(RUN, Shown("U9", FLOW_SID))
    assert await RunRegistry(Durable(b)).lookup(RUN) == Shown("U9", FLOW_SID)
    await a.aclose()
    await b.aclose()


Operation = Callable[[Store], Awaitable[object]]
OPERATIONS: dict[str, Operation] = {
    "add": lambda s: s.add("k", "v", 60),
    "set": lambda s: s.set("k", "v", 60),
    "get": lambda s: s.get("k"),
    "pop": lambda s: s.pop("k"),
    "hset": lambda s: s.hset("h", {"a": "1"}, 60),
    "hgetall": lambda s: s.hgetall("h"),
    "hget": lambda s: s.hget("h", "a"),
    "hlen": lambda s: s.hlen("h"),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_with_redis_stopped_best_effort_falls_back_and_durable_says_so(
    operation: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with redis_server() as server:
        shared = RedisStore(server.url, timeout=0.5)
        server.stop()
        await BestEffort(shared).use(OPERATIONS[operation])  # memory answers instead
        assert "shared state unavailable" in caplog.text
        with pytest.raises(StateUnavailable):
            await Durable(shared).use(OPERATIONS[operation])
        await shared.aclose()


def test_redis_tls_verification_can_be_turned_off_for_self_signed_servers() -> None:
    url = "rediss://:pw@redis.example.com:6380/0"
    checked = RedisStore(url).redis.connection_pool.connection_kwargs
    unchecked = RedisStore(url, verify_tls=False).redis.connection_pool.connection_kwargs
    assert checked.get("ssl_cert_reqs", "required") == "required"
    assert unchecked["ssl_cert_reqs"] == "none"
    plain = RedisStore("redis://127.0.0.1:6379/0", verify_tls=False)
    assert "ssl_cert_reqs" not in plain.redis.connection_pool.connection_kwargs


async def test_single_fields_of_a_hash(store: Store) -> None:
    await store.hset("h", {"a": "1", "b": "2"}, 60)
    assert await store.hget("h", "a") == "1"
    assert await store.hget("h", "z") is None
    assert await store.hget("nothing", "a") is None
    assert await store.hlen("h") == 2
    assert await store.hlen("nothing") == 0


async def test_sorted_sets(store: Store) -> None:
    await store.zadd("z", {"a": 3.0, "b": 1.0, "c": 2.0}, 60)
    await store.zadd("z", {"a": 0.5}, 60)  # re-scored
    assert await store.zrange("z", float("-inf"), float("inf")) == ["a", "b", "c"]
    assert await store.zrange("z", 1.0, 2.0) == ["b", "c"]
    assert await store.zrange("z", 0, 10, limit=2) == ["a", "b"]
    assert await store.zcard("z") == 3
    await store.zrem("z", "b")
    await store.zremrange("z", 2.0, 2.0)
    assert await store.zrange("z", float("-inf"), float("inf")) == ["a"]
    assert await store.zcard("nothing") == 0


def test_only_the_guardrail_scripts_ask_redis_for_the_time() -> None:
    """The bench counts the guardrails' scripts by Redis's TIME calls (bench/run.py)."""
    from bot.state import jobs

    scripts = {
        name: text
        for module in (bot_scripts, jobs)
        for name, text in vars(module).items()
        if isinstance(text, str) and "redis.call" in text
    }
    assert {"ADMIT", "RESERVE", "PUT", "_WAKE"} <= set(scripts)
    assert sorted(name for name, text in scripts.items() if "'TIME'" in text) == [
        "ADMIT",
        "RESERVE",
    ]


async def test_of_processes_that_found_a_check_due_one_claims_it(store: Store) -> None:
    """Issue 32, 15: the sweep's claim is a compare-and-set on the due index."""
    await store.zadd("due", {"rec1": 100.0}, 3600)
    claims = await asyncio.gather(*(store.zclaim("due", "rec1", 150.0, 500.0) for _ in range(5)))
    assert sorted(claims) == [False, False, False, False, True]
    assert await store.zrange("due", 400, 600) == ["rec1"]
    assert not await store.zclaim("due", "rec1", 150.0, 900.0)  # no longer due
    assert not await store.zclaim("due", "nobody", 150.0, 900.0)


async def test_zcount_counts_a_score_range_without_listing_it(store: Store) -> None:
    await store.zadd("due", {"a": 1.0, "b": 2.0, "c": 3.0}, 3600)
    assert await store.zcount("due", float("-inf"), 2.0) == 2
    assert await store.zcount("due", 2.5, float("inf")) == 1
    assert await store.zcount("nothing", 0, 10) == 0


async def _script_calls(store: RedisStore) -> tuple[int, int]:
    stats = await store.redis.info("commandstats")
    return (
        int(stats.get("cmdstat_eval", {}).get("calls", 0)),
        int(stats.get("cmdstat_evalsha", {}).get("calls", 0)),
    )


async def test_lua_scripts_go_whole_only_when_redis_lacks_them(redis: RedisServer) -> None:
    """Each script is registered once: calls send EVALSHA; the text goes (EVAL) only
    the first time Redis meets it, and again after Redis forgot it (SCRIPT FLUSH)."""
    store = RedisStore(redis.url)
    try:
        await store.redis.flushdb()
        await store.redis.script_flush()
        await store.redis.config_resetstat()
        for n in range(5):
            assert await store.reserve("pace:x", 0.001, 1.0) >= 0
            await store.admit("uses:u", 100, 60.0, f"dup:{n}", 60.0)
        evals, evalshas = await _script_calls(store)
        assert evals == 2  # reserve's and admit's, once each
        assert evalshas == 10  # every call tried by SHA first
        await store.redis.script_flush()  # a Redis that lost its scripts (a restart)
        await store.reserve("pace:x", 0.001, 1.0)
        await store.reserve("pace:x", 0.001, 1.0)
        evals, evalshas = await _script_calls(store)
        assert (evals, evalshas) == (3, 12)  # sent again once, then by SHA again
    finally:
        await store.aclose()
