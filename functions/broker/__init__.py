"""cabroker: a token broker that trades OIDC ID tokens for scoped CodeArtifact tokens."""

__version__ = "0.1.0"
