"""The docs point at what exists: every relative link of README.md and docs/*.md resolves to a
file of the repository, every anchor (``page.md#section``, ``#section``) to a heading of that page
as GitHub names it, and every test a doc cites by name (``test_…``) is defined in tests/. The
README stays a two-minute read, links every page of docs/, and keeps its quick start in a
``<!-- quickstart -->`` block a test can run."""

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

    client_page = (ROOT / "docs" / "client.md").read_text(encoding="utf-8")
    named = re.findall(r"id_tokens:\s*\n\s+([A-Z0-9_]+):", client_page)
    hint = Sources(audiences("https://b.example", ["aud"], {}), no_config).nothing_found(False)
    assert named == [TOKEN_ENV]
    assert f"id_tokens: {{{TOKEN_ENV}:" in hint


# --- anchors: GitHub's heading slugs --------------------------------------------------------

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def prose(text: str) -> list[str]:
    """The lines of a Markdown text outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text (link targets dropped), lower-case,
    every character but letters, digits, '_', '-' and spaces dropped, spaces made '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown file; a repeated heading gets -1, -2 … as on GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose(path.read_text(encoding="utf-8")):
        found.update(HTML_ANCHOR.findall(line))
        heading = HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_anchors(doc: Path) -> list[str]:
    """Links to `#section` or `file.md#section` (from prose, not code) whose anchor is absent."""
    broken = []
    for target in LINK.findall("\n".join(prose(doc.read_text(encoding="utf-8")))):
        if re.match(r"[a-z]+:", target) or "#" not in target:
            continue
        file, anchor = target.split("#", 1)
        page = (doc.parent / file).resolve() if file else doc
        if page.suffix == ".md" and page.is_file() and anchor not in anchors(page):
            broken.append(target)
    return broken


def test_slugs_follow_githubs_rules() -> None:
    assert slug("Audience: only this broker's") == "audience-only-this-brokers"
    assert slug("Using the client: `cabroker`") == "using-the-client-cabroker"
    assert slug("1. The client sends an ID token") == "1-the-client-sends-an-id-token"
    assert slug("The `BROKER_*` settings, per-instance") == "the-broker_-settings-per-instance"
    assert slug("See [the API](api.md) → v1") == "see-the-api--v1"


def test_repeated_headings_get_numbered_anchors(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Setup\n\n## Setup\n\n```sh\n# Setup\n```\n\n## Setup\n", encoding="utf-8")
    assert anchors(page) == {"setup", "setup-1", "setup-2"}


def test_a_missing_anchor_is_reported(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n", encoding="utf-8")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Here\n\n[ok](#here) [ok](other.md#other-page) [bad](#there) [bad](other.md#here)\n"
        "```sh\n[not a link](#in-code)\n```\n",
        encoding="utf-8",
    )
    assert broken_anchors(doc) == ["#there", "other.md#here"]


@pytest.mark.parametrize("doc", DOCS, ids=[str(doc.relative_to(ROOT)) for doc in DOCS])
def test_every_anchor_resolves(doc: Path) -> None:
    assert broken_anchors(doc) == []


# --- the README: short, pointing at every page, with a quick start a test can run -----------

README = ROOT / "README.md"
QUICKSTART = re.compile(r"<!-- quickstart -->\s*\n```sh\n(.*?)\n```\s*\n<!-- /quickstart -->", re.S)
MERMAID = re.compile(r"```mermaid\n(.*?)\n```", re.S)


def quickstart() -> str:
    """The README's quick-start shell commands (for a test that runs them on `make run`)."""
    found = QUICKSTART.findall(README.read_text(encoding="utf-8"))
    assert len(found) == 1, "one <!-- quickstart --> block holding one ```sh block"
    return str(found[0])


def test_the_readme_reads_in_two_minutes() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 150


def test_the_readme_keeps_its_opening_commands() -> None:
    head = README.read_text(encoding="utf-8").split("\n## ", 1)[0]
    assert re.search(r"```sh\nmake demo .*\nmake test .*\n```", head, re.S)


