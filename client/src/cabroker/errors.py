"""The client's one exception family: each error is one actionable line and an exit code.

Exit codes (documented in docs/client.md and ``cabroker --help``):

==== =====================================================================================
0    success
1    an unexpected error (a bug: run again with ``--debug`` and report it)
2    usage: bad arguments, no broker URL configured, or a URL that is not a cabroker broker
3    the broker refused (4xx): its problem ``detail`` is shown
4    the broker is unreachable, unavailable (5xx) or throttling (429), or its answer is not
     a usable grant (an http:// URL, credentials or control characters in it): try again
5    no identity: none detected, the identity token expired, or interactive login failed
6    a CodeArtifact token expired or is missing (``cabroker status``); log in again
7    a configuration file could not be written or restored
==== =====================================================================================
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUG = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNAVAILABLE = 4
EXIT_IDENTITY = 5
EXIT_EXPIRED = 6
EXIT_FILES = 7
EXIT_BROKEN_PIPE = 141  # the output's reader stopped reading (128 + SIGPIPE, as a shell says)


class CabrokerError(Exception):
    """A failure the user can act on: ``str(error)`` says what failed and what to do."""

    exit_code = EXIT_BUG

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(CabrokerError):
    exit_code = EXIT_USAGE


class BrokerRefused(CabrokerError):
    """The broker answered with a problem (4xx); ``problem`` is its RFC 9457 body."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, status: int, problem: dict[str, object]) -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem


class BrokerUnavailable(CabrokerError):
    exit_code = EXIT_UNAVAILABLE


class IdentityError(CabrokerError):
    exit_code = EXIT_IDENTITY


class TokenExpired(CabrokerError):
    exit_code = EXIT_EXPIRED


class FilesError(CabrokerError):
    exit_code = EXIT_FILES
