"""The ledger across many logins: ``logout`` takes out every entry any login wrote (other
``--name`` values, hosts, repositories, brokers) and gives back the user's bytes, their own
edits between the logins included; neither the file nor the ledger keeps a token.

The property runs arbitrary logins interleaved with arbitrary user edits that leave our entries
alone against a shadow copy of the file that only the user edits: after logout the file is the
shadow, byte for byte. Named cases cover what the property cannot: stale CodeArtifact
credentials, edits of our own entries, entries the user made theirs."""

from __future__ import annotations

import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn
from unittest import mock
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cabroker import files
from cabroker.broker import Grant
from cabroker.errors import FilesError
from cabroker.ledger import Action, Ledger
from tests.client.test_outputs import make_grant

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes and flock")

HOSTS = (
    "acme-111122223333.d.codeartifact.us-east-1.amazonaws.com",
    "other-444455556666.d.codeartifact.eu-west-1.amazonaws.com",
    "127.0.0.1",
)
REPOSITORIES = ("internal", "release", "team-x")
NAMES = ("codeartifact", "ca-two", "internal")
KINDS = ("pip", "pypirc", "netrc")
# Tokens are upper-case and start with TKN; the user's text is lower-case: never one of them.
TOKEN_TAIL = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ0123456789/+=%-._~", min_size=6, max_size=20)


def fail(message: str) -> NoReturn:
    raise AssertionError(message)


def hidden(text: str, tokens: list[str]) -> str:
    """``text`` with every token (raw or percent-encoded) blanked, for failure messages."""
    for token in tokens:
        text = text.replace(token, "<TOKEN>").replace(quote(token, safe=""), "<TOKEN>")
    return text


def tokens_in(root: Path, tokens: list[str]) -> list[str]:
    """Files under ``root`` holding a token (raw or percent-encoded), by name only."""
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes().decode("utf-8", "surrogateescape")
            if any(t in data or quote(t, safe="") in data for t in tokens):
                found.append(str(path.relative_to(root)))
    return found


def grant_for(token: str, host: str, repository: str) -> Grant:
    base = f"https://{host}/pypi/{repository}"
    return make_grant("publish", token=token, index_url=f"{base}/simple/", upload_url=f"{base}/")


# --- the user's side: text only, never through cabroker ------------------------------------------


@dataclass
class User:
    """The user's file and its shadow (the same file had no login ever happened)."""

    kind: str
    nl: str
    shadow: str | None
    serial: int = 0
    tokens: list[str] = field(default_factory=list)

    def mark(self) -> int:
        self.serial += 1
        return self.serial

    def line(self, *, in_section: bool) -> str:
        """A new line of the user's (unique: it carries a fresh marker)."""
        n = self.mark()
        if self.kind == "netrc":
            return f"machine uz{n}.example login lz{n} password pz{n}{self.nl}"
        if in_section:
            return f"kz{n} = vz{n}{self.nl}"
        return f"# cz{n}{self.nl}"

    def section(self) -> str:
        n = self.mark()
        if self.kind == "netrc":
            return f"# cz{n}{self.nl}machine uz{n}.example login lz{n} password pz{n}{self.nl}"
        return f"[uz{n}]{self.nl}kz{n} = vz{n}{self.nl}"


def marked_lines(text: str) -> list[str]:
    return [line for line in re.findall(r"[^\n]*\n", text) if re.search(r"z\d+", line)]


def in_a_section(text: str, line: str) -> bool:
    return "[" in text[: text.index(line)]


def ours_around(user: User, real: str, line: str) -> bool:
    """Whether ``line`` sits in a section one of our logins wrote or added in ``real`` (an
    option inserted there would be an edit of our entry)."""
    headers = re.findall(r"^\[([^\]]+)\]", real[: real.index(line)], re.MULTILINE)
    if not headers:
        return False
    section = real[real.index(line) :].split("\n[", 1)[0]
    before = real[: real.index(line)].rsplit("\n[", 1)[-1]
    ours = "username = aws" in before + section
    return ours or f"[{headers[-1]}]" not in (user.shadow or "")


def next_line(text: str, line: str) -> str:
    rest = text[text.index(line) + len(line) :]
    return rest.split("\n", 1)[0]


