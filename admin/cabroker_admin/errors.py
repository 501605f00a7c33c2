"""What goes wrong, as one line each: the message names what and where, the exit code says
whose fault it is (1: the check or the operation failed; 2: the command line is wrong)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import BotoCoreError, ClientError

T = TypeVar("T")

FAILED = 1
USAGE = 2


class AdminError(Exception):
    """An operation failed; ``str()`` is the one line to show."""

    exit_code = FAILED


class UsageError(AdminError):
    """The command line asks for something impossible (a missing or malformed option)."""

    exit_code = USAGE


class AwsError(AdminError):
    """An AWS call failed; the message names the call, its target and the error code."""


def one_line(text: str) -> str:
    """``text`` on one line (YAML errors, AWS messages and exceptions may span several)."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def aws_call(what: str, target: str, call: Callable[[], T]) -> T:
    """Run ``call`` (an AWS request named ``what``, e.g. ``ssm:PutParameter``, on ``target``);
    a failure becomes :class:`AwsError` with the error code, never a traceback."""
    try:
        return call()
    except (ClientError, BotoCoreError) as error:
        raise aws_error(what, target, error) from None


def aws_error(what: str, target: str, error: ClientError | BotoCoreError) -> AwsError:
    """One line for a failed AWS call: the call, its target, the error code and message."""
    if isinstance(error, ClientError):
        code = error_code(error) or "Unknown"
        message = one_line(str(error.response.get("Error", {}).get("Message", "")))
    else:
        code, message = type(error).__name__, one_line(str(error))
    return AwsError(f"{what} on {target} failed: {code}" + (f": {message}" if message else ""))


def error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
