"""``python -m featmap``."""

from featmap.cli import main

main()
