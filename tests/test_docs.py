"""The README and docs/ stay true: relative links and anchors resolve, the README starts with the set-up
commands, stays short and names every command, and every export format has a Deploy snippet."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.deploy.formats import FORMATS

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DEPLOY_DOC = ROOT / "docs" / "deploy.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "cache" / "README.md"]
SET_UP = """# transfer-pipeline

```
make demo    # set-up + the whole pipeline on the built-in sample (handwritten digits)
make test    # set-up + the test suite
```

Both create `.venv` and install the project on first use"""

FENCE = re.compile(r"^```.*?^```[^\n]*$", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def prose(text: str, code: str = r"\1") -> str:
    """``text`` without fenced code blocks; inline code becomes ``code`` (by default, its own content)."""
    return re.sub(r"`([^`\n]*)`", code, FENCE.sub("", text))


def anchors(page: Path) -> set[str]:
    """The ``#anchor`` of every heading of ``page``, as GitHub makes them (repeats get ``-1``, ``-2``, ...)."""
    seen: dict[str, int] = {}
    for title in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose(page.read_text(encoding="utf-8")), re.M):
        slug = re.sub(r"[^\w\- ]", "", re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        if count:
            seen[f"{slug}-{count}"] = 1
    return set(seen)


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` whose file, or heading anchor, does not exist."""
    broken = []
    for target in LINK.findall(prose(page.read_text(encoding="utf-8"), code="code")):
        if SCHEME.match(target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists() or (anchor and (linked.suffix != ".md" or anchor not in anchors(linked))):
            broken.append(target)
    return broken


def deploy_snippets(page: Path = DEPLOY_DOC) -> dict[str, str]:
    """``{format: code}`` from the Deploy page: each python block after ``<!-- deploy: f1 f2 -->``."""
    blocks = re.findall(r"<!-- deploy: ([\w\- ]+) -->\s*```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
    return {name: code for names, code in blocks for name in names.split()}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_anchors_resolve(page):
    assert broken_links(page) == []


def test_a_missing_file_or_anchor_is_a_broken_link(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## Set-up: `make demo`, twice\n\n## Set-up: `make demo`, twice\n")
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n[ok](other.md) [ok](other.md#set-up-make-demo-twice-1) [ok](#title) "
                    "[web](https://example.com/x.md#nowhere) `[code](gone.md)`\n\n```\n[code](gone.md)\n```\n\n"
                    "[gone](gone.md) [bad anchor](other.md#set-up) [bad here](#nowhere)\n")
    assert broken_links(page) == ["gone.md", "other.md#set-up", "#nowhere"]


def test_the_readme_starts_with_the_set_up_commands_and_stays_short():
    text = README.read_text(encoding="utf-8")
    assert text.startswith(SET_UP)
    assert len(text.splitlines()) < 250


def test_the_readme_command_table_names_every_command():
    table = README.read_text(encoding="utf-8").split("## Commands", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `transfer ([\w-]+)", table, re.M))
    assert listed == set(main.commands)


def test_every_export_format_has_a_deploy_snippet():
    snippets = deploy_snippets()
    assert set(snippets) == set(FORMATS)
    assert all("print(labels[probs.argmax()]" in code for code in snippets.values())
