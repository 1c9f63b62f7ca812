"""The documentation holds together: every relative link in README.md and docs/ resolves (anchors included), every
docs/ file a source file names exists, and the files a Hub repo carries point at nothing that does not ship."""

import re
import subprocess

import pytest
from huggingface_hub import RepoCard

from conftest import REPO_ROOT

DOCUMENTS = [
    REPO_ROOT / "README.md",
    *sorted((REPO_ROOT / "docs").glob("*.md")),
    *sorted((REPO_ROOT / "docs" / "notes").glob("*.md")),  # the dated history the user docs link to
]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def heading_anchors(markdown: str) -> set[str]:
    """The anchors GitHub and the Hub give the headings of `markdown` (fenced code left out)."""
    anchors, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def tracked_files(*patterns: str) -> list:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [REPO_ROOT / name for name in listed if (REPO_ROOT / name).is_file()]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_relative_links_resolve(document):
    for target in LINK.findall(document.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        linked = (document.parent / path).resolve() if path else document
        assert linked.exists(), f"{document.name} links to {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in heading_anchors(linked.read_text()), f"{document.name}: no heading for #{anchor}"


def test_named_documents_exist():
    for source in tracked_files("*.py", "*.md", "Makefile", "*.toml"):
        for name in set(re.findall(r"docs/(?:notes/)?[A-Za-z0-9_\-]+\.md", source.read_text(errors="replace"))):
            assert (REPO_ROOT / name).is_file(), f"{source.relative_to(REPO_ROOT)} names {name}, which does not exist"


def test_remote_code_points_at_nothing_a_hub_repo_lacks():
    """A Hub repo carries these files and a model card as its README, not this project's README or docs/."""
    from mprnet_hf.hub.remote_code import remote_code_files

    for code in remote_code_files():
        text = code.read_text()
        assert "docs/" not in text and "README" not in text, f"{code.name} points at a document a Hub repo lacks"


def test_space_card_front_matter_is_valid():
    card = RepoCard.load(REPO_ROOT / "README.md").data
    assert card.sdk == "gradio" and card.app_file == "app.py" and card.license == "apache-2.0"
    assert card.short_description and len(card.short_description) <= 60
