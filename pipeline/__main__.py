"""``python -m pipeline``: the command-line interface (see pipeline.cli)."""

from pipeline import quiet

quiet.install()  # before anything imports TensorFlow

from pipeline.cli import main  # noqa: E402

raise SystemExit(main())
