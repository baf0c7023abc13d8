"""Time the multi-host proof's phases: `python scripts/multihost_timing.py ROUNDS DAYS ROWS`.

Prints the report (phases: databases, namespaces, emulator, instance, workers start, rounds,
teardown; per round: seconds to the first fetch step and the round's seconds) and the wall time.
"""

import sys
import tempfile
import time
from pathlib import Path

from gsc_pipeline.tools.multihost import Plan, prove, report

rounds, days, rows = (int(a) for a in sys.argv[1:4])
start = time.monotonic()
# The hosts' and the emulator's logs stay in the printed directory.
tmp = tempfile.mkdtemp(prefix="gsc-mh-timing-")
print(f"workdir {tmp}", flush=True)
if True:
    outcome = prove(
        Plan(rounds=rounds, days=days, rows_per_day=rows),
        Path(tmp),
        on_round=lambda r: print(f"round {r.number}: {r.seconds:.1f} s", flush=True),
    )
print(report(outcome, f"scripts/multihost_timing.py {rounds} {days} {rows}"))
print(f"wall {time.monotonic() - start:.1f} s, ok={outcome.ok}")
