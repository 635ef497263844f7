"""``python -m equivar`` runs the command-line interface."""

from equivar.cli import main

raise SystemExit(main())
