#!/usr/bin/env python3
"""Paired rounds of a program under fracture variants against the plain program.

    bench/paired.py VARIANTS -- PROGRAM ARGS...

VARIANTS is JSON: {"name": [{"ENV": "value", ...}, ["fracture run options", ...]], ...}.
Each round runs the plain program, then every variant (`fracture run OPTIONS -- PROGRAM`),
and takes each variant's wall and CPU time (user + system of the whole process tree) as a
ratio to that round's plain run; prints the medians over the rounds (ROUNDS, default 11).
For comparing two builds of the shim, point a variant's FRACTURE_SHIM at a copy of one.
A tool for one question at a time; `make bench` is the full table.
"""
import json, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRACTURE = os.path.join(ROOT, "target/release/fracture")


def timed(cmd, env=None):
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, _, ru = os.wait4(p.pid, 0)
    return time.perf_counter() - t, ru.ru_utime + ru.ru_stime


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print(__doc__.strip(), file=sys.stderr)
        return 2
    variants = json.loads(sys.argv[1])
    prog = sys.argv[3:]
    ratios = {k: ([], []) for k in variants}
    for _ in range(int(os.environ.get("ROUNDS", "11"))):
        pw, pc = timed(prog)
        for name, (env, opts) in variants.items():
            w, c = timed([FRACTURE, "run", *opts, "--", *prog], dict(os.environ, **env))
            ratios[name][0].append(w / pw)
            ratios[name][1].append(c / pc)
    for name, (w, c) in ratios.items():
        print(f"{name:12} wall {statistics.median(w):.3f}x  CPU {statistics.median(c):.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
