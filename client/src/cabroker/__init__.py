"""cabroker: scoped AWS CodeArtifact tokens for pip, twine, uv and poetry, from an OIDC identity.

The command line is :mod:`cabroker.cli`; :mod:`cabroker.api` is the library entry point.
Nothing heavy is imported here: ``import cabroker`` must stay cheap (the keyring backend and the
CLI's ``--help`` depend on it).
"""

__version__ = "0.1.0"
