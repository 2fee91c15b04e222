"""Writes small valid HPROF files as the fuzzer's starting corpus (run once; the files are committed)."""
import struct, sys

def dump(id_size, path):
    def id_(v): return v.to_bytes(id_size, "big")
    out = bytearray(b"JAVA PROFILE 1.0.2\0") + struct.pack(">IQ", id_size, 1_700_000_000_000)
    def record(tag, body):
        out.extend(struct.pack(">BII", tag, 0, len(body))); out.extend(body)
    for sid, text in [(1, b"Main"), (2, b"next"), (3, b"count"), (4, b"SESSIONS"), (5, b"[Ljava/lang/Object;")]:
        record(0x01, id_(sid) + text)
    record(0x02, struct.pack(">I", 1) + id_(0x100) + struct.pack(">I", 0) + id_(1))
    record(0x02, struct.pack(">I", 2) + id_(0x200) + struct.pack(">I", 0) + id_(5))
    seg1 = bytearray()
    # class dump: Main with a static reference and two instance fields (an object and an int)
    seg1 += bytes([0x20]) + id_(0x100) + struct.pack(">I", 0) + id_(0) + id_(0) + id_(0) + id_(0) + id_(0) + id_(0)
    seg1 += struct.pack(">I", 16) + struct.pack(">H", 0)
    seg1 += struct.pack(">H", 1) + id_(4) + bytes([2]) + id_(0x2000)
    seg1 += struct.pack(">H", 2) + id_(2) + bytes([2]) + id_(3) + bytes([10])
    seg1 += bytes([0x20]) + id_(0x200) + struct.pack(">I", 0) + id_(0) * 6 + struct.pack(">I", 0) + struct.pack(">HHH", 0, 0, 0)
    record(0x1C, bytes(seg1))
    seg2 = bytearray()
    for i in range(3):
        nxt = 0x1000 + (i + 1) * 16 if i < 2 else 0
        seg2 += bytes([0x21]) + id_(0x1000 + i * 16) + struct.pack(">I", 0) + id_(0x100) + struct.pack(">I", id_size + 4) + id_(nxt) + struct.pack(">i", i)
    seg2 += bytes([0x22]) + id_(0x2000) + struct.pack(">I", 0) + struct.pack(">I", 2) + id_(0x200) + id_(0x1000) + id_(0x3000)
    seg2 += bytes([0x23]) + id_(0x3000) + struct.pack(">I", 0) + struct.pack(">I", 5) + bytes([8]) + b"hello"
    seg2 += bytes([0xFF]) + id_(0x1020)
    seg2 += bytes([0x05]) + id_(0x100)
    seg2 += bytes([0x01]) + id_(0x1010) + id_(0x9)
    seg2 += bytes([0x03]) + id_(0x1000) + struct.pack(">II", 1, 0)
    seg2 += bytes([0x08]) + id_(0x2000) + struct.pack(">II", 1, 0)
    record(0x1C, bytes(seg2))
    record(0x2C, b"")
    open(path, "wb").write(out)

dump(8, sys.argv[1] + "/ids8.hprof")
dump(4, sys.argv[1] + "/ids4.hprof")
