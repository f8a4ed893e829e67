"""``python -m featmap``."""

from featmap.cli import run

run()
