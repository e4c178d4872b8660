"""``python -m pipeline``: the command-line interface (see pipeline.cli)."""

from pipeline.cli import main

raise SystemExit(main())