def anchors(shadow: str, real: str) -> list[str]:
    """The user's own lines that are in both files (not replaced by one of ours), with no
    continuation line after them (an option whose value we may have extended)."""
    found = []
    for line in marked_lines(shadow):
        if shadow.count(line) != 1 or real.count(line) != 1:
            continue
        if any(next_line(text, line)[:1] in (" ", "\t") for text in (shadow, real)):
            continue
        found.append(line)
    return found


Edit = Callable[[str], str]


def append(block: str, nl: str, blank: bool) -> Edit:
    def edit(text: str) -> str:
        # An editor ends the last line the way the file ends its lines.
        ending = "\r\n" if "\r\n" in text else "\n"
        end = ending if text and not text.endswith("\n") else ""
        return text + end + (nl if blank else "") + block

    return edit


def prepend(block: str) -> Edit:
    return lambda text: block + text


def insert_after(anchor: str, line: str) -> Edit:
    return lambda text: text.replace(anchor, anchor + line, 1)


def replace_line(anchor: str, line: str) -> Edit:
    return lambda text: text.replace(anchor, line, 1)


def a_user_edit(data: st.DataObject, user: User, real: str) -> Edit:
    draw = data.draw
    nl = user.nl
    choices = ["append", "prepend"]
    shadow = user.shadow or ""
    usable = anchors(shadow, real)
    if usable:
        choices += ["insert", "replace", "delete"]
    choice = draw(st.sampled_from(choices))
    if choice == "append":
        return append(user.section(), nl, draw(st.booleans()))
    if choice == "prepend":
        n = user.mark()
        return prepend(f"# cz{n}{nl}")
    if choice != "insert":  # a section header stays: the lines under it are in that section
        usable = [line for line in usable if not line.startswith("[")]
        if not usable:
            return prepend(f"# cz{user.mark()}{nl}")
    anchor = draw(st.sampled_from(usable))
    section = user.kind != "netrc" and in_a_section(shadow, anchor)
    section = section and not ours_around(user, real, anchor)
    if choice == "insert":
        return insert_after(anchor, user.line(in_section=section))
    if choice == "replace":
        return replace_line(anchor, user.line(in_section=section and not anchor.startswith("#")))
    return replace_line(anchor, "")


@st.composite
def initial_text(draw: st.DrawFn, kind: str, nl: str) -> str | None:
    """The user's file before any login: sections, comments and options of theirs, sometimes
    the entry a login replaces (their own index URL, pypirc section, netrc machine)."""
    if draw(st.booleans()):
        return None
    parts: list[str] = []
    n = 100
    for _ in range(draw(st.integers(0, 4))):
        n += 1
        piece = draw(st.sampled_from(["comment", "blank", "section", "ours-replaced", "special"]))
        if piece == "comment":
            parts.append(f"# cz{n}{nl}")
        elif piece == "blank":
            parts.append(nl)
        elif kind == "netrc":
            host = draw(st.sampled_from(HOSTS))
            parts.append(
                f"machine {host} login mez{n} password pz{n}{nl}"
                if piece == "ours-replaced"
                else f"machine uz{n}.example login lz{n} password pz{n}{nl}"
            )
        elif kind == "pip":
            if piece == "ours-replaced":
                parts.append(f"[global]{nl}index-url = https://mz{n}.example/simple/{nl}")
            elif piece == "special":
                parts.append(f"[global]{nl}timeout = {n}{nl}# cz{n}{nl}kz{n} = vz{n}{nl}")
            else:
                parts.append(f"[uz{n}]{nl}kz{n} = vz{n}{nl}")
        elif piece == "ours-replaced":
            name = draw(st.sampled_from(NAMES))
            parts.append(
                f"[{name}]{nl}repository = https://mz{n}.example/{nl}username = mez{n}{nl}"
                f"password = pz{n}{nl}"
            )
        elif piece == "special":
            listed = " ".join(draw(st.lists(st.sampled_from(["pypi", *NAMES]), max_size=2)))
            form = draw(st.sampled_from(["one line", "lines", "no list"]))
            if form == "one line":
                parts.append(f"[distutils]{nl}index-servers = uz{n} {listed}{nl}")
            elif form == "lines":
                lines = "".join(f"    {s}{nl}" for s in [f"uz{n}", *listed.split()])
                parts.append(f"[distutils]{nl}index-servers ={nl}{lines}")
            else:  # the section, without the list twine reads
                parts.append(f"[distutils]{nl}kz{n} = vz{n}{nl}")
        else:
            parts.append(f"[uz{n}]{nl}kz{n} = vz{n}{nl}")
    if kind == "netrc" and draw(st.booleans()):
        parts.append(f"default login anonymous password guest{nl}")
    text = "".join(_unique_sections(parts))
    if nl == "\n" and text.endswith(nl) and draw(st.booleans()):
        # No final line ending. (Not with CRLF: a one-line file without one has no style, so
        # the line ending login gives it and the one an editor would may differ.)
        text = text[: -len(nl)]
    return text


