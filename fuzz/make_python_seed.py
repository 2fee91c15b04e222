"""Writes fuzz/seeds-python/tiny.pyheap: a small Python heap snapshot with every
record kind (strings, an object with named references, a __dict__ fold, a root,
a chunk, a dict chunk, a class's attribute names, the end), for the fuzzer to mutate.

usage: python3 fuzz/make_python_seed.py
"""
import struct
from pathlib import Path

out = bytearray(b"LEAKSCOPE PYHEAP 1\n" + b'{"python":"3.11.2","implementation":"cpython","pid":1,"time_ms":0,"tracemalloc":false}\n')
strings = []


def s(text):
    strings.append(text)
    data = text.encode()
    out.extend(struct.pack("<cI", b"s", len(data)) + data)
    return len(strings) - 1


NONE = 0xFFFFFFFF
NOLEN = 2**64 - 1


def obj(i, t, size, length, label, edges):
    out.extend(struct.pack("<cQIQQII", b"o", i, t, size, length, label, len(edges)))
    out.extend(b"".join(struct.pack("<Q", e[0]) for e in edges))
    out.extend(bytes(e[1] for e in edges))
    out.extend(b"".join(struct.pack("<I", e[2]) for e in edges))


def chunk(tag, ids, types, sizes, refs, names=None):
    flat = [r for rs in refs for r in rs]
    out.extend(struct.pack("<cII", tag, len(ids), len(flat)))
    out.extend(struct.pack("<%dQ" % len(ids), *ids))
    out.extend(struct.pack("<%dI" % len(ids), *types))
    out.extend(struct.pack("<%dQ" % len(ids), *sizes))
    starts = [0]
    for rs in refs:
        starts.append(starts[-1] + len(rs))
    out.extend(struct.pack("<%dI" % len(starts), *starts))
    out.extend(struct.pack("<%dQ" % len(flat), *flat))
    if names is not None:
        out.extend(struct.pack("<%dI" % len(names), *names))


dict_t, mod_t, type_t, list_t, item_t, bytes_t, str_t = (s(n) for n in ("dict", "module", "type", "list", "app.Item", "bytes", "str"))
main, items, payload, klass = s("__main__"), s("ITEMS"), s("payload"), s("__class__")
out.extend(struct.pack("<cQBI", b"r", 0x100, 0, s("sys.modules")))
obj(0x100, dict_t, 1200, 1, NONE, [(0x300, 3, 0), (0x200, 0, main)])
obj(0x200, mod_t, 72, NOLEN, main, [(0x210, 2, 0)])
out.extend(struct.pack("<cQQ", b"f", 0x200, 0x210))
out.extend(struct.pack("<cII", b"a", item_t, 2) + struct.pack("<2I", payload, klass))
chunk(b"d", [0x210], [dict_t], [600], [[0x310, 0x400]], [items])
chunk(b"c", [0x300, 0x310, 0x508, 0x518], [str_t, str_t, bytes_t, bytes_t], [57, 54, 1033, 1033], [[], [], [], []])
chunk(b"c", [0x400, 0x500, 0x510, 0x700, 0x708], [list_t, item_t, item_t, list_t, list_t], [88, 48, 48, 72, 72],
      [[0x500, 0x510], [0x508, 0x600], [0x518, 0x600], [0x708], [0x700]])
obj(0x600, type_t, 900, NOLEN, item_t, [])
out.extend(struct.pack("<cQQQ", b"e", 12, 100, 90))
Path(__file__).with_name("seeds-python").joinpath("tiny.pyheap").write_bytes(out)
print(len(out), "bytes")
