#!/usr/bin/env bash
# The main demo: /usr/bin/file, unmodified, with libmagic moved into a helper process.
set -euo pipefail
# Display pipelines cut with `sed -n`, not `head`: under pipefail a writer that head leaves
# behind dies of SIGPIPE and ends the demo (seen: exit 141).
cd "$(dirname "$0")/.."
FRACTURE=target/release/fracture
FX=target/fixtures
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== 1. /usr/bin/file with libmagic isolated (configs/file-magic.yaml)"
find /usr/bin /usr/lib/x86_64-linux-gnu -maxdepth 1 -type f 2>/dev/null | sort | sed -n "1,400p" > "$work/files"
echo "   $(wc -l < "$work/files") real files"
t0=$(date +%s.%N); file -f "$work/files" > "$work/plain.out"; t1=$(date +%s.%N)
$FRACTURE run -c configs/file-magic.yaml --stats "$work/stats.json" -- file -f "$work/files" > "$work/fracture.out"
t2=$(date +%s.%N)
if cmp -s "$work/plain.out" "$work/fracture.out"; then
  echo "   output identical to plain 'file -f' ($(wc -l < "$work/plain.out") lines)"
else
  echo "   OUTPUT DIFFERS:"; diff "$work/plain.out" "$work/fracture.out" | sed -n "1,10p"; exit 1
fi
python3 -c "import sys; a,b,c=map(float,sys.argv[1:]); print(f'   plain {b-a:.2f}s, isolated {c-b:.2f}s')" "$t0" "$t1" "$t2"
python3 - "$work/stats.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
for name, p in s["processes"].items():
    print(f"   helper process '{name}' (pid {p['pid']}, program pid {s['pid']}):")
    for fn, f in p["functions"].items():
        if f["calls"]:
            print(f"     {fn:14} {f['calls']:5} calls  p50 {f['latency_us']['p50']:8.1f} us  p99 {f['latency_us']['p99']:8.1f} us")
PY

echo
echo "== 1b. no map at all: xz with liblzma in a helper, memory fetched on demand (--isolate)"
cat /usr/bin/xz /usr/bin/file > "$work/xzin"
xz -6 -c "$work/xzin" > "$work/plain.xz"
$FRACTURE run --isolate liblzma.so.5 --stats "$work/xzstats.json" -- xz -6 -c "$work/xzin" > "$work/iso.xz"
if cmp -s "$work/plain.xz" "$work/iso.xz"; then
  echo "   compressed output identical to plain xz ($(wc -c < "$work/iso.xz") bytes)"
else
  echo "   OUTPUT DIFFERS"; exit 1
fi
python3 - "$work/xzstats.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))["processes"]["isolated"]
n = p["functions"]["lzma_code"]["calls"]
g = p["pages"]
print(f"   lzma_code ran {n} times in the helper; pages fetched on a fault {g['fetched']}, "
      f"sent ahead {g['sent_ahead']}, bytes written back {g['bytes_written']}")
PY
echo "   the map it used: fracture init --isolate liblzma.so.5 -- xz (first lines):"
$FRACTURE init --isolate liblzma.so.5 -- xz | sed -n "3,7p" | sed 's/^/     /'

echo
echo "== 2. a fixture program whose library runs in a helper (configs/fx.yaml)"
$FRACTURE run -c configs/fx.yaml -- $FX/fx_demo --where | tail -n 4
echo
echo "== 3. a nested call: the isolated module calls back into a module that stays in the program"
$FRACTURE run -c configs/nest.yaml -- $FX/fx_nest_prog
echo
echo "== 4. the helper crashes: the program ends the way the helper did, with a message"
set +e
echo segv | $FRACTURE run -c configs/fx.yaml -- $FX/fx_crashy
echo "   exit status $? (plain: $(echo segv | $FX/fx_crashy >/dev/null 2>&1; echo $?))"

echo
echo "== 5. the same crash with recovery (configs/fx-recover.yaml): the program goes on, its state intact"
printf 'new 100\nadd 5\nsegv\nadd 1\nget\n' > "$work/state.in"
echo "   plain:"
$FX/fx_state < "$work/state.in" | sed 's/^/     /'; echo "     (exit status ${PIPESTATUS[0]})"
echo "   isolated, restore: replay:"
$FRACTURE run -c configs/fx-recover.yaml -- $FX/fx_state < "$work/state.in" 2>"$work/rec.err" | sed 's/^/     /'
sed 's/^/     /' "$work/rec.err"
echo
echo "== 6. Rx: retries in changed environments (configs/fx-rx.yaml)"
echo "   plain: a heap overflow aborts the program:"
printf 'smash 40\n' | $FX/fx_heap 2>&1 | sed 's/^/     /'
echo "   isolated: the retry with a padded allocator succeeds:"
printf 'smash 40\n' | $FRACTURE run -c configs/fx-rx.yaml -- $FX/fx_heap 2>&1 | sed 's/^/     /'
echo "   isolated: an environment-sensitive bug, fixed by the second retry environment:"
printf 'envbug\n' | $FRACTURE run -c configs/fx-rx.yaml -- $FX/fx_envbug 2>&1 | sed 's/^/     /'

