#!/usr/bin/env python3
"""gen_corpus.py - writes the seed corpus of tests/fuzz_map.c into
tests/fuzz_corpus/ (seed-*.bin; regress-* files, reproducers of bugs the
fuzzer found, are kept as they are). Deterministic: running it again gives
the same files. The encoding mirrors run_input() in tests/fuzz_map.c."""
import os
import random
import struct
import sys

KEY_MAX = 4096
(ADD_N, ADD_CSTR, GET_N, GET_CSTR, REMOVE_N, REMOVE_CSTR, DRAIN, FOREACH,
 HANDLE_NEW, HANDLE_ADD, HANDLE_RELEASE, THREAD_ADD, REENTER, SYNC,
 ADD_REPEAT) = range(15)
# get_delta()'s specials: 0, 1, -1, INT64_MAX, INT64_MIN, INT64_MAX-1, ...
D_ZERO, D_ONE, D_MINUS1, D_MAX, D_MIN = (0xC0 | i for i in range(5))


def key(b):
    """A literal key (bytes)."""
    if len(b) <= 15:
        return bytes([len(b)]) + b
    assert len(b) <= 255
    return bytes([0x80, len(b)]) + b


def recent(i):
    return bytes([0x40 | i])


def long_key(sel, fill):
    """sel 0: TALLY_KEY_MAX bytes, 1: one more, 2: one less, 3: 1 byte."""
    return bytes([0xC0 | sel, fill])


def delta(v):
    if 0 <= v < 64:
        return bytes([v])
    if -64 < v < 0:
        return bytes([0x40 | -v])
    return bytes([0x80]) + struct.pack(">q", v)


def special(d):
    return bytes([d])


def op(code, *parts):
    return bytes([code]) + b"".join(parts)


