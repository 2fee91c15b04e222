"""Known shapes for the Python front end's tests: run by the host's python3,
it builds them, walks its own heap with Leakscope's walk into argv[1], and
writes into argv[2] what an independent count of the same heap finds.

usage: shapes.py SNAPSHOT ORACLE_JSON ITEMS ITEM_BYTES ENTRIES CYCLE_NODES [trace]
"""
import gc
import json
import sys
from pathlib import Path

WALK = Path(__file__).resolve().parents[3] / "agent" / "src" / "python" / "walk.py"


class Item:
    def __init__(self, payload):
        self.payload = payload


class Cache:
    def __init__(self):
        self._store = {}


class Node:
    def __init__(self):
        self.next = None
        self.blob = bytearray(64)


class Registry:
    handlers = []  # a class-level list


def main():
    out, oracle_out = sys.argv[1], sys.argv[2]
    items, item_bytes, entries, cycle = (int(a) for a in sys.argv[3:7])
    if "trace" in sys.argv[7:]:
        import tracemalloc

        tracemalloc.start()
    global ITEMS, CACHE, RING
    ITEMS = [Item(b"i" * item_bytes) for _ in range(items)]  # the biggest allocation site
    CACHE = Cache()
    for k in range(entries):
        CACHE._store["key-%d" % k] = "value-%06d" % k
    nodes = [Node() for _ in range(cycle)]
    for a, b in zip(nodes, nodes[1:] + nodes[:1]):
        a.next = b
    RING = nodes[0]  # a reference cycle kept alive by a global
    del nodes
    for k in range(50):
        Registry.handlers.append(("handler", k * 1000))

    source = WALK.read_text()
    gc.collect()
    # No collection between the walk and the count: one would untrack tuples
    # of atoms, which the count can then no longer find (the walk did).
    gc.disable()
    with open(out, "wb") as sink:
        exec(compile(source, "<leakscope>", "exec"), {"__builtins__": __builtins__, "_LS_SINK": sink})
    counts = independent_count()
    Path(oracle_out).write_text(json.dumps(counts))


def independent_count():
    # Every tracked object, then what they refer to that is untracked; per type name.
    seen = set()
    counts = {}
    stack = list(gc.get_objects())
    ours = {id(stack), id(seen), id(counts)}
    while stack:
        o = stack.pop()
        if id(o) in seen or id(o) in ours:
            continue
        seen.add(id(o))
        t = type(o)
        name = t.__qualname__ if t.__module__ == "builtins" else t.__module__ + "." + t.__qualname__
        entry = counts.setdefault(name, [0, 0])
        entry[0] += 1
        entry[1] += sys.getsizeof(o)
        refs = gc.get_referents(o)
        if type(o) is dict:
            refs.extend(o)  # dicts with only str keys do not report their keys to the collector
        for r in refs:
            if not gc.is_tracked(r) and id(r) not in seen:
                stack.append(r)
    return counts


if __name__ == "__main__":
    main()
