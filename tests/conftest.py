from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from pathlib import Path

import pytest

from bot.app.config import Settings
from bot.state.store import MemoryStore, RedisStore, Store
from tests.peers import RedisServer, leaked_secrets, redis_server

CONFIG_VARS = [name.upper() for name in Settings.model_fields]


@pytest.fixture(scope="module")
def redis() -> Generator[RedisServer, None, None]:
    """A real redis-server on loopback, shared by a test module's tests."""
    with redis_server() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncGenerator[Store, None]:
    """The state store on this process's memory, then on a real (emptied) Redis."""
    if request.param == "memory":
        yield MemoryStore()
        return
    server: RedisServer = request.getfixturevalue("redis")
    redis_store = RedisStore(server.url)
    await redis_store.redis.flushdb()
    yield redis_store
    await redis_store.aclose()


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's environment or .env: each starts from nothing."""
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, None]:
    """Fail any test whose captured stdout, stderr or logs (at DEBUG) hold a configured secret."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "call" or not report.passed:
        return
    captured = "\n".join(content for _, content in report.sections)
    if leaked := leaked_secrets(captured):
        report.outcome = "failed"
        report.longrepr = f"a configured secret appeared in the captured output or logs: {leaked}"
