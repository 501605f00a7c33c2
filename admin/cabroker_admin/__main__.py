"""``python -m cabroker_admin``: the same as the ``cabroker-admin`` command."""

from cabroker_admin.cli import main

raise SystemExit(main())
