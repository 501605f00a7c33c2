"""The docs point at what exists: every relative link of README.md and docs/*.md resolves to a
file of the repository, and every test a doc cites by name (``test_…``) is defined in tests/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
CITED_TEST = re.compile(r"`(test_[A-Za-z0-9_]+)`")


def defined_tests() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.update(re.findall(r"^def (test_\w+)", path.read_text(encoding="utf-8"), re.M))
    return names


@pytest.mark.parametrize("doc", DOCS, ids=[str(doc.relative_to(ROOT)) for doc in DOCS])
def test_every_relative_link_resolves(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    broken = [
        target
        for target in LINK.findall(text)
        if not re.match(r"[a-z]+:", target)  # https:, mailto: …: not ours to check here
        and not target.startswith("#")
        and not (doc.parent / target.split("#", 1)[0]).exists()
    ]
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=[str(doc.relative_to(ROOT)) for doc in DOCS])
def test_every_cited_test_exists(doc: Path) -> None:
    cited = set(CITED_TEST.findall(doc.read_text(encoding="utf-8")))
    assert sorted(cited - defined_tests()) == []


PRODUCT = ("client", "functions", "devstack", "infra", "docs", "bench", "tests")
TOP = ("README.md", "template.yaml", "samconfig.toml", "action.yml", "Makefile")


def test_the_product_never_points_at_files_users_do_not_get() -> None:
    """Users get this repository only: no background document outside it is ever cited."""
    files = [ROOT / name for name in TOP]
    for folder in PRODUCT:
        files += [
            p
            for p in (ROOT / folder).rglob("*")
            if p.is_file() and p.suffix in {".py", ".md", ".yaml", ".yml", ".toml", ".txt", ""}
        ]
    citing = [
        str(path.relative_to(ROOT))
        for path in files
        if path != Path(__file__).resolve()
        and re.search(r"\.\./shared|design\.md", path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert citing == []


def test_the_gitlab_variable_is_the_one_the_client_hints_and_reads() -> None:
    from cabroker.broker import BrokerConfig
    from cabroker.config import audiences
    from cabroker.identity import TOKEN_ENV, Sources

    def no_config() -> BrokerConfig:
        raise AssertionError("not needed for the hint")

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    named = re.findall(r"id_tokens:\s*\n\s+([A-Z0-9_]+):", readme)
    hint = Sources(audiences("https://b.example", ["aud"], {}), no_config).nothing_found(False)
    assert named == [TOKEN_ENV]
    assert f"id_tokens: {{{TOKEN_ENV}:" in hint
