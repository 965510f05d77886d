"""What a buildpack PaaS needs besides the Procfile (issue 15), checked as the PaaS would.

The last test does what Heroku's Python buildpack does: a fresh virtualenv that
installs only ``requirements.txt`` (no dev extras, not the project itself), then
the Procfile's ``web`` command as written, from a copy of the tracked files.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from bot.app.config import Settings
from bot.app.server import HEALTH_PATH, READY_PATH
from tests.peers import REPO, bot_env, free_port

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
APP_JSON = json.loads((REPO / "app.json").read_text())
# Not for a web dyno: the platform sets PORT and HOST does not change; Socket Mode is local.
NOT_ON_A_PAAS = {"PORT", "HOST", "SLACK_APP_TOKEN"}


def procfile_web() -> str:
    for line in (REPO / "Procfile").read_text().splitlines():
        kind, _, command = line.partition(":")
        if kind.strip() == "web":
            return command.strip()
    raise AssertionError("the Procfile has no web process")


def locked() -> dict[str, list[Version]]:
    """requirements.txt's pins: name -> versions (one per environment marker)."""
    pins: dict[str, list[Version]] = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)", line):
            name = match.group(1).lower().replace("_", "-")
            pins.setdefault(name, []).append(Version(match.group(2)))
    return pins


def test_python_version_is_pinned_by_major_minor_within_requires_python() -> None:
    pinned = (REPO / ".python-version").read_text().strip()
    assert re.fullmatch(r"3\.\d+", pinned), pinned
    assert Version(pinned) in SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_the_lock_pins_every_production_dependency_and_nothing_for_development() -> None:
    pins = locked()
    for text in PYPROJECT["project"]["dependencies"]:
        requirement = Requirement(text)
        name = requirement.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in requirements.txt: run bash scripts/lock"
        assert all(v in requirement.specifier for v in pins[name]), (name, pins[name])
    extras = PYPROJECT["project"]["optional-dependencies"]
    for text in extras["dev"] + extras["bench"]:
        name = Requirement(text).name.lower()
        assert name not in pins, f"{name} is a dev/bench tool, not for production"
    text = (REPO / "requirements.txt").read_text()
    for block in re.split(r"\n(?=[A-Za-z])", text.split("\n", 2)[2]):
        assert "--hash=sha256:" in block, block.splitlines()[0]


def test_app_json_describes_every_variable_and_the_web_process() -> None:
    env = APP_JSON["env"]
    names = {name.upper() for name in Settings.model_fields} - NOT_ON_A_PAAS
    assert set(env) == names
    assert all(entry["description"] for entry in env.values())
    required = {name for name, entry in env.items() if entry["required"]}
    assert required == {
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "TWILIO_ACCOUNT_SID",
        "STUDIO_FROM",
    }
    assert env["REDIS_URL"]["required"] is False  # the Redis add-on is optional
    assert "heroku-redis" in env["REDIS_URL"]["description"]
    assert set(APP_JSON["formation"]) == {"web"}
    assert APP_JSON["healthchecks"]["web"][0]["path"] == READY_PATH  # ready, not only alive


def test_app_json_defaults_are_values_the_bot_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    env = bot_env("http://127.0.0.1:9", "http://127.0.0.1:9")
    defaults = {k: v["value"] for k, v in APP_JSON["env"].items() if "value" in v}
    for name, value in (env | defaults).items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.studio_api == defaults["STUDIO_API"]


@pytest.fixture(scope="module")
def slug(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What a buildpack builds: the tracked files, and a virtualenv from requirements.txt."""
    root = tmp_path_factory.mktemp("slug")
    files = (
        subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    venv = root / ".heroku" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "-r", "requirements.txt"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return root


def web_process(slug: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """The Procfile's web command, as written, in the slug, with only ``env`` configured."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("TWILIO_", "STUDIO_", "SLACK_", "REDIS_", "VIRTUAL_ENV"))
    }
    path = f"{slug / '.heroku' / 'python' / 'bin'}:{base.get('PATH', '')}"
    return subprocess.Popen(
        ["bash", "-c", procfile_web()],
        cwd=slug,
        env=base | env | {"PATH": path},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_with_no_configuration_the_web_process_lists_what_is_missing(slug: Path) -> None:
    proc = web_process(slug, {"PORT": str(free_port())})
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2, output
    for name in ["SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "TWILIO_ACCOUNT_SID", "STUDIO_FROM"]:
        assert name in output
    assert "Traceback" not in output


async def test_with_a_test_configuration_the_web_process_answers_healthz_on_port(
    slug: Path,
) -> None:
    port = free_port()
    env = bot_env("http://127.0.0.1:9", "http://127.0.0.1:9", PORT=str(port))  # HOST=127.0.0.1
    proc = web_process(slug, env)
    try:
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as http:
            while True:
                assert proc.poll() is None, proc.communicate()[0]
                try:
                    health = await http.get(f"http://127.0.0.1:{port}{HEALTH_PATH}")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "no answer on $PORT within 60 s"
                    await asyncio.sleep(0.2)
        assert health.status_code == 200
        assert health.json()["ok"] is True
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_every_variable_is_documented_in_configuration_and_env_example() -> None:
    """docs/configuration.md's table is generated from the settings model
    (scripts/docs.py, which CI runs with --check); this holds the result to it."""
    page = (REPO / "docs" / "configuration.md").read_text()
    example = (REPO / ".env.example").read_text()
    for name, field in Settings.model_fields.items():
        assert f"| `{name.upper()}` |" in page, f"{name} is not in docs/configuration.md"
        assert field.description, f"{name} has no description in bot/app/config.py"
        assert name.upper() in example, f"{name} is not in .env.example"
