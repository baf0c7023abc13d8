#!/usr/bin/env bash
# A/B of the multi-host proof as CI runs it: `scripts/multihost_ab.sh A|B LABEL`.
# A = main's code (a detached worktree at /work/wt/p20mh-main), B = this branch; the same venv,
# the same command (CI's: GSC_REQUIRE_NETNS=1 GSC_REQUIRE_POSTGRES=1 pytest tests/test_multihost.py).
# Prints the 1-min load average before and after, and pytest's result line with its wall time.
set -euo pipefail
side=$1 label=$2
here=$(cd "$(dirname "$0")/.." && pwd)
case $side in
  A) dir=/work/wt/p20mh-main ;;
  B) dir=$here ;;
  *) echo "A or B" >&2; exit 2 ;;
esac
[ -d "$dir" ] || git -C "$here" worktree add --detach "$dir" main
cd "$dir"
load() { cut -d' ' -f1 /proc/loadavg; }
before=$(load)
start=$(date +%s.%N)
GSC_REQUIRE_NETNS=1 GSC_REQUIRE_POSTGRES=1 "$here/.venv/bin/python" -m pytest -q -rP -n 0 \
  -p no:cacheprovider --basetemp="/tmp/p20mh-ab-$label" tests/test_multihost.py \
  > "/tmp/p20mh-ab-$label.log" 2>&1 && rc=0 || rc=$?
end=$(date +%s.%N)
echo "$label side=$side rc=$rc wall=$(echo "$end - $start" | bc) s load_before=$before load_after=$(load) :: $(tail -1 /tmp/p20mh-ab-$label.log)"
