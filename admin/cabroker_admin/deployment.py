"""What the admin tools assume of a deployment they are not told about.

``PLACEHOLDER_DOMAIN`` is the CodeArtifact domain a session policy's size is computed for when
no ``--domain``/``--domain-owner`` (and, for ``rules check``, ``--region``/``--partition``) is
given: ``domain`` of account ``111122223333`` in ``us-east-1``. A real domain's ARNs are at most
a few characters longer per ARN. ``rules check`` (:mod:`cabroker_admin.lint`) and
``rules explain|test|diff`` (:mod:`cabroker_admin.evaluate`) both use this one.
"""

from __future__ import annotations

from broker.scope import Domain

PLACEHOLDER_DOMAIN = Domain(
    partition="aws", region="us-east-1", owner="111122223333", name="domain"
)