echo
echo "== 7. replication: libmagic three ways, one replica with a wrong magic database (configs/file-replicate.yaml)"
printf '0\tstring\t\\x7fELF\tFAULTY executable\n' > "$work/faulty.magic"
file /bin/ls /etc/passwd > "$work/plain7.out"
$FRACTURE run -c configs/file-replicate.yaml --stats "$work/s7.json" \
  --set "processes.parser.replicate.envs=[{}, {}, {vars: {MAGIC: \"$work/faulty.magic\"}}]" \
  -- file /bin/ls /etc/passwd > "$work/rep7.out" 2> "$work/rep7.err"
cmp -s "$work/plain7.out" "$work/rep7.out" && echo "   output identical to plain file (the majority answered)"
cut -c1-160 "$work/rep7.err" | sed 's/^/   /'
python3 -c "import json,sys; [print(f\"   replica {r['replica']}: {r['calls']} calls, {r['mismatches']} mismatches\") for r in json.load(open(sys.argv[1]))['processes']['parser']['replicas']]" "$work/s7.json"
echo "   N-version: a second build of libfx in one replica (configs/fx-nversion.yaml):"
$FRACTURE run -c configs/fx-nversion.yaml -- $FX/fx_demo 2>&1 >/dev/null | cut -c1-160 | sed 's/^/   /'

echo
echo "== 8. sampling: valgrind on one of four helpers, not on the program (fx_heap)"
printf 'leak 1000\noverflow 24\n' | $FRACTURE run -c configs/fx.yaml \
  --set 'processes.fxhelper.sample={count: 4, envs: [{}, {}, {}, {wrapper: [valgrind, --leak-check=full, -q]}]}' \
  -- $FX/fx_heap 2> "$work/vg.err" | sed 's/^/   program: /'
grep -E "Invalid write|definitely lost|by 0x.*fx_(leak|overflow)" "$work/vg.err" | sed -n "1,6p" | sed 's/^/   /'

echo
echo "== 9. quarantine: fx_chat (an event loop with 16 modules) crashes; the next run is planned from the report"
export FRACTURE_REPORTS="$work/reports.db"
$FX/fx_chat --gen 3000 > "$work/events"
$FRACTURE run -c configs/chat.yaml -- $FX/fx_chat < "$work/events" > "$work/chat1.out" 2>&1
echo "   run 1, nothing isolated: exit status $? after $(grep -c '^<' "$work/chat1.out") messages"
$FRACTURE report | sed 's/^/   /'
$FRACTURE plan -c configs/chat.yaml -o "$work/next.yaml" 2>&1 | sed 's/^/   /'
$FRACTURE run -c "$work/next.yaml" -- $FX/fx_chat < "$work/events" 2>/dev/null | tail -n 1 | sed 's/^/   run 2, planned map: /'
echo "   bisect, without the reports:"
$FRACTURE bisect -c configs/chat.yaml -- $FX/fx_chat < "$work/events" 2>&1 | sed 's/^/     /'
echo "   profile and partition: the cheapest boundary around p03 (which calls util per character)"
grep -v $'\x01BUZZ' "$work/events" > "$work/events.ok"
FRACTURE_REPORTS=off $FRACTURE profile -c configs/chat.yaml -o "$work/graph.json" -- $FX/fx_chat < "$work/events.ok" 2>&1 >/dev/null | sed 's/^/     /'
$FRACTURE partition "$work/graph.json" --isolate p03 --dot "$work/p03.dot" | sed 's/^/     /'
echo "   the leaky plugin p05 under valgrind in a sampled helper, the program not:"
grep -v $'\x01BUZZ' "$work/events" | FRACTURE_REPORTS=off $FRACTURE run -c configs/chat.yaml \
  --set 'processes={p05: {modules: [p05], sample: {count: 2, envs: [{}, {wrapper: [valgrind, --leak-check=full, -q]}]}}}' \
  -- $FX/fx_chat 2>&1 >/dev/null | grep -E "definitely lost|p05_parse" | sed -n "1,3p" | sed 's/^/     /'
