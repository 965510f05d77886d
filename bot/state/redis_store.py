"""The state store on a Redis server every process points at (``REDIS_URL``)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from bot.domain.errors import StateUnavailable
from bot.state.admission import Admitted, CapRule, ConsentCheck
from bot.state.redis_batch import Batcher
from bot.state.scripts import (
    ADMIT,
    DELETE_IF,
    PUT,
    PUT_MOST,
    RESERVE,
    SCREEN,
    SUPPRESS,
    UNHOLD,
    UNSUPPRESS,
    ZCLAIM,
    ms,
)

_T = TypeVar("_T")
PREFIX = "studio-engage:"
BLOCKING_SECONDS = 10.0  # the longest blocking read (a worker waiting for work)
POOL_SIZE = 50  # connections to Redis per process; a call waits for a free one...
POOL_WAIT = 2.0  # ...at most this long (seconds), then it counts as an outage


class RedisStore:
    """A Redis server, shared by every process that points at it."""

    def __init__(self, url: str, *, timeout: float = 0.5, verify_tls: bool = True) -> None:
        # Imported only when REDIS_URL is set: it takes a tenth of the start-up.
        from redis import RedisError
        from redis.asyncio import BlockingConnectionPool, Redis

        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)
        options: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        if not verify_tls and url.startswith("rediss://"):
            # Encrypted, but the server's certificate is not checked (Heroku Redis
            # presents a self-signed one): REDIS_TLS_VERIFY=false.
            options["ssl_cert_reqs"] = "none"

        # A burst waits for a free connection: redis-py's default pool refuses the
        # 101st call at once (MaxConnectionsError), which would read as an outage.
        pool = BlockingConnectionPool.from_url(
            url, max_connections=POOL_SIZE, timeout=POOL_WAIT, decode_responses=True, **options
        )
        self._redis = Redis(connection_pool=pool)
        # Each Lua script registered once, by its SHA1: calls send EVALSHA, and the
        # script's text goes only when Redis does not have it yet (``_script``).
        self._scripts = {
            text: self._redis.register_script(text)
            for text in (
                PUT,
                DELETE_IF,
                ADMIT,
                ZCLAIM,
                RESERVE,
                SCREEN,
                UNHOLD,
                SUPPRESS,
                UNSUPPRESS,
            )
        }
        # The store's own commands: those issued at one moment share a round trip.
        self._batch = Batcher(self._redis)
        # Blocking reads (a worker waiting for work) on connections of their own, whose
        # timeout outlasts the wait; made at first use.
        self._url, self._options = url, options
        self._blocking: Any = None

    @property
    def redis(self) -> Any:
        """The redis-py client (for the job queue's streams)."""
        return self._redis

    @property
    def blocking(self) -> Any:
        """A redis-py client for blocking reads of up to ``BLOCKING_SECONDS``."""
        if self._blocking is None:
            from redis.asyncio import Redis

            options = {**self._options, "socket_timeout": BLOCKING_SECONDS + 5}
            self._blocking = Redis.from_url(self._url, decode_responses=True, **options)
        return self._blocking

    async def call(self, operation: Awaitable[_T]) -> _T:
        """Await a redis-py call; what redis-py raises becomes ``StateUnavailable``, with
        redis-py's exception as its cause (``BUSYGROUP`` and the like stay readable)."""
        try:
            return await operation
        except self._errors as exc:
            raise StateUnavailable(type(exc).__name__) from exc

    async def _one(self, build: Callable[[Any], object]) -> Any:
        """The answer to the (first) command ``build`` queues, in the moment's round trip."""
        answers = await self.call(self._batch.run(build))
        return answers[0]

    async def _script(self, text: str, keys: Sequence[str], *args: str) -> Any:
        """Run a registered Lua script by its SHA1 (EVALSHA) in the moment's round trip;
        its text is sent (EVAL, which also keeps it) only when Redis answers NOSCRIPT:
        the first use since Redis started, or after a SCRIPT FLUSH. NOSCRIPT means the
        script did not run, so sending it again runs it once."""
        from redis.exceptions import NoScriptError

        sha = self._scripts[text].sha
        try:
            return await self._one(lambda p: p.evalsha(sha, len(keys), *keys, *args))
        except StateUnavailable as exc:
            if not isinstance(exc.__cause__, NoScriptError):
                raise
        return await self._one(lambda p: p.eval(text, len(keys), *keys, *args))

    async def add(self, key: str, value: str, ttl: float) -> bool:
        return bool(await self._one(lambda p: p.set(PREFIX + key, value, nx=True, px=ms(ttl))))

    async def set(self, key: str, value: str, ttl: float) -> None:
        await self._one(lambda p: p.set(PREFIX + key, value, px=ms(ttl)))

    async def get(self, key: str) -> str | None:
        value = await self._one(lambda p: p.get(PREFIX + key))
        return str(value) if value is not None else None

    async def pop(self, key: str) -> str | None:
        value = await self._one(lambda p: p.getdel(PREFIX + key))
        return str(value) if value is not None else None

    async def hset(self, key: str, fields: Mapping[str, str], ttl: float) -> None:
        await self.hset_indexed(key, fields, ttl, {})

    async def hset_indexed(
        self,
        key: str,
        fields: Mapping[str, str],
        ttl: float,
        indexes: Mapping[str, Mapping[str, float]],
        *,
        counts: Mapping[str, Mapping[str, int]] | None = None,
        only_if: Mapping[str, str] | None = None,
    ) -> bool:
        counts = counts or {}
        size = len(fields) + sum(len(members) for members in indexes.values())
        if counts or only_if or (len(fields) > 0 and size <= PUT_MOST):  # one command
            guards = dict(only_if or {})
            keys = [PREFIX + key, *(PREFIX + index for index in indexes)]
            keys += [PREFIX + counter for counter in counts]
            args = [str(ms(ttl)), str(len(guards))]
            args += [part for pair in guards.items() for part in pair]
            args += [str(len(indexes)), str(len(fields))]
            args += [part for pair in fields.items() for part in pair]
            for members in indexes.values():
                args.append(str(len(members)))
                args += [part for m, score in members.items() for part in (repr(score), m)]
            for moves in counts.values():
                args.append(str(len(moves)))
                args += [part for name, delta in moves.items() for part in (name, str(delta))]
            return bool(await self._script(PUT, keys, *args))

        def build(pipe: Any) -> None:  # a large hash (a bulk run's rows): plain commands
            if fields:
                pipe.hset(PREFIX + key, mapping=dict[Any, Any](fields))
                pipe.pexpire(PREFIX + key, ms(ttl))
            for index, members in indexes.items():
                pipe.zadd(PREFIX + index, dict(members))
                pipe.pexpire(PREFIX + index, ms(ttl))

        await self.call(self._batch.run(build))
        return True

    async def hgetall(self, key: str) -> dict[str, str]:
        value: dict[Any, Any] = await self._one(lambda p: p.hgetall(PREFIX + key))
        return {str(k): str(v) for k, v in value.items()}

    async def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, str]]:
        def build(pipe: Any) -> None:
            for key in keys:
                pipe.hgetall(PREFIX + key)

        found: list[dict[Any, Any]] = await self.call(self._batch.run(build)) if keys else []
        return [{str(k): str(v) for k, v in value.items()} for value in found]

    async def hmget(self, key: str, fields: Sequence[str]) -> list[str | None]:
        if not fields:
            return []
        found: list[Any] = await self._one(lambda p: p.hmget(PREFIX + key, list(fields)))
        return [str(v) if v is not None else None for v in found]

    async def hkeys(self, key: str) -> list[str]:
        found: list[Any] = await self._one(lambda p: p.hkeys(PREFIX + key))
        return [str(k) for k in found]

    async def hget(self, key: str, field: str) -> str | None:
        value: Any = await self._one(lambda p: p.hget(PREFIX + key, field))
        return str(value) if value is not None else None

    async def hlen(self, key: str) -> int:
        value: Any = await self._one(lambda p: p.hlen(PREFIX + key))
        return int(value)

    async def hdel(self, key: str, field: str) -> None:
        await self._one(lambda p: p.hdel(PREFIX + key, field))

    async def delete(self, key: str) -> None:
        await self._one(lambda p: p.delete(PREFIX + key))

    async def delete_if(self, key: str, value: str) -> bool:
        removed = await self._script(DELETE_IF, [PREFIX + key], value)
        return bool(removed)

    async def admit(
        self,
        uses: str,
        limit: int,
        window: float,
        claim: str | None,
        claim_ttl: float,
        consent: ConsentCheck | None = None,
    ) -> Admitted:
        keys = [PREFIX + uses, PREFIX + claim if claim else "", "", ""]
        args = [str(limit), repr(window), str(ms(claim_ttl)), secrets.token_hex(6), "", "", "0"]
        if consent is not None:
            keys[2:] = [PREFIX + consent.optouts, PREFIX + consent.reach if consent.reach else ""]
            args[4:] = [consent.contact, consent.hold, *_caps(consent.caps)]
        wait, claimed, entry, again = await self._script(ADMIT, keys, *args)
        return Admitted(float(wait), bool(int(claimed)), entry or None, float(again))

    async def screen(
        self, optouts: str, contacts: Sequence[str], reach: str, caps: tuple[CapRule, ...]
    ) -> dict[int, str]:
        prefix = PREFIX + reach if reach else ""
        args = [repr(time.time()), prefix, *_caps(caps), *contacts]
        found = await self._script(SCREEN, [PREFIX + optouts], *args)
        return {int(found[i]) - 1: str(found[i + 1]) for i in range(0, len(found), 2)}

    async def unhold(self, reach: str, prefix: str) -> None:
        await self._script(UNHOLD, [PREFIX + reach], prefix)

    async def suppress(
        self, optouts: str, contact: str, entry: str, source: str, latest: int
    ) -> bool:
        keys = [PREFIX + optouts + suffix for suffix in ("", ":latest", ":sources")]
        added = await self._script(
            SUPPRESS, keys, contact, entry, source, str(latest), repr(time.time())
        )
        return bool(added)

    async def unsuppress(self, optouts: str, contact: str) -> str | None:
        keys = [PREFIX + optouts + suffix for suffix in ("", ":latest", ":sources")]
        entry = await self._script(UNSUPPRESS, keys, contact)
        return str(entry) if entry else None

    async def reserve(self, key: str, interval: float, horizon: float) -> float:
        answer = await self._script(RESERVE, [PREFIX + key], repr(interval), repr(horizon))
        return float(answer)

    async def zadd(self, key: str, members: Mapping[str, float], ttl: float) -> None:
        await self.call(
            self._batch.run(
                lambda p: p.zadd(PREFIX + key, dict(members)).pexpire(PREFIX + key, ms(ttl))
            )
        )

    async def zrange(
        self, key: str, low: float, high: float, limit: int | None = None
    ) -> list[str]:
        start, num = (0, limit) if limit is not None else (None, None)
        found: list[Any] = await self._one(
            lambda p: p.zrangebyscore(PREFIX + key, low, high, start=start, num=num)
        )
        return [str(member) for member in found]

    async def zclaim(self, key: str, member: str, due_by: float, then: float) -> bool:
        claimed = await self._script(ZCLAIM, [PREFIX + key], member, repr(due_by), repr(then))
        return bool(claimed)

    async def zrem(self, key: str, *members: str) -> None:
        if members:
            await self._one(lambda p: p.zrem(PREFIX + key, *members))

    async def zcard(self, key: str) -> int:
        return int(await self._one(lambda p: p.zcard(PREFIX + key)))

    async def zcount(self, key: str, low: float, high: float) -> int:
        return int(await self._one(lambda p: p.zcount(PREFIX + key, low, high)))

    async def zremrange(self, key: str, low: float, high: float) -> None:
        await self._one(lambda p: p.zremrangebyscore(PREFIX + key, low, high))

    async def aclose(self) -> None:
        await self._batch.aclose()
        await self._redis.aclose(close_connection_pool=True)  # the pool is ours
        if self._blocking is not None:
            await self._blocking.aclose()


def _caps(caps: tuple[CapRule, ...]) -> list[str]:
    """The caps as the scripts read them: their count, then amount, seconds, prefix each."""
    return [str(len(caps)), *(part for a, s, p in caps for part in (str(a), repr(s), p))]
