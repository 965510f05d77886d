"""The documentation holds together: no dead relative link, every page reachable from
the README, the generated parts in step with the code, the README short."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

from tests.peers import REPO

LINK = re.compile(r"\]\(([^)\s]+)\)")
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings."""
    found = set()
    for heading in re.findall(r"^#+ (.+)$", page.read_text(), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug)
    return found


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(page.read_text()) if "://" not in target]


def test_no_relative_link_is_dead() -> None:
    dead = []
    for page in PAGES:
        for target in links(page):
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                dead.append(f"{page.name}: {target}")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                dead.append(f"{page.name}: {target} (no such heading)")
    assert dead == []


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    seen, todo = set(), [REPO / "README.md"]
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != ".md":
            continue
        seen.add(page)
        for target in links(page):
            path = target.partition("#")[0]
            if path:
                todo.append((page.parent / path).resolve())
    unreachable = [p.name for p in PAGES if p.resolve() not in seen]
    assert unreachable == []


def test_the_readme_is_a_first_screen_not_a_manual() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 150


def test_the_generated_parts_are_in_step() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "docs.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_readmes_previews_are_the_bots_own_messages() -> None:
    readme = (REPO / "README.md").read_text()
    previews = re.findall(r"block-kit-builder/#([^)\s]+)", readme)
    assert len(previews) == 2
    for preview in previews:
        payload = json.loads(unquote(preview))
        assert payload["blocks"]
        assert all("type" in block for block in payload["blocks"])
    card = json.loads(unquote(previews[0]))
    assert "engage_refresh" in json.dumps(card)  # the card's own Refresh button
