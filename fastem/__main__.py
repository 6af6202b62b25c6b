"""``python -m fastem``: the same as the ``fastem`` command."""

from .cli import main

raise SystemExit(main())
