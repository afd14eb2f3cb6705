#!/bin/bash
# Paired rounds of the isolated scalar call for two or more shim builds, with the spin
# ping-pong baseline measured in each round (the machine is shared: compare within a round).
#   bench/scalar_pair.sh ROUNDS SHIM.so [SHIM.so...]
# Each round prints spin=NS and, per shim (named after its file), the median ns of
# `fx_bench scalar 100000` under configs/fx.yaml. Build the copies to compare first
# (`cp target/release/libfracture.so /tmp/a.so`, then the other build).
set -e
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FX=$ROOT/target/fixtures
median() { python3 -c 'import json,sys;print(json.load(sys.stdin)["median_ns"])'; }
R=$1
shift
for r in $(seq "$R"); do
  line="round $r: spin=$("$FX/pingpong" spin 20000 | median)"
  for so in "$@"; do
    v=$(FRACTURE_SHIM=$so "$ROOT/target/release/fracture" run -c "$ROOT/configs/fx.yaml" -- \
      "$FX/fx_bench" scalar 100000 | median)
    line="$line $(basename "$so" .so)=$v"
  done
  echo "$line"
done
