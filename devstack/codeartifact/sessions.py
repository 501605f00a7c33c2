"""What moto's STS does not keep of an AssumeRole session: its SourceIdentity.

moto 5 ignores AssumeRole's ``SourceIdentity`` parameter. AWS keeps it for the whole session
and puts it in the request context of every later request as ``aws:SourceIdentity``
("After a source identity is set, the aws:SourceIdentity key is present in all subsequent
requests made during the role session",
https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_temp_control-access_monitor.html).
:func:`install` wraps moto's AssumeRole handler so that the value is checked as STS checks it
(2 to 64 characters of ``[\\w+=,.@-]``, never starting with ``aws:``; an invalid one is
refused with ``ValidationError`` before any session exists) and kept on moto's own record of
the session, where :func:`source_identity` reads it back.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from moto.sts.exceptions import STSValidationError
from moto.sts.responses import TokenResponse

SOURCE_IDENTITY = re.compile(r"^[\w+=,.@-]{2,64}$", re.ASCII)
_ATTRIBUTE = "devstack_source_identity"
_MARK = "_devstack_keeps_source_identity"
_lock = threading.Lock()


def source_identity_error(value: str) -> str | None:
    """Why STS would refuse ``value`` as a SourceIdentity, or ``None``."""
    if not SOURCE_IDENTITY.fullmatch(value):
        return (
            f"1 validation error detected: Value '{value}' at 'sourceIdentity' failed to satisfy "
            r"constraint: Member must satisfy regular expression pattern: [\w+=,.@-]* "
            "and have a length between 2 and 64"
        )
    if value.lower().startswith("aws:"):
        return "SourceIdentity must not begin with 'aws:'"
    return None


def install() -> None:
    """Make moto's STS keep each AssumeRole session's SourceIdentity (idempotent)."""
    with _lock:
        original = TokenResponse.assume_role
        if getattr(original, _MARK, False):
            return

        def assume_role(self: Any) -> Any:
            source = self._get_param("SourceIdentity")
            if source is not None:
                problem = source_identity_error(str(source))
                if problem:
                    raise STSValidationError(problem)
            answer: Any = original(self)
            if source is not None:
                setattr(answer.result["Credentials"], _ATTRIBUTE, str(source))
            return answer

        setattr(assume_role, _MARK, True)
        setattr(TokenResponse, "assume_role", assume_role)  # noqa: B010 - patching moto


def source_identity(assumed: Any) -> str | None:
    """The SourceIdentity a moto AssumeRole session was given, or ``None``."""
    value = getattr(assumed, _ATTRIBUTE, None)
    return value if isinstance(value, str) else None
