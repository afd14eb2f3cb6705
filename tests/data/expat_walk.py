"""Parses an XML file with pyexpat, a Python handler for every element and text run, and prints
what the handlers saw (a digest and counts) and the parse time (with --time, to stderr)."""
import hashlib
import sys
import time
import xml.parsers.expat

path = sys.argv[1]
data = open(path, "rb").read()
h = hashlib.sha256()
counts = {"start": 0, "end": 0, "text": 0, "pi": 0, "comment": 0}
depth = [0, 0]


def start(name, attrs):
    counts["start"] += 1
    depth[0] += 1
    depth[1] = max(depth[1], depth[0])
    h.update(b"<" + name.encode() + b"".join(b" %s=%s" % (k.encode(), v.encode()) for k, v in sorted(attrs.items())))


def end(name):
    counts["end"] += 1
    depth[0] -= 1
    h.update(b"</" + name.encode())


def text(s):
    counts["text"] += 1
    h.update(s.encode())


def pi(target, data):
    counts["pi"] += 1


def comment(data):
    counts["comment"] += 1


p = xml.parsers.expat.ParserCreate()
p.StartElementHandler = start
p.EndElementHandler = end
p.CharacterDataHandler = text
p.ProcessingInstructionHandler = pi
p.CommentHandler = comment
t = time.perf_counter()
p.Parse(data, True)
dt = time.perf_counter() - t
print("elements", counts["start"], counts["end"], "text runs", counts["text"], "pi", counts["pi"],
      "comments", counts["comment"], "max depth", depth[1])
print("line", p.CurrentLineNumber, "digest", h.hexdigest())
try:
    xml.parsers.expat.ParserCreate().Parse(b"<a><b></a>", True)
except xml.parsers.expat.ExpatError as e:
    print("error:", e)
if "--time" in sys.argv:
    print(f"parse_s {dt:.6f}", file=sys.stderr)
