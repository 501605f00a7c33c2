"""cabroker: scoped AWS CodeArtifact tokens for pip, twine, uv and poetry, from an OIDC identity.

The command line is :mod:`cabroker.cli`; :mod:`cabroker.api` is the library entry point.
Nothing heavy is imported here: ``import cabroker`` must stay cheap (the keyring backend and the
CLI's ``--help`` depend on it).
"""

# The one place the version is written: the build reads it (client/pyproject.toml,
# [tool.hatch.version]), `cabroker --version` and the User-Agent import it. A release tag vX.Y.Z
# must match it (.github/workflows/release.yml checks).
__version__ = "0.1.0"
