"""A CodeArtifact stand-in (a test double): control plane, PyPI data plane, access checks."""
