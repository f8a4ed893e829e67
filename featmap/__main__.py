"""``python -m featmap``."""

import sys

try:
    from featmap.cli import run
except KeyboardInterrupt:  # Ctrl-C while the command line itself loads: one line, as later
    sys.stderr.write("featmap: error: interrupted\n")
    sys.exit(130)

run()