def seeds():
    s = {}
    s["add-get"] = (op(ADD_N, key(b"a"), delta(1)) +
                    op(ADD_N, key(b"a"), delta(41)) +
                    op(GET_N, key(b"a")) + op(GET_N, key(b"b")) +
                    op(ADD_N, key(b"b"), delta(-5)) + op(FOREACH, b"\0"))
    s["empty-key"] = (op(ADD_N, key(b""), delta(3)) +
                      op(ADD_CSTR, key(b""), delta(1)) +
                      op(GET_CSTR, key(b"")) + op(REMOVE_N, key(b"")) +
                      op(GET_N, key(b"")))
    for part in range(4):
        body = b""
        for c in range(part * 64, part * 64 + 64):
            body += op(ADD_N, key(bytes([c])), delta(c % 63))
        body += op(GET_N, key(b"\0")) + op(DRAIN, b"\0")
        s["every-byte-%d" % part] = body
    s["all-256-bytes"] = (op(ADD_N, key(bytes(range(255))), delta(7)) +
                          op(ADD_N, key(bytes(range(1, 256))), delta(9)) +
                          op(GET_N, key(bytes(range(255)))) +
                          op(FOREACH, b"\0"))
    s["nul-inside"] = (op(ADD_CSTR, key(b"ab\0cd"), delta(2)) +
                       op(ADD_N, key(b"ab\0cd"), delta(3)) +
                       op(GET_CSTR, key(b"ab\0zz")) +
                       op(GET_N, key(b"ab")) +
                       op(REMOVE_CSTR, key(b"ab\0")) + op(FOREACH, b"\0"))
    s["long-keys"] = (op(ADD_N, long_key(0, 0x61), delta(1)) +
                      op(ADD_N, long_key(1, 0x61), delta(1)) +
                      op(ADD_N, long_key(2, 0x61), delta(2)) +
                      op(GET_N, long_key(0, 0x61)) +
                      op(GET_N, long_key(1, 0x61)) +
                      op(REMOVE_N, long_key(1, 0x61)) +
                      op(HANDLE_NEW, b"\0", long_key(1, 0x61)) +
                      op(HANDLE_NEW, b"\1", long_key(0, 0x62)) +
                      op(HANDLE_ADD, b"\1", delta(5)) +
                      op(ADD_CSTR, long_key(1, 0x63), delta(1)) +
                      op(ADD_CSTR, long_key(0, 0x63), delta(1)) +
                      op(FOREACH, b"\0") + op(REMOVE_N, long_key(0, 0x61)))
    s["wrap"] = (op(ADD_N, key(b"w"), special(D_MAX)) +
                 op(ADD_N, key(b"w"), special(D_ONE)) +
                 op(GET_N, key(b"w")) +
                 op(ADD_N, key(b"w"), special(D_MIN)) +
                 op(ADD_N, key(b"x"), delta(-(2**63))) +
                 op(ADD_N, key(b"x"), special(D_MINUS1)) +
                 op(DRAIN, b"\0") + op(GET_N, key(b"x")))
    s["remove-readd"] = (op(ADD_N, key(b"k"), delta(10)) +
                         op(REMOVE_N, key(b"k")) + op(GET_N, key(b"k")) +
                         op(REMOVE_N, key(b"k")) +
                         op(ADD_N, key(b"k"), delta(3)) +
                         op(REMOVE_CSTR, key(b"k")) +
                         op(ADD_N, key(b"k"), delta(4)) +
                         op(FOREACH, b"\0"))
    s["handle-next-life"] = (op(HANDLE_NEW, b"\0", key(b"h")) +
                             op(HANDLE_ADD, b"\0", delta(5)) +
                             op(REMOVE_N, key(b"h")) +
                             op(HANDLE_ADD, b"\0", delta(7)) +
                             op(GET_N, key(b"h")) +
                             op(REMOVE_N, key(b"h")) +
                             op(HANDLE_ADD, b"\0", special(D_ONE)) +
                             op(HANDLE_RELEASE, b"\0") +
                             op(GET_N, key(b"h")))
    s["handle-release-dead"] = (op(HANDLE_NEW, b"\1", key(b"d")) +
                                op(HANDLE_NEW, b"\2", key(b"d")) +
                                op(HANDLE_ADD, b"\2", delta(9)) +
                                op(REMOVE_N, key(b"d")) +
                                op(HANDLE_RELEASE, b"\1") +
                                op(HANDLE_NEW, b"\1", key(b"d")) +
                                op(HANDLE_ADD, b"\2", delta(1)) +
                                op(HANDLE_RELEASE, b"\2") +
                                op(DRAIN, b"\0") +
                                op(HANDLE_ADD, b"\1", delta(2)))
    s["handle-replace"] = (op(HANDLE_NEW, b"\3", key(b"p")) +
                           op(HANDLE_NEW, b"\3", key(b"q")) +
                           op(HANDLE_ADD, b"\3", delta(1)) +
                           op(REMOVE_N, key(b"p")) +
                           op(HANDLE_NEW, b"\3", key(b"q")))
    s["threads"] = (op(THREAD_ADD, b"\0", key(b"t"), delta(5)) +
                    op(THREAD_ADD, b"\1", key(b"t"), delta(6)) +
                    op(GET_N, key(b"t")) +
                    op(HANDLE_NEW, b"\2", key(b"u")) +
                    op(THREAD_ADD, b"\x82", delta(7)) +
                    op(REMOVE_N, key(b"u")) +
                    op(THREAD_ADD, b"\x82", delta(8)) +
                    op(DRAIN, b"\0") +
                    op(THREAD_ADD, b"\0", key(b"t"), delta(1)) +
                    op(REMOVE_N, key(b"t")))
    s["visit-stop"] = (b"".join(op(ADD_N, key(b"s%d" % i), delta(i))
                                for i in range(10)) +
                       op(FOREACH, b"\3") + op(DRAIN, b"\2") +
                       op(FOREACH, b"\7") + op(DRAIN, b"\5") +
                       op(DRAIN, b"\0") + op(DRAIN, b"\1"))
    s["reenter"] = (op(ADD_N, key(b"r1"), delta(1)) +
                    op(ADD_N, key(b"r2"), delta(2)) +
                    op(REENTER, b"\0") + op(REENTER, b"\1") +
                    op(REENTER, b"\1"))
    s["recent-keys"] = (op(ADD_N, key(b"one"), delta(1)) +
                        op(ADD_N, key(b"two"), delta(2)) +
                        op(ADD_N, recent(0), delta(3)) +
                        op(REMOVE_N, recent(1)) + op(GET_N, recent(2)) +
                        op(HANDLE_NEW, b"\0", recent(0)) +
                        op(HANDLE_ADD, b"\0", delta(4)))
    # Many keys: tables grow several times in several shards.
    body = b""
    for i in range(220):
        body += op(ADD_N, key(b"k%03d" % i), delta(i % 60))
    body += op(FOREACH, b"\0")
    for i in range(0, 220, 3):
        body += op(REMOVE_N, key(b"k%03d" % i))
    body += op(DRAIN, b"\0")
    s["grow-shrink"] = body
    # Insert/remove churn through tombstones.
    body = b""
    for i in range(150):
        body += op(ADD_N, key(b"c%d" % (i % 40)), delta(1))
        body += op(REMOVE_N, key(b"c%d" % ((i * 7) % 40)))
    s["tombstones"] = body
    # Keys made HOT by many adds in a row, then removed, drained, added to
    # through handles and by name again; syncs settle in between.
    body = b""
    for i in range(4):
        body += op(ADD_REPEAT, key(b"hot%d" % i), delta(1), bytes([i * 20]))
    body += op(FOREACH, b"\0") + op(REMOVE_N, key(b"hot0"))
    body += op(HANDLE_NEW, b"\1", key(b"hot1")) + op(HANDLE_ADD, b"\1", delta(5))
    body += op(REMOVE_N, key(b"hot1")) + op(HANDLE_ADD, b"\1", delta(7))
    body += op(SYNC) + op(DRAIN, b"\0")
    body += op(ADD_REPEAT, key(b"hot0"), delta(-3), b"\5") + op(SYNC)
    body += op(ADD_REPEAT, key(b"a-key-longer-than-16-bytes"), delta(2), b"\0")
    body += op(REMOVE_N, key(b"a-key-longer-than-16-bytes")) + op(SYNC)
    body += op(HANDLE_RELEASE, b"\1") + op(FOREACH, b"\0")
    s["hot-keys"] = body
    # A few fixed-seed random mixes.
    rnd = random.Random(20240601)
    for i in range(12):
        ops = b""
        for _ in range(rnd.randrange(20, 120)):
            code = rnd.randrange(15)
            k = rnd.choice([key(b"k%d" % rnd.randrange(6)), recent(
                rnd.randrange(16)), key(bytes([rnd.randrange(256)])),
                key(b"")])
            d = delta(rnd.choice([1, 2, -1, 63, -63, 2**40, -(2**62)]))
            slot = bytes([rnd.randrange(4)])
            if code in (ADD_N, ADD_CSTR):
                ops += op(code, k, d)
            elif code in (GET_N, GET_CSTR, REMOVE_N, REMOVE_CSTR):
                ops += op(code, k)
            elif code in (DRAIN, FOREACH):
                ops += op(code, bytes([rnd.randrange(4)]))
            elif code == HANDLE_NEW:
                ops += op(code, slot, k)
            elif code == HANDLE_ADD:
                ops += op(code, slot, d)
            elif code == HANDLE_RELEASE:
                ops += op(code, slot)
            elif code == SYNC:
                ops += op(code)
            elif code == ADD_REPEAT:
                ops += op(code, k, d, bytes([rnd.randrange(256)]))
            elif code == THREAD_ADD:
                if rnd.randrange(2):
                    ops += op(code, bytes([0x80 | slot[0]]), d)
                else:
                    ops += op(code, slot, k, d)
            else:
                ops += op(code, bytes([rnd.randrange(2)]))
        s["mix-%02d" % i] = ops
    return s


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "fuzz_corpus")
    os.makedirs(out, exist_ok=True)
    for name, data in sorted(seeds().items()):
        assert len(data) <= 4096, name
        with open(os.path.join(out, "seed-%s.bin" % name), "wb") as f:
            f.write(data)
    print("gen_corpus: %d files in %s" % (len(seeds()), out))


if __name__ == "__main__":
    main()
