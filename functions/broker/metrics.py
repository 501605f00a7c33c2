"""CloudWatch counts (EMF lines through Powertools), each with its own dimension."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit, single_metric

NAMESPACE = "CodeArtifactBroker"


def count(name: str, dimension: str, value: str) -> None:
    """One count of ``name`` by ``dimension`` (tokens by access, denials by reason, …)."""
    with single_metric(name=name, unit=MetricUnit.Count, value=1, namespace=NAMESPACE) as metric:
        metric.add_dimension(name=dimension, value=value)
