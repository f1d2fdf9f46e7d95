"""``python -m bench``: every benchmark and the summary (see :mod:`bench.run`)."""

from bench.run import main

raise SystemExit(main())
