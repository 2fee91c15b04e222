# Leakscope's Python heap walk. It runs inside the target interpreter (put
# there by `leakscope-agent python-snapshot`, or run by `leakscope-agent`'s
# tests on a plain interpreter) and streams every object the garbage collector
# tracks, and the untracked objects they refer to, to the helper over a
# loopback socket, in the format `crates/heap/src/formats/python` reads
# ("LEAKSCOPE PYHEAP 1"). It leaves nothing behind: no module, no global, no
# file; modules it imported are removed from sys.modules again.
#
# Given in the globals: _LS = (port, token, timeout_secs) or, for tests,
# _LS_SINK = a writable binary file.
#
# Only builtin modules (gc, sys, _socket, _struct, time, array, itertools): images with
# python3-minimal have no socket.py. It never calls code of the program's
# own classes except sys.getsizeof (their __sizeof__, as every heap tool does)
# and, on 3.11+, reading __dict__ of at most 256 instances per class (which
# makes CPython create a small dict for each: about 100 bytes each; the README says so).


def _leakscope_walk(port, token, timeout, sink):
    import gc
    import sys
    import time
    import _struct
    from array import array
    from itertools import accumulate, chain, compress, filterfalse, repeat
    from _operator import not_

    before_modules = set(sys.modules)
    started = time.monotonic()
    paused = 0.0
    sock = None
    buf = bytearray()
    out = None
    try:
        if sink is None:
            import _socket

            sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
            sock.settimeout(30)
            sock.connect(("127.0.0.1", port))
            sock.sendall(token.encode() + b"\n")
            out = sock.sendall
        else:
            out = sink.write
        pack_obj = _struct.Struct("<cQIQQII").pack
        pack_str = _struct.Struct("<cI").pack
        pack_fold = _struct.Struct("<cQQ").pack
        pack_root = _struct.Struct("<cQBI").pack
        pack_end = _struct.Struct("<cQQQ").pack
        pack_chunk = _struct.Struct("<cII").pack
        pack_names = _struct.Struct("<cII").pack
        NONE = 0xFFFFFFFF
        NOLEN = 0xFFFFFFFFFFFFFFFF
        NAMED, INDEX, UNNAMED, KEY = 0, 1, 2, 3
        INDEX_BYTE, UNNAMED_BYTE = bytes([INDEX]), bytes([UNNAMED])
        HEAP_TYPE = 1 << 9
        strings = {}

        def sid(text):
            n = strings.get(text)
            if n is None:
                n = len(strings)
                strings[text] = n
                data = text.encode("utf-8", "surrogatepass")
                buf.extend(pack_str(b"s", len(data)))
                buf.extend(data)
            return n

        version = "%d.%d.%d" % sys.version_info[:3]
        try:
            import _tracemalloc  # builtin; PYTHONTRACEMALLOC starts it without importing it

            tracing = _tracemalloc.is_tracing()
        except ImportError:
            tracing = False
        header = '{"python":"%s","implementation":"%s","pid":%d,"time_ms":%d,"tracemalloc":%s}\n' % (
            version,
            sys.implementation.name,
            __import__("posix").getpid(),
            int(time.time() * 1000),
            "true" if tracing else "false",
        )
        buf.extend(b"LEAKSCOPE PYHEAP 1\n" + header.encode())
        if tracing:
            # tracemalloc already runs: the lines holding the most live memory,
            # read before the walk allocates anything of its own.
            sites = {}
            for trace in _tracemalloc._get_traces():
                frames = trace[2]
                key = frames[0] if frames else ("<unknown>", 0)  # most recent call first
                site = sites.get(key)
                if site is None:
                    sites[key] = [trace[1], 1]
                else:
                    site[0] += trace[1]
                    site[1] += 1
            top = sorted(sites.items(), key=lambda item: -item[1][0])[:100]
            sites = None
            rows = [(sid(str(file)), line, size, count) for (file, line), (size, count) in top]
            buf.extend(_struct.pack("<cI", b"t", len(rows)))
            for row in rows:
                buf.extend(_struct.pack("<IIQQ", *row))

        managed_dicts = sys.version_info >= (3, 11)
        sized = (list, tuple, dict, set, frozenset, str, bytes, bytearray)
        module_type = type(sys)
        frame_type = type(sys._getframe())
        code_type = type(_leakscope_walk.__code__)
        function_type = type(_leakscope_walk)
        type_names = {}
        named_instances = {}
        key_order = {}
        getsizeof = sys.getsizeof
        get_referents = gc.get_referents
        is_tracked = gc.is_tracked
        ours = set()

        def type_sid(t):
            n = type_names.get(t)
            if n is None:
                try:
                    module = t.__module__
                    name = t.__qualname__
                    if not isinstance(module, str) or not isinstance(name, str):
                        raise TypeError
                    n = sid(name if module == "builtins" else module + "." + name)
                except Exception:
                    n = sid(getattr(t, "__name__", "?") if isinstance(getattr(t, "__name__", None), str) else "?")
                type_names[t] = n
            return n

        def key_name(k):
            if type(k) is str:
                return sid(k[:120])
            if type(k) in (int, float, bool) or k is None:
                return sid("[" + repr(k) + "]")
            return NONE

        # Edges travel as three columns (targets, kinds, values): the ids are
        # packed by array() in C, which keeps the walk near guppy3's speed.
        def unnamed(targets):
            n = len(targets)
            return targets, UNNAMED_BYTE * n, bytes(4 * n)

        def mixed(pairs):
            # (target, kind, value) triples: for the few objects whose edges have names.
            return [p[0] for p in pairs], bytes(p[1] for p in pairs), array("I", [p[2] for p in pairs])

        def emit(o, targets, kinds, values, label):
            t = type(o)
            try:
                size = getsizeof(o)
            except Exception:
                size = 0
            buf.extend(pack_obj(b"o", id(o), type_ids[t], size, len(o) if t in sized else NOLEN, label, len(targets)))
            if targets:
                buf.extend(array("Q", map(id, targets)))
                buf.extend(kinds)
                buf.extend(values)

        def dict_edges(d):
            keys = list(d)
            n = len(keys)
            targets = [None] * (2 * n)
            targets[0::2] = keys
            targets[1::2] = d.values()
            kinds = bytearray(2 * n)
            values = array("I", bytes(8 * n))
            get = strings.get
            for i, k in enumerate(keys):
                kinds[2 * i] = KEY
                name = get(k) if type(k) is str else None
                if name is None:
                    name = key_name(k)
                if name == NONE:
                    kinds[2 * i + 1] = UNNAMED
                else:
                    values[2 * i + 1] = name
            return targets, kinds, values

        def instance_dict(o, t, refs):
            # The instance's own attribute dict, when one exists or may be made.
            if not managed_dicts:
                for r in refs:
                    if type(r) is dict:
                        d = o.__dict__
                        return d if d is r else None
                return None
            count = named_instances.get(t, 0)
            if count < 256:
                named_instances[t] = count + 1
                try:
                    d = o.__dict__
                except Exception:
                    return None
                if type(d) is dict:
                    names = [key_name(k) for k in d]
                    if key_order.get(t) != names:
                        key_order[t] = names
                        # Instances of this class walked in bulk name their n references by this list.
                        buf.extend(pack_names(b"a", type_sid(t), len(names) + 1))
                        buf.extend(array("I", names + [CLASS]))
                    if count + 1 >= 256:
                        plain[t] = REFERENTS  # enough names learnt: the rest go in bulk
                    return d
            return None

        def describe(o):
            # Edges (three columns), what the object folds in (its own __dict__),
            # whether that dict may be new, and a label.
            t = type(o)
            if t is dict:
                return dict_edges(o) + (None, False, NONE)
            if t is list or t is tuple:
                n = len(o)
                return o, INDEX_BYTE * n, array("I", range(n)), None, False, NONE
            refs = get_referents(o)
            if t is module_type:
                d = getattr(o, "__dict__", None)
                name = d.get("__name__") if type(d) is dict else None
                label = sid(name) if type(name) is str else NONE
                if type(d) is dict:
                    return unnamed([r for r in refs if r is not d]) + (d, False, label)
                return unnamed(refs) + (None, False, label)
            if t.__dictoffset__ != 0 and t.__flags__ & HEAP_TYPE:  # instances of classes written in Python
                d = instance_dict(o, t, refs)
                if d is not None:
                    if managed_dicts:
                        refs = get_referents(o)  # the values are now the dict's, not the instance's
                    pairs = [(r, UNNAMED, 0) for r in refs if r is not d and r is not t]
                    pairs.append((t, NAMED, CLASS))
                    # On 3.11+ reading __dict__ may have just made it: not in gc.get_objects().
                    return mixed(pairs) + (d, managed_dicts, NONE)
                values = [r for r in refs if r is not t]
                values.append(t)
                n = len(values)
                # The kinds and names of a class's attributes are the same for all
                # its instances of one size: made once, reused (most objects are these).
                columns = instance_columns.get((t, n))
                if columns is None:
                    names = key_order.get(t)
                    if not (managed_dicts and names is not None and len(names) == n - 1):
                        names = [NONE] * (n - 1)
                    names = names + [CLASS]
                    columns = (bytes(UNNAMED if k == NONE else NAMED for k in names), array("I", [0 if k == NONE else k for k in names]))
                    instance_columns[(t, n)] = columns
                return values, columns[0], columns[1], None, False, NONE
            if isinstance(o, type):
                label = NONE
                try:
                    name = o.__qualname__
                    label = sid(o.__module__ + "." + name if o.__module__ != "builtins" else name)
                except Exception:
                    pass
                try:
                    inner = get_referents(o.__dict__)
                except Exception:
                    inner = ()
                d = inner[0] if len(inner) == 1 and type(inner[0]) is dict else None
                base, mro = getattr(o, "__base__", None), getattr(o, "__mro__", None)
                pairs = [
                    (r, NAMED, BASE) if r is base else (r, NAMED, MRO) if r is mro else (r, UNNAMED, 0)
                    for r in refs
                    if r is not d
                ]
                return mixed(pairs) + (d, False, label)
            if t is frame_type:
                code = o.f_code
                label = sid("%s line %d" % (getattr(code, "co_qualname", code.co_name), o.f_lineno or 0))
                return unnamed(refs) + (None, False, label)
            if t is function_type:
                label = sid(o.__qualname__) if type(o.__qualname__) is str else NONE
                named = {id(o.__globals__): GLOBALS, id(o.__closure__): CLOSURE, id(o.__code__): CODE}
                pairs = [(r, NAMED, named[id(r)]) if id(r) in named else (r, UNNAMED, 0) for r in refs]
                return mixed(pairs) + (None, False, label)
            return unnamed(refs) + (None, False, NONE)

        instance_columns = {}
        objects = 0
        CLASS, BASE, MRO = sid("__class__"), sid("__base__"), sid("__mro__")
        GLOBALS, CLOSURE, CODE = sid("__globals__"), sid("__closure__"), sid("__code__")

        # Most objects go in bulk: chunk records whose columns (ids, types,
        # sizes, reference starts, references; dict key names) are made by
        # map() and array() in C, one call per column. Their references are
        # named on the reader's side: by position (list and tuple items, a
        # class's attributes by its names record) or by the dict key column.
        # Objects whose references need labels or special names go one by one.
        ONE_BY_ONE, REFERENTS, ATOMS, SEQUENCES, DICTS = 0, 1, 2, 3, 4
        one_by_one = {module_type, frame_type, function_type, code_type}
        atom_types = {str, bytes, int, float, bool, complex, type(None)}

        class Plain(dict):
            # type -> how its objects are written, decided once per type.
            def __missing__(self, t):
                if t is dict:
                    p = DICTS
                elif t is list or t is tuple:
                    p = SEQUENCES
                elif t in atom_types:
                    p = ATOMS  # no references: gc.get_referents (an audited call) is not needed
                elif t in one_by_one or issubclass(t, type) or issubclass(t, dict):
                    p = ONE_BY_ONE
                elif t.__dictoffset__ != 0 and t.__flags__ & HEAP_TYPE:
                    # Instances with a __dict__: the first ones go one by one (their
                    # attribute names are learnt); on 3.9/3.10 all (the dict is real).
                    p = ONE_BY_ONE
                else:
                    p = REFERENTS
                self[t] = p
                return p

        plain = Plain()

        class TypeIds(dict):
            def __missing__(self, t):
                n = type_sid(t)
                self[t] = n
                return n

        type_ids = TypeIds()

        class KeyNames(dict):
            # dict key -> the string naming the reference to its value.
            def __missing__(self, k):
                n = key_name(k)
                if len(self) < 1000000:
                    self[k] = n
                return n

        key_names = KeyNames()

        def names_of(d):
            # Keys name the references of small dicts (attributes, settings, registries).
            # Big ones are data: a cache's keys would only fill the string table, and
            # may be secrets (session tokens); their entries stay unnamed.
            if len(d) <= 256:
                return map(key_names.__getitem__, d)
            return repeat(NONE, len(d))
        pending = []

        def emit_chunk(objs, mode):
            # Writes one chunk; returns what its objects refer to.
            nonlocal objects
            k = len(objs)
            names = None
            if mode == ATOMS:
                flat = ()
                starts = bytes(4 * (k + 1))
            elif mode == SEQUENCES:
                flat = list(chain.from_iterable(objs))
                starts = array("I", accumulate(map(len, objs), initial=0))
            elif mode == DICTS:
                flat = list(chain.from_iterable(chain.from_iterable(map(dict.items, objs))))
                starts = array("I", accumulate(map((2).__mul__, map(len, objs)), initial=0))
                names = array("I", chain.from_iterable(map(names_of, objs)))
                if 2 * len(names) != len(flat) or starts[-1] != len(flat):
                    raise RuntimeError("a dict changed while it was read")
            else:
                refs = list(map(get_referents, objs))
                flat = list(chain.from_iterable(refs))
                starts = array("I", accumulate(map(len, refs), initial=0))
            try:
                sizes = array("Q", map(getsizeof, objs))
            except Exception:
                sizes = array("Q", map(safe_size, objs))
            # Types before the header: a type met for the first time writes its name's string record.
            types = array("I", map(type_ids.__getitem__, map(type, objs)))
            buf.extend(pack_chunk(b"d" if names is not None else b"c", k, len(flat)))
            buf.extend(array("Q", map(id, objs)))
            buf.extend(types)
            buf.extend(sizes)
            buf.extend(starts)
            if flat:
                buf.extend(array("Q", map(id, flat)))
            if names is not None:
                buf.extend(names)
            objects += k
            return flat

        def safe_size(o):
            try:
                return getsizeof(o)
            except Exception:
                return 0

        def queue_untracked(targets):
            # Untracked objects (str, int, bytes, dicts and tuples of only those)
            # are not in gc.get_objects(); they are queued as met, once per
            # batch (a dict keyed by id, built in C). One shared by many
            # batches (None, an interned name) is written once per batch; the
            # reader keeps the first. A set of every id met would cost the
            # target more memory and time than those repeats.
            found = list(filterfalse(is_tracked, targets))
            if not found:
                return
            by_id = dict(zip(map(id, found), found))
            for i in ours:
                by_id.pop(i, None)
            pending.extend(by_id.values())

        def walk_single(o, met):
            # Writes one object; what it refers to goes into `met`.
            nonlocal objects
            targets, kinds, values, folded, fresh, label = describe(o)
            emit(o, targets, kinds, values, label)
            objects += 1
            if folded is not None:
                buf.extend(pack_fold(b"f", id(o), id(folded)))
                if fresh:
                    walk_single(folded, met)  # maybe written twice: the reader keeps the first
                else:
                    met.append(folded)
            met.extend(targets)

        def process(objs):
            modes = list(map(plain.__getitem__, map(type, objs)))
            for mode in (ATOMS, SEQUENCES, DICTS, REFERENTS):
                group = list(compress(objs, map(mode.__eq__, modes)))
                if not group:
                    continue
                try:
                    flat = emit_chunk(group, mode)
                except Exception:
                    # A dict or list changed while it was read (another thread): one by one.
                    modes = [ONE_BY_ONE if m == mode else m for m in modes]
                    continue
                if mode != ATOMS:
                    queue_untracked(flat)
            met = []
            for o in compress(objs, map(ONE_BY_ONE.__eq__, modes)):
                t = type(o)
                if (t is code_type and o.co_filename == "<leakscope>") or (
                    t is function_type and o.__code__.co_filename == "<leakscope>"
                ):
                    continue  # the walk's own code
                try:
                    walk_single(o, met)
                except Exception:
                    pass
            queue_untracked(met)

        everything = gc.get_objects()
        ours.update((id(everything), id(strings), id(type_names), id(buf), id(ours)))
        ours.update((id(named_instances), id(key_order), id(instance_columns), id(plain), id(type_ids), id(key_names), id(pending)))
        ours.update(id(p.__self__) for p in (pack_obj, pack_str, pack_fold, pack_root, pack_end))
        buf.extend(pack_root(b"r", id(sys.modules), 0, sid("sys.modules")))
        for thread_id, frame in sys._current_frames().items():
            label = sid("thread %d" % thread_id)
            while frame is not None:
                if frame.f_code.co_filename == "<leakscope>":
                    ours.add(id(frame))  # our own frames are not the program's
                else:
                    buf.extend(pack_root(b"r", id(frame), 1, label))
                frame = frame.f_back
        deadline = started + timeout
        chunk_started = time.monotonic()

        def our_code(code):
            ours.add(id(code))
            ours.add(id(code.co_consts))
            for c in code.co_consts:
                if type(c) is code_type:
                    our_code(c)

        frame = sys._getframe()
        while frame is not None and frame.f_code.co_filename == "<leakscope>":
            our_code(frame.f_code)
            frame = frame.f_back
        frame = None
        CHUNK = 20000
        for first in range(0, len(everything), CHUNK):
            part = everything[first : first + CHUNK]
            process(list(compress(part, map(not_, map(ours.__contains__, map(id, part))))))
            while pending:
                part = pending[-CHUNK:]
                del pending[-CHUNK:]
                process(part)
            if len(buf) > (1 << 20):
                paused += time.monotonic() - chunk_started
                out(buf)
                buf.clear()
                if time.monotonic() > deadline:
                    raise TimeoutError("the walk took longer than %d s and was stopped" % timeout)
                time.sleep(0)  # let the program's other threads run
                chunk_started = time.monotonic()
        part = None
        paused += time.monotonic() - chunk_started
        everything = None
        buf.extend(pack_end(b"e", objects, int((time.monotonic() - started) * 1e6), int(paused * 1e6)))
        out(buf)
    except BaseException as e:  # never let SystemExit or anything else reach the program
        try:
            message = ("%s: %s" % (type(e).__name__, e)).encode("utf-8", "replace")[:2000]
            if out is not None:
                out(_struct.pack("<cI", b"x", len(message)) + message)
        except BaseException:
            pass
    finally:
        # The nested functions refer to each other through their cells: clear
        # them, so the walk's own objects go now, not at the next collection.
        sid = type_sid = key_name = emit = dict_edges = instance_dict = unnamed = mixed = None
        describe = walk_single = queue_untracked = emit_chunk = process = safe_size = our_code = None
        plain = type_ids = key_names = pending = names_of = None
        strings = type_names = named_instances = key_order = ours = instance_columns = None
        buf = None
        if sock is not None:
            try:
                sock.close()
            except BaseException:
                pass
        for name in set(sys.modules) - before_modules:
            sys.modules.pop(name, None)


if "_LS" in globals():
    _leakscope_walk(_LS[0], _LS[1], _LS[2], None)
else:
    _leakscope_walk(0, "", 600, _LS_SINK)
