"""``python -m featmap``."""

from .cli import main

main()
