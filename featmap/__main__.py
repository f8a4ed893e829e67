"""``python -m featmap``: a batch's helpers' server asked for before Click loads (`featmap.launch`), then the
command (`featmap.cli.run`)."""

import sys

try:
    from featmap.launch import collect_after_start_up, start_helpers_early

    collect_after_start_up()
    start_helpers_early(sys.argv[1:])
    from featmap.cli import run
except KeyboardInterrupt:  # Ctrl-C while the command line itself loads: one line, as later
    sys.stderr.write("featmap: error: interrupted\n")
    sys.exit(130)

run()
