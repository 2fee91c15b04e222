#!/usr/bin/env bash
# Analysis benchmark, side by side: `leakscope analyze` vs VisualVM's heap engine
# on the same HPROF dump. Needs Debian's visualvm and a JDK.
# Usage: crates/heap/bench/run.sh [sessions]   (default 550000 sessions ~ 2.2 M objects, ~190 MB dump)
set -euo pipefail
cd "$(dirname "$0")/../../.."
sessions="${1:-550000}"
jar=/usr/share/visualvm/visualvm/modules/org-graalvm-visualvm-lib-jfluid-heap.jar
[ -f "$jar" ] || { echo "install Debian's visualvm first (apt-get install visualvm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"; [ -n "${pid:-}" ] && kill "$pid" 2>/dev/null || true' EXIT
javac -d "$work" crates/heap/tests/java/LeakMain.java
javac -cp "$jar" -d "$work" crates/heap/bench/VisualVmHeap.java
java -Xmx3g -cp "$work" LeakMain "$sessions" 200 1000 64 > "$work/out" &
pid=$!
until grep -q ready "$work/out" 2>/dev/null; do sleep 0.5; done
jcmd "$pid" GC.heap_dump "$work/dump.hprof" | grep -q "Heap dump file created"
kill "$pid"; pid=
cargo build --release -q -p leakscope
ls -l "$work/dump.hprof"
# One untimed warm-up run each (page cache, JIT-free process start), then five timed runs.
./target/release/leakscope analyze "$work/dump.hprof" --json > /dev/null
ours=()
for _ in 1 2 3 4 5; do
  s=$(date +%s%N); ./target/release/leakscope analyze "$work/dump.hprof" --json > /dev/null; e=$(date +%s%N)
  ours+=($(( (e - s) / 1000000 )))
done
# Peak anonymous memory (RssAnon sampled every 2 ms): the analysis's big
# columns are file-backed pages the kernel can drop, the dump itself is mapped.
./target/release/leakscope analyze "$work/dump.hprof" --json > /dev/null &
apid=$!; peak=0
while kill -0 "$apid" 2>/dev/null; do
  kb=$(awk '/^RssAnon/ {print $2}' "/proc/$apid/status" 2>/dev/null || true)
  [ -n "$kb" ] && [ "$kb" -gt "$peak" ] && peak=$kb
  sleep 0.002
done
echo "leakscope analyze peak RssAnon: $((peak / 1024)) MiB (dump file: $(( $(stat -c %s "$work/dump.hprof") / 1048576 )) MiB)"
rm -rf "$work/dump.hprof.hwcache"
java -Xmx4g -cp "$jar:$work" VisualVmHeap "$work/dump.hprof" > /dev/null
theirs=()
for _ in 1 2 3 4 5; do
  # VisualVM caches its index beside the dump; a fair run starts without it.
  rm -rf "$work/dump.hprof.hwcache"
  theirs+=($(java -Xmx4g -cp "$jar:$work" VisualVmHeap "$work/dump.hprof" | awk '/elapsed_ms/ {print $2}'))
done
median() { printf '%s\n' "$@" | sort -n | sed -n 3p; }
o=$(median "${ours[@]}"); t=$(median "${theirs[@]}")
echo "leakscope analyze (median of 5): ${o} ms   runs: ${ours[*]}"
echo "VisualVM heap engine (median of 5): ${t} ms   runs: ${theirs[*]}"
awk -v o="$o" -v t="$t" 'BEGIN { printf "ratio: leakscope is %.1fx faster\n", t / o }'
# Peak anonymous memory of leakscope analyze (mapped dump pages excluded), sampled every 10 ms.
./target/release/leakscope analyze "$work/dump.hprof" --json > /dev/null &
apid=$!
peak=0
while kill -0 "$apid" 2>/dev/null; do
  a=$(awk '/RssAnon/ {print $2}' "/proc/$apid/status" 2>/dev/null || echo 0)
  [ -n "$a" ] && [ "$a" -gt "$peak" ] && peak=$a
  sleep 0.01
done
size=$(stat -c %s "$work/dump.hprof")
echo "peak RssAnon: $((peak / 1024)) MiB for a $((size / 1048576)) MiB dump"

