"""cabroker-admin: the admin tools of the cabroker broker (docs/admin.md, "The rules lifecycle")."""

__version__ = "0.1.0"
