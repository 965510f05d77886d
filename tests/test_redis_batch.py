"""Redis calls issued at the same moment share one round trip (bot/state/redis_batch.py), on
a real Redis: each caller gets its own answers, a refusal stays with its caller, and a
caller cancelled before the round trip sends nothing."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from bot.state.redis_batch import Batcher
from bot.state.store import RedisStore
from tests.peers import RedisServer


class Counted:
    """redis-py's client, counting the pipelines (round trips) made through it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.pipelines = 0

    def pipeline(self, **options: Any) -> Any:
        self.pipelines += 1
        return self.client.pipeline(**options)


@pytest.fixture
async def client(redis: RedisServer) -> AsyncIterator[Any]:
    redis_client = Redis.from_url(redis.url, decode_responses=True)
    await redis_client.flushdb()
    yield redis_client
    await redis_client.aclose()


async def test_calls_at_one_moment_share_one_round_trip(client: Any) -> None:
    counted = Counted(client)
    batcher = Batcher(counted)
    await client.set("k", "v")

    def set_and_get(n: int) -> Any:
        return lambda p: p.set(f"n{n}", str(n)).get(f"n{n}")

    answers = await asyncio.gather(*(batcher.run(set_and_get(n)) for n in range(100)))
    assert counted.pipelines == 1
    assert answers == [[True, str(n)] for n in range(100)]  # each caller its own answers


async def test_a_refused_command_fails_its_caller_only(client: Any) -> None:
    batcher = Batcher(client)
    await client.set("text", "not a hash")
    answers: list[Any] = await asyncio.gather(
        batcher.run(lambda p: p.hget("text", "field")),
        batcher.run(lambda p: p.get("text")),
        return_exceptions=True,
    )
    refused, fine = answers
    assert isinstance(refused, ResponseError)
    assert fine == ["not a hash"]


async def test_a_caller_cancelled_before_the_round_trip_sends_nothing(client: Any) -> None:
    batcher = Batcher(client)
    cancelled = asyncio.ensure_future(batcher.run(lambda p: p.set("gone", "1")))
    kept = asyncio.ensure_future(batcher.run(lambda p: p.set("kept", "1")))
    await asyncio.sleep(0)  # both queued, the round trip not yet made
    cancelled.cancel()
    assert await kept == [True]
    assert await client.get("gone") is None


async def test_a_burst_through_the_store_is_a_few_round_trips(redis: RedisServer) -> None:
    store = RedisStore(redis.url)
    counted = Counted(store.redis)
    store._batch.client = counted  # the store's own batcher, counted
    try:
        await asyncio.gather(*(store.set(f"s{n}", "1", 60) for n in range(200)))
        found = await asyncio.gather(*(store.get(f"s{n}") for n in range(200)))
    finally:
        await store.aclose()
    assert found == ["1"] * 200
    assert counted.pipelines <= 4  # 400 calls


async def test_a_caller_cancelled_after_its_command_left_still_gets_its_answer(
    client: Any,
) -> None:
    """Issue 32, 13: a ``GETDEL`` whose caller was cancelled mid-round-trip lost its
    value. The caller gets it; the cancellation goes on at its next await."""
    sent = asyncio.Event()

    class Slow:
        """The client, whose round trips signal that they left, then take a moment."""

        def pipeline(self, **options: Any) -> Any:
            pipe = client.pipeline(**options)
            real = pipe.execute

            async def execute(**kwargs: Any) -> Any:
                sent.set()
                await asyncio.sleep(0.05)
                return await real(**kwargs)

            pipe.execute = execute
            return pipe

    batcher = Batcher(Slow())
    await client.set("token", "the value")
    got: list[Any] = []

    async def pop_then_carry_on() -> None:
        got.append(await batcher.run(lambda p: p.getdel("token")))
        await asyncio.sleep(10)  # cancelled here
        got.append("never")

    task = asyncio.ensure_future(pop_then_carry_on())
    await sent.wait()  # its command is in a pipeline on its way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert got == [["the value"]]
    assert await client.get("token") is None


async def test_a_build_that_raises_fails_its_caller_alone(client: Any) -> None:
    batcher = Batcher(client)

    def broken(pipe: Any) -> None:
        pipe.set("half", "1")
        raise ValueError("a defect in one caller")

    answers: list[Any] = await asyncio.gather(
        batcher.run(broken), batcher.run(lambda p: p.set("fine", "1")), return_exceptions=True
    )
    assert isinstance(answers[0], ValueError)
    assert answers[1] == [True]
    assert await client.get("half") is None  # the broken caller's commands never went
    assert await client.get("fine") == "1"
