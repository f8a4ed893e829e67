#!/usr/bin/env bash
# A long fuzz session: the property tests of tests/test_fuzz.py and tests/test_fuzz_hostile.py at SCALE times
# their CI case counts, and the kill tests of tests/test_kill.py TRIALS times per signal. Prints hypothesis's per-test case counts and
# pytest's summary; a crash (segfault) shows as pytest dying with a signal, a hang as a `Hang` failure.
#   bash tools/fuzz.sh            # SCALE=40, TRIALS=20
#   SCALE=5 TRIALS=3 bash tools/fuzz.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export FEATMAP_FUZZ_SCALE="${SCALE:-40}" FEATMAP_KILL_TRIALS="${TRIALS:-20}"
echo "featmap fuzz session: FEATMAP_FUZZ_SCALE=$FEATMAP_FUZZ_SCALE FEATMAP_KILL_TRIALS=$FEATMAP_KILL_TRIALS"
python -m pytest -p no:cacheprovider -q tests/test_fuzz.py tests/test_fuzz_hostile.py --hypothesis-show-statistics -rA 2>&1 \
    | grep -E "^tests/test_fuzz(_hostile)?.py::test|passing, |Stopped because|[0-9]+ (passed|failed)|Hang|Falsifying|^E  "
echo "fuzz exit status: ${PIPESTATUS[0]} (0 = no traceback, hang or crash; 139 or -11 = a segfault)"
python -m pytest -p no:cacheprovider -q tests/test_kill.py -rA 2>&1 | tail -n 5
echo "kill exit status: ${PIPESTATUS[0]}"