def _unique_sections(parts: list[str]) -> list[str]:
    """configparser refuses a section twice, and login keeps one netrc entry per host: keep
    the first of each."""
    seen: set[str] = set()
    kept = []
    for part in parts:
        header = re.match(r"\[([^\]]+)\]|machine (\S+)", part)
        name = header and (header[1] or header[2])
        if name and name in seen:
            continue
        if name:
            seen.add(name)
        kept.append(part)
    return kept


# --- the property -------------------------------------------------------------------------------


def target(home: Path, kind: str) -> Path:
    return {
        "pip": home / ".config" / "pip" / "pip.conf",
        "pypirc": home / ".pypirc",
        "netrc": home / ".netrc",
    }[kind]


def login(ledger: Ledger, kind: str, path: Path, grant: Grant, name: str) -> None:
    if kind == "pip":
        files.write_pip_conf(ledger, grant, path)
    elif kind == "pypirc":
        files.write_pypirc(ledger, grant, name, path)
    else:
        files.write_netrc(ledger, grant, path)


def read(path: Path) -> str | None:
    return path.read_bytes().decode("utf-8", "surrogateescape") if path.exists() else None


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8", "surrogateescape"))


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_logout_takes_out_every_login_and_keeps_every_user_edit(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    nl = data.draw(st.sampled_from(["\n", "\r\n"]), label="newline")
    user = User(kind, nl, data.draw(initial_text(kind, nl), label="initial"))
    # Durability is not what this checks: no fsync, so hundreds of examples run in seconds.
    with tempfile.TemporaryDirectory() as directory, mock.patch("os.fsync"):
        home = Path(directory) / "home"
        home.mkdir()
        path = target(home, kind)
        if user.shadow is not None:
            write(path, user.shadow)
        ledger = Ledger(home / ".local" / "state" / "cabroker" / "ledger.json", home=home)
        existed: bool | None = None  # whether the file existed at the first login
        for _ in range(data.draw(st.integers(1, 7), label="steps")):
            if existed is None or data.draw(st.booleans(), label="login?"):
                token = "TKN" + data.draw(TOKEN_TAIL, label="token")
                user.tokens.append(token)
                host = data.draw(st.sampled_from(HOSTS), label="host")
                repository = data.draw(st.sampled_from(REPOSITORIES), label="repository")
                name = data.draw(st.sampled_from(NAMES), label="name")
                if existed is None:
                    existed = path.exists()
                login(ledger, kind, path, grant_for(token, host, repository), name)
            else:
                edit = a_user_edit(data, user, read(path) or "")
                user.shadow = edit(user.shadow or "")
                write(path, edit(read(path) or ""))
        outcomes = ledger.restore()
        assert all(o.action is not Action.FAILED for o in outcomes), outcomes
        after = read(path)
        shadow = user.shadow
        # Login created it and nothing of the user's is in it: deleted.
        expected = None if not existed and (shadow or "").strip() == "" else shadow
        if after != expected:
            fail(
                "not the user's file after logout:\n"
                f"actual:   {hidden(repr(after), user.tokens)}\nexpected: {expected!r}"
            )
        assert ledger.paths() == []
        assert not ledger.path.exists()
        leaked = tokens_in(Path(directory), user.tokens)
        assert leaked == [], f"a token is left in {leaked}"


# --- named cases --------------------------------------------------------------------------------

ONE, TWO, THREE = "TKN1one/+=%", "TKN2two~._-", "TKN3three"
STALE = "TKN0stale-from-aws-codeartifact-login"
ALL = [ONE, TWO, THREE, STALE]
HOST, OTHER = HOSTS[0], HOSTS[1]


def assert_text(path: Path, expected: str | None) -> None:
    actual = read(path)
    if actual != expected:
        fail(f"{path.name}:\nactual:   {hidden(repr(actual), ALL)}\nexpected: {expected!r}")


def edit(path: Path, old: str, new: str) -> None:
    text = read(path) or ""
    assert text.count(old) == 1, f"{old!r} is not once in {path.name}"
    write(path, text.replace(old, new))


def test_pypirc_logins_with_names_repositories_and_brokers_all_taken_out(
    home: Path, ledger: Ledger
) -> None:
    path = home / ".pypirc"
    write(path, "# mine\n[distutils]\nindex-servers = pypi\n\n[pypi]\nusername = __token__\n")
    files.write_pypirc(ledger, grant_for(ONE, HOST, "internal"), "codeartifact", path)
    edit(path, "username = __token__\n", "username = __token__\nrepository = https://x/\n")
    files.write_pypirc(ledger, grant_for(TWO, OTHER, "release"), "ca-two", path)
    write(path, "# top\n" + (read(path) or "") + "\n[testpypi]\nusername = me\n")
    files.write_pypirc(ledger, grant_for(THREE, HOST, "team-x"), "codeartifact", path)
    assert tokens_in(ledger.path.parent, ALL) == []
    outcomes = ledger.restore()
    assert [o.action for o in outcomes] == [Action.RESTORED]  # unchanged since the last login
    assert_text(
        path,
        "# top\n# mine\n[distutils]\nindex-servers = pypi\n\n[pypi]\nusername = __token__\n"
        "repository = https://x/\n\n[testpypi]\nusername = me\n",
    )
    assert tokens_in(home, ALL) == []
    assert ledger.paths() == []


def test_every_target_two_brokers_and_user_edits_then_logout_leaves_no_token(
    home: Path, ledger: Ledger
) -> None:
    netrc = home / ".netrc"
    pip = home / ".config" / "pip" / "pip.conf"
    secret = home / "secrets" / "build" / "netrc"
    write(netrc, "machine a.example login x password y\n")
    write(pip, "[global]\nindex-url = https://mirror.example/simple/\ntimeout = 5\n")
    for token, host in ((ONE, HOST), (TWO, OTHER)):
        grant = grant_for(token, host, "internal")
        files.write_netrc(ledger, grant, netrc)
        files.write_pip_conf(ledger, grant, pip)
        files.write_docker_secret(ledger, grant, secret)
        write(netrc, (read(netrc) or "") + f"machine b{token[3]}.example login x password z\n")
        edit(pip, "timeout = 5\n", "timeout = 6\n") if token == ONE else None
    assert sorted(ledger.paths()) == sorted([netrc, pip, secret])
    outcomes = {o.path: o.action for o in ledger.restore()}
    assert outcomes == {
        netrc: Action.REMOVED_ENTRIES,
        pip: Action.RESTORED,  # unchanged since the last login
        secret: Action.DELETED,
    }
    assert_text(
        netrc,
        "machine a.example login x password y\nmachine b1.example login x password z\n"
        "machine b2.example login x password z\n",
    )
    assert_text(pip, "[global]\nindex-url = https://mirror.example/simple/\ntimeout = 6\n")
    assert not (home / "secrets").exists(), "the directories login made are gone"
    assert tokens_in(home, ALL) == []
    assert ledger.paths() == []


def test_a_stale_codeartifact_token_is_neither_kept_nor_put_back(
    home: Path, ledger: Ledger
) -> None:
    """What ``aws codeartifact login`` (or a login whose ledger was lost) left: a token of
    CodeArtifact's user ``aws``. The ledger never holds it, logout does not bring it back."""
    pip = home / ".config" / "pip" / "pip.conf"
    pypirc = home / ".pypirc"
    netrc = home / ".netrc"
    write(pip, f"[global]\nindex-url = https://aws:{STALE}@{HOST}/pypi/x/simple/\ntimeout = 5\n")
    write(
        pypirc,
        "[distutils]\nindex-servers =\n    codeartifact\n\n"
        f"[codeartifact]\nrepository = https://{HOST}/pypi/x/\nusername = aws\n"
        f"password = {STALE}\n",
    )
    write(netrc, f"machine {HOST} login aws password {STALE}\nmachine a login b password c\n")
    grant = grant_for(ONE, HOST, "internal")
    files.write_pip_conf(ledger, grant, pip)
    files.write_pypirc(ledger, grant, "codeartifact", pypirc)
    files.write_netrc(ledger, grant, netrc)
    assert tokens_in(ledger.path.parent, ALL) == [], "the ledger holds a token"
    outcomes = ledger.restore()
    assert all("older CodeArtifact token" in o.detail for o in outcomes), outcomes
    assert_text(pip, "[global]\ntimeout = 5\n")
    assert_text(pypirc, "[distutils]\nindex-servers =\n    codeartifact\n\n")  # theirs
    assert_text(netrc, "machine a login b password c\n")
    assert tokens_in(home, ALL) == []


def test_the_users_own_edit_of_our_entry_is_what_logout_puts_back(
    home: Path, ledger: Ledger
) -> None:
    pip = home / ".config" / "pip" / "pip.conf"
    write(pip, "[global]\nindex-url = https://first.example/simple/\n")
    files.write_pip_conf(ledger, grant_for(ONE, HOST, "internal"), pip)
    text = read(pip) or ""
    ours = text[text.index("index-url") :]
    edit(pip, ours, "index-url = https://second.example/simple/\n")  # the user's choice now
    files.write_pip_conf(ledger, grant_for(TWO, OTHER, "release"), pip)
    assert tokens_in(ledger.path.parent, ALL) == []
    ledger.restore()
    assert_text(pip, "[global]\nindex-url = https://second.example/simple/\n")


def test_our_entry_edited_but_still_holding_a_token_is_removed(home: Path, ledger: Ledger) -> None:
    pip = home / ".config" / "pip" / "pip.conf"
    write(pip, "[install]\nuser = true\n")
    files.write_pip_conf(ledger, grant_for(ONE, HOST, "internal"), pip)
    edit(pip, "/pypi/internal/simple/", "/pypi/release/simple/")  # still aws:<token>@
    files.write_pip_conf(ledger, grant_for(TWO, HOST, "internal"), pip)
    edit(pip, "/pypi/internal/simple/", "/pypi/team-x/simple/")
    assert tokens_in(ledger.path.parent, ALL) == []
    outcomes = ledger.restore()
    assert [o.action for o in outcomes] == [Action.REMOVED_ENTRIES]
    assert_text(pip, "[install]\nuser = true\n")
    assert tokens_in(home, ALL) == []


def test_a_pypirc_section_the_user_made_theirs_stays_and_stays_listed(
    home: Path, ledger: Ledger
) -> None:
    path = home / ".pypirc"
    files.write_pypirc(ledger, grant_for(ONE, HOST, "internal"), "codeartifact", path)
    edit(path, "username = aws\n", "username = me\n")
    text = read(path) or ""
    edit(path, text[text.index("password = ") :], "password = mine\n")
    outcomes = ledger.restore()
    assert [o.action for o in outcomes] == [Action.LEFT]
    assert_text(
        path,
        "[distutils]\nindex-servers =\n    pypi\n    testpypi\n    codeartifact\n\n"
        f"[codeartifact]\nrepository = https://{HOST}/pypi/internal/\nusername = me\n"
        "password = mine\n",
    )
    assert ledger.paths() == []


def test_a_ledger_from_another_version_is_refused_not_guessed(home: Path, ledger: Ledger) -> None:
    write(ledger.path, '{"version": 1, "files": {}}')
    with pytest.raises(FilesError, match="another cabroker version"):
        ledger.restore()


def test_the_blank_line_login_added_goes_even_once_the_lines_above_it_went(
    home: Path, ledger: Ledger
) -> None:
    pip = home / ".config" / "pip" / "pip.conf"
    write(pip, "# mine\n")
    files.write_pip_conf(ledger, grant_for(ONE, HOST, "internal"), pip)
    edit(pip, "# mine\n", "")
    ledger.restore()
    assert_text(pip, "")  # it existed before login: emptied, not deleted


def test_an_option_the_user_put_in_our_section_goes_with_its_token(
    home: Path, ledger: Ledger
) -> None:
    """An edit inside our entry: the entry still holds our token, so logout takes it out
    whole (the token must go); the outcome says the file changed since login."""
    path = home / ".pypirc"
    write(path, "[pypi]\nusername = __token__\n")
    files.write_pypirc(ledger, grant_for(ONE, HOST, "internal"), "codeartifact", path)
    write(path, (read(path) or "") + "disable_progress_bar = true\n")
    outcomes = ledger.restore()
    assert [o.action for o in outcomes] == [Action.REMOVED_ENTRIES]
    assert_text(path, "[pypi]\nusername = __token__\n")
    assert tokens_in(home, ALL) == []
