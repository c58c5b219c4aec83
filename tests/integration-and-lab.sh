#!/usr/bin/env bash
# make test's last part: what drives real guests, daemons and browsers on this
# machine (one pytest process), and beside it, at the same time, the
# several-machine lab (tests/lab). The two never meet: the lab's hosts are
# network, mount and UTS namespaces with their own etcd, libvirtd, agents,
# portals and addresses, and both parts mostly wait (on guests, on daemons),
# so together they take little longer than the longer of the two.
#
# The lab's output goes to var/test-lab.log; its figures and result are
# printed once both parts are done (all of it when it failed).
#
#   tests/integration-and-lab.sh PYTHON [PYTEST ARGS...]
set -uo pipefail
cd "$(dirname "$0")/.."
python=$1
shift
mkdir -p var
log=var/test-lab.log

"$python" -m pytest tests/lab -m lab -s -v "$@" >"$log" 2>&1 &
lab=$!
# Ctrl-C reaches both (one process group); a TERM to this script stops the lab too.
trap 'kill -TERM "$lab" 2>/dev/null' TERM

"$python" -m pytest -m "not lab and (integration or e2e)" "$@"
suite=$?
wait "$lab"
lab_status=$?

echo "=== the several-machine lab, run beside the suite above ($log) ==="
if [ "$lab_status" -ne 0 ]; then
    tail -n 300 "$log"
else
    grep -E "^LAB FIGURE|(PASSED|FAILED|ERROR)$|^=+ .*(passed|failed|error).* =+$" "$log"
fi
[ "$suite" -eq 0 ] && [ "$lab_status" -eq 0 ]
