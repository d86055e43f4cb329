"""``python -m zol2l``: the ``zol2l`` command."""

from zol2l.cli import main

raise SystemExit(main())