def test_the_quickstart_logs_in_and_installs_from_the_private_repository() -> None:
    commands = quickstart()
    assert "CABROKER_URL=" in commands
    assert re.search(r"cabroker login\b", commands)
    assert re.search(r'eval "\$\(\S*cabroker env\)"', commands)
    assert re.search(r"pip install acme-lib\s*$", commands, re.M)


def test_the_readme_links_every_docs_page() -> None:
    linked = {
        (ROOT / target.split("#", 1)[0]).resolve()
        for target in LINK.findall(README.read_text(encoding="utf-8"))
    }
    pages = set((ROOT / "docs").glob("*.md"))
    assert sorted(str(p.relative_to(ROOT)) for p in pages - linked) == []


def test_the_readme_and_the_architecture_page_draw_the_same_flow() -> None:
    readme = MERMAID.findall(README.read_text(encoding="utf-8"))
    architecture = MERMAID.findall((ROOT / "docs" / "architecture.md").read_text(encoding="utf-8"))
    assert len(readme) == 1
    assert readme[0] in architecture


# --- the admin page covers the whole template -----------------------------------------------


def template_section(name: str) -> list[str]:
    """The logical names directly under a top-level section of template.yaml."""
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    section = re.search(rf"^{name}:\n(.*?)(?=^\S|\Z)", text, re.S | re.M)
    assert section is not None, name
    return re.findall(r"^  ([A-Za-z0-9]+):", section.group(1), re.M)


@pytest.mark.parametrize("section", ["Parameters", "Outputs"])
def test_every_template_parameter_and_output_is_on_the_admin_page(section: str) -> None:
    admin = (ROOT / "docs" / "admin.md").read_text(encoding="utf-8")
    names = template_section(section)
    assert len(names) >= 8
    assert [name for name in names if f"`{name}`" not in admin] == []


def test_every_setting_the_function_reads_is_on_the_admin_page() -> None:
    settings = (ROOT / "functions" / "broker" / "settings.py").read_text(encoding="utf-8")
    names = set(re.findall(r"\"(BROKER_[A-Z_]+)\"", settings))
    admin = (ROOT / "docs" / "admin.md").read_text(encoding="utf-8")
    assert len(names) >= 20
    assert sorted(name for name in names if f"`{name}`" not in admin) == []


def test_the_guided_deploy_asks_the_estate_first_as_the_admin_page_says() -> None:
    """`sam deploy --guided` prompts every parameter in the template's order: the four that
    decide the estate come first, and the admin page's prompt table lists them in that order."""
    first = template_section("Parameters")[:4]
    assert first == ["Estate", "DomainName", "DomainOwner", "Repositories"]
    admin = (ROOT / "docs" / "admin.md").read_text(encoding="utf-8")
    table = admin.split("### What `sam deploy --guided` asks", 1)[1].split("\n### ", 1)[0]
    prompts = re.findall(r"^\| `Parameter ([A-Za-z]+)` \|", table, re.M)
    assert prompts == first
    others = len(template_section("Parameters")) - len(first)
    assert f"The other parameters ({others} of them)" in table
    assert "`BrokerFunction has no authentication. Is this okay?` (asked once per route" in table
    # SAM CLI asks it for each HttpApi event of the function (samcli's deploy auth_utils).
    events = re.search(
        r"^  BrokerFunction:\n.*?^    Properties:\n.*?^      Events:\n(.*?)(?=^  \S)",
        (ROOT / "template.yaml").read_text(encoding="utf-8"),
        re.S | re.M,
    )
    assert events is not None
    count = len(re.findall(r"^          Type: HttpApi$", events.group(1), re.M))
    words = {5: "five"}
    assert f"asked once per route: {words[count]} times" in table


def test_no_template_parameter_takes_a_yaml_document() -> None:
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    assert "RulesDocument" not in text
    assert "version: 1" not in text
