"""The parts of the documentation that are generated, so that they cannot drift:

- docs/configuration.md's table of variables, from the settings model (name, whether
  it is needed, default, description), and a check that .env.example and app.json
  name exactly the same variables;
- the README's Block Kit Builder links to the real card and bulk progress message,
  built by the bot's own message builders.

    .venv/bin/python scripts/docs.py           write them
    .venv/bin/python scripts/docs.py --check   fail if a page is not in step (CI runs this)
    .venv/bin/python scripts/docs.py --links   print the preview links
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bot.app.config import Settings  # noqa: E402
from bot.domain.bulk_plan import Progress  # noqa: E402
from bot.domain.command import EngageCommand  # noqa: E402
from bot.domain.run import Engagement  # noqa: E402
from bot.infra.audit import OUTCOMES  # noqa: E402
from bot.slack.messages import engaged_card, run_card  # noqa: E402
from bot.slack.messages.bulk import bulk_progress  # noqa: E402

CONFIGURATION = REPO / "docs" / "configuration.md"
GUARDRAILS = REPO / "docs" / "guardrails.md"
README = REPO / "README.md"
ENV_EXAMPLE = REPO / ".env.example"
APP_JSON = REPO / "app.json"
NOT_ON_A_PAAS = {"HOST", "SLACK_APP_TOKEN", "SLACK_API_URL", "STUDIO_BASE_URL", "PORT"}
BUILDER = "https://app.slack.com/block-kit-builder/#"


def _default(value: Any) -> str:
    if value is None or value == {} or value == frozenset():
        return ""
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, frozenset | set | tuple | list):  # as the variable is written
        return f"`{','.join(sorted(str(item) for item in value))}`"
    return f"`{value}`"


def configuration_table() -> str:
    """Every variable of the settings model, in the model's order."""
    lines = ["| variable | needed | default | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        needed = str(extra.get("needed", "no"))
        meaning = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{name.upper()}` | {needed} | {_default(field.default)} | {meaning} |")
    return "\n".join(lines)


def sample_card() -> dict[str, Any]:
    command = EngageCommand(
        "FW" + "0" * 32,
        "onboarding",
        "+16175551212",
        "+16175550100",
        {"first_name": "Zeke", "plan": "gold"},
        "Customer onboarding",
    )
    engagement = Engagement(sid="FN" + "0" * 32, status="active", flow_sid=command.flow_sid)
    card = engaged_card(command, engagement, "U0123ABCD", api="v2")
    return {"blocks": run_card(card)["blocks"]}


def sample_progress() -> dict[str, Any]:
    progress = Progress(
        "3f9a1c2b7d4e",
        "survey · Customer survey",
        "U0123ABCD",
        1000,
        started=412,
        failed=6,
        unknown=1,
        status="running",
        elapsed=21.0,
    )
    return {"blocks": bulk_progress(progress)["blocks"]}


def links() -> dict[str, str]:
    """Block Kit Builder previews of the bot's own messages (the payload in the URL)."""
    return {
        name: BUILDER + quote(json.dumps(payload, separators=(",", ":"), ensure_ascii=False))
        for name, payload in (("card", sample_card()), ("progress", sample_progress()))
    }


def between(text: str, name: str, body: str) -> str:
    """``text`` with what stands between the markers ``name:start`` and ``name:end``
    replaced by ``body``."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    head, found, rest = text.partition(start)
    if not found or end not in rest:
        raise SystemExit(f"docs: the markers {start} … {end} are missing")
    _, _, tail = rest.partition(end)
    return f"{head}{start}\n{body}\n{end}{tail}"


def audit_outcomes() -> str:
    """Every audit outcome, from ``bot.infra.audit.Kind`` (the type every line is checked
    against), as a list for guardrails.md."""
    return "`outcome` is one of " + ", ".join(f"`{o}`" for o in OUTCOMES) + "."


def readme_links() -> str:
    found = links()
    return (
        f"[**See the card**]({found['card']}) and"
        f" [**a bulk run's progress message**]({found['progress']}) in Slack's Block Kit"
        " Builder (built by the bot's own code; no sign-in needed to look)."
    )


def variables_problems() -> list[str]:
    """Where .env.example or app.json do not name exactly the settings' variables."""
    names = {name.upper() for name in Settings.model_fields}
    problems = []
    example = ENV_EXAMPLE.read_text()
    listed = {
        line.lstrip("# ").split("=", 1)[0]
        for line in example.splitlines()
        if "=" in line and line.lstrip("# ").split("=", 1)[0].isupper()
    }
    problems += [f".env.example lacks {n}" for n in sorted(names - listed)]
    problems += [f".env.example names {n}, which is no setting" for n in sorted(listed - names)]
    app = set(json.loads(APP_JSON.read_text())["env"])
    problems += [f"app.json lacks {n}" for n in sorted(names - NOT_ON_A_PAAS - app)]
    problems += [f"app.json names {n}, which is no setting" for n in sorted(app - names)]
    return problems


def main(argv: list[str]) -> int:
    if "--links" in argv:
        for name, url in links().items():
            print(f"{name}: {url}")
        return 0
    pages = {
        CONFIGURATION: between(CONFIGURATION.read_text(), "settings", configuration_table()),
        README: between(README.read_text(), "previews", readme_links()),
        GUARDRAILS: between(GUARDRAILS.read_text(), "audit-outcomes", audit_outcomes()),
    }
    problems = variables_problems()
    if "--check" in argv:
        stale = [p for p, text in pages.items() if p.read_text() != text]
        problems += [f"{p.relative_to(REPO)} is not in step: run scripts/docs.py" for p in stale]
        for problem in problems:
            print(f"docs: {problem}", file=sys.stderr)
        return 1 if problems else 0
    for page, text in pages.items():
        page.write_text(text)
    for problem in problems:
        print(f"docs: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
