"""The README's and docs' pictures and links point at files the repository has.

The README was cut down to the filters shipped today and its history moved to docs/; a picture or link
left pointing at the old place would show as a broken image on the project page.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# [text](target) and ![alt](target); the target up to the first space or closing parenthesis
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def relative_targets(page: Path) -> list[str]:
    """The link targets of a markdown page that name a file of this repository (not a URL or an anchor)."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)  # code blocks hold no links
    return [t.split("#")[0] for t in LINK.findall(text)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_the_link_pattern_finds_pictures_and_links_but_not_urls(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("![a face](docs/face.jpg) see [the methods](docs/m.md#setup) or [it](https://x.org/a)\n"
                    "```\n[not a link](inside/code.md)\n```\n")
    assert relative_targets(page) == ["docs/face.jpg", "docs/m.md"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_picture_and_link_of_a_page_exists(page):
    targets = relative_targets(page)
    missing = [t for t in targets if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"
