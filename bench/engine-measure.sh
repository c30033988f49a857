#!/bin/bash
# The kernel vs userland engine figures of bench/RESULTS.md: runs one scenario and
# reads box CPU and softirq (/proc/stat), Slab (/proc/meminfo) 9 s in, and the userland
# fabric process's RSS and CPU at that moment.
# usage: bench/engine-measure.sh bench/scenarios/nk-kernel.json OUTDIR [run flags, e.g. --set topology.network=kernel]
# SAMPLE_AT=seconds moves the mid-run reading (default 9).
# On the kernel engine with builtin balancers it also reads the relays' RSS and CPU (their sum).
cd "$(dirname "$0")/.."
read -r _ u n s i io irq sirq st _ < <(grep '^cpu ' /proc/stat)
b0=$((u+n+s+irq+sirq+st)); s0=$sirq
slab0=$(awk '/^Slab:/{print $2}' /proc/meminfo)
node dist/bin/pushbench.js run "$1" --out "$2" "${@:3}" > "$2.log" 2>&1 &
pid=$!
sleep "${SAMPLE_AT:-9}"
slab1=$(awk '/^Slab:/{print $2}' /proc/meminfo)
npid=$(pgrep -f "network/process" | head -1)
if [ -n "$npid" ]; then nrss=$(awk '/^VmRSS:/{print $2}' /proc/$npid/status); ncpu=$(awk '{print ($14+$15)/100}' /proc/$npid/stat); fi
rrss=0; rcpu=0
for r in $(pgrep -f "network/relay-process"); do
  rrss=$((rrss + $(awk '/^VmRSS:/{print $2}' /proc/$r/status))); rcpu=$(awk -v a="$rcpu" '{print a + ($14+$15)/100}' /proc/$r/stat)
done
hp=$(pgrep -x haproxy | head -1)
if [ -n "$hp" ]; then hrss=$(awk '/^VmRSS:/{print $2}' /proc/$hp/status); fi
wait $pid; ec=$?
read -r _ u n s i io irq sirq st _ < <(grep '^cpu ' /proc/stat)
b1=$((u+n+s+irq+sirq+st))
echo "exit=$ec box_busy_s=$(( (b1-b0) ))/100 softirq_s=$(( (sirq-s0) ))/100 slab_delta_kB_at_9s=$((slab1-slab0)) netproc_pid=$npid netproc_rss_kB=$nrss netproc_cpu_s_at_9s=$ncpu relays_rss_kB=$rrss relays_cpu_s_at_9s=$rcpu haproxy_rss_kB=$hrss"
grep -E "verdict|^kill" "$2.log"
