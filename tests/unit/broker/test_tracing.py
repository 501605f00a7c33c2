from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from broker.tracing import enabled

FUNCTIONS = Path(__file__).resolve().parents[3] / "functions"


@pytest.mark.parametrize(
    ("value", "on"),
    [("", True), ("false", True), ("true", False), ("TRUE", False), ("1", False)],
)
def test_enabled(value: str, on: bool) -> None:
    assert enabled({"POWERTOOLS_TRACE_DISABLED": value}) is on


@pytest.mark.parametrize(("disabled", "imported"), [("true", False), ("false", True)])
def test_the_xray_sdk_is_imported_only_when_tracing(disabled: str, imported: bool) -> None:
    code = "import sys, broker.app; print('aws_xray_sdk.core' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={
            "PYTHONPATH": str(FUNCTIONS),
            "POWERTOOLS_TRACE_DISABLED": disabled,
            "AWS_DEFAULT_REGION": "us-east-1",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == str(imported)
