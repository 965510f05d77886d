from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from pathlib import Path

import pytest

from bot.app.config import Settings
from bot.state.store import MemoryStore, RedisStore, Store
from tests import budget
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


# Tests that run the bot against its peers (Prism, a real redis-server, HTTP over
# loopback, the process itself); the rest are unit tests of one module, for the inner
# loop: `bash scripts/test -m unit` (under 10 s).
E2E_MODULES = {
    "test_bench",  # the benchmarks' own peers
    "test_cli",  # the terminal as a process, against Prism and the fake Studio
    "test_contract_prism",  # Prism serving Twilio's spec
    "test_deploy",  # the deploy scripts
    "test_docs",  # scripts/docs.py as a process
    "test_engage",  # the use-case against the fake Studio over loopback
    "test_redis_batch",  # a real redis-server
    "test_server_process",  # the bot as a process
    "test_slack_http",  # the HTTP server, signed requests over loopback
    "test_slack_pace",  # the fake Slack over loopback, in real time
    "test_store",  # a real redis-server
    "test_studio",  # the client against the fake Studio over loopback
    "test_throttle",  # a real redis-server, in real time
    "test_transport",  # HTTP over loopback
}


def pytest_configure(config: pytest.Config) -> None:
    """The inner loop (``-m unit``) tries a tenth of each property test's examples."""
    budget.QUICK = config.getoption("markexpr") == "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test ``e2e`` or ``unit`` by its module (``*_e2e.py`` and the peers' own)."""
    for item in items:
        module = item.path.stem
        e2e = module.endswith("_e2e") or module in E2E_MODULES
        item.add_marker(pytest.mark.e2e if e2e else pytest.mark.unit)
