"""`python -m pipeline.cli`: what the `oodwatch` command runs (the supervisor starts children so)."""

import sys

from pipeline.cli.main import main

sys.exit(main())
