"""``python -m nba_fast``: the ``nba-fast`` command line."""

import sys

from nba_fast.cli import main

sys.exit(main())
