# Streams data through CPython's zlib, bz2 and lzma modules (compressobj/decompressobj,
# several levels and formats) and prints digests: the output is the same whether those
# libraries run in the program or, with `memory: on-demand`, in a helper.
import bz2
import hashlib
import lzma
import sys
import zlib

def data(n, seed):
    out = bytearray()
    x = seed
    words = [b"alpha", b"beta", b"gamma", b"delta", b"epsilon", b"zeta", b"eta", b"theta"]
    while len(out) < n:
        x = (x * 1103515245 + 12345) & 0x7fffffff
        out += words[x % 8] + (b" " if x & 16 else b"\n") + bytes([x & 0xff]) * (x % 3)
    return bytes(out[:n])

def chunks(b, size):
    for i in range(0, len(b), size):
        yield b[i:i + size]

def digest(b):
    return hashlib.sha256(b).hexdigest()[:16]

size = int(sys.argv[1]) if len(sys.argv) > 1 else 400_000
src = data(size, 7)
print("source", len(src), digest(src))

for level in (1, 6, 9):
    for wbits in (15, -15, 31):
        c = zlib.compressobj(level, zlib.DEFLATED, wbits)
        z = b"".join(c.compress(ch) for ch in chunks(src, 16384)) + c.flush()
        d = zlib.decompressobj(wbits)
        back = b"".join(d.decompress(ch) for ch in chunks(z, 5000)) + d.flush()
        assert back == src
        print("zlib", level, wbits, len(z), digest(z), zlib.crc32(z), zlib.adler32(back))

for level in (1, 9):
    c = bz2.BZ2Compressor(level)
    z = b"".join(c.compress(ch) for ch in chunks(src, 30000)) + c.flush()
    d = bz2.BZ2Decompressor()
    back = b"".join(d.decompress(ch) for ch in chunks(z, 7000))
    assert back == src
    print("bz2", level, len(z), digest(z))

for fmt, kw in ((lzma.FORMAT_XZ, {"preset": 1}), (lzma.FORMAT_XZ, {"preset": 6}),
                (lzma.FORMAT_ALONE, {"preset": 2}),
                (lzma.FORMAT_RAW, {"filters": [{"id": lzma.FILTER_LZMA2, "preset": 3}]})):
    c = lzma.LZMACompressor(format=fmt, **kw)
    z = b"".join(c.compress(ch) for ch in chunks(src, 20000)) + c.flush()
    dkw = {"filters": kw["filters"]} if fmt == lzma.FORMAT_RAW else {}
    d = lzma.LZMADecompressor(format=fmt, **dkw)
    back = b"".join(d.decompress(ch) for ch in chunks(z, 6000))
    assert back == src
    print("lzma", fmt, len(z), digest(z))
print("one-shot", digest(zlib.decompress(zlib.compress(src, 5))), digest(bz2.compress(src[:50000])),
      digest(lzma.decompress(lzma.compress(src[:50000]))))
