"""What the broker accepts as its access rules, in one place: the broker checks every document
it loads with it, and the admin tools and the devstack check a document with it before they
write it anywhere.

A document is accepted when it parses (:func:`broker.rules.parse`), every rule's full grant
fits in a session policy (:func:`broker.scope.check_fits`) and every grant names a repository
the deployment serves (:func:`broker.rules.check_served`).
"""

from __future__ import annotations

from collections.abc import Iterable

from .rules import RuleSet, check_served, parse
from .scope import Domain, check_fits


def check(rules: RuleSet, domain: Domain, served: Iterable[str]) -> None:
    """Raise :class:`broker.rules.RulesError` unless the broker would serve ``rules``."""
    check_fits(rules, domain)
    check_served(rules, served)


def accept(text: str, domain: Domain, served: Iterable[str]) -> RuleSet:
    """The rules in ``text`` if the broker would serve them; else RulesError, naming why."""
    rules = parse(text)
    check(rules, domain, served)
    return rules
