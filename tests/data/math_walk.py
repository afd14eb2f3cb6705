#!/usr/bin/env python3
"""A script as PROGRAM: math functions of libm, which the interpreter binds, N times."""
import math
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
s = 0.0
for i in range(n):
    s += math.cos(i * 0.001) + math.sin(i * 0.002) + math.pow(1.0001, i % 100) + math.atan2(i, 7)
print(f"{s:.6f}")
print(math.cos(1.0), math.sin(2.0), math.pow(2.0, 10), math.atan2(1.0, 1.0))
