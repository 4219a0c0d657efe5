"""expo_parse.py - parses tally's expositions with prometheus_client's own
parsers (Debian's python3-prometheus-client), for tests/expo_promtool.sh.

  expo_parse.py golden DIR       every DIR/*.om with the OpenMetrics parser
                                 (strict: # EOF, grouping, counters not
                                 negative), every DIR/*.prom with the text
                                 0.0.4 parser, both formats of a case giving
                                 the same samples; keys.* decoded back to
                                 the exact key bytes test_expo.c wrote
  expo_parse.py big FORMAT N FILE  a 100,000-key rendering (tests/expo_dump):
                                 N + 6 samples, each key once, exact sum

Exits 1 with a message on the first problem.
"""
import sys

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_om)
from prometheus_client.parser import (
    text_string_to_metric_families as parse_text)


def fail(msg):
    print("expo_parse: " + msg, file=sys.stderr)
    sys.exit(1)


def decode_key(value):
    """The key's bytes from its label value (tally.h section 6): a
    backslash starts either a doubled backslash or \\xNN; everything else
    is the key's own UTF-8."""
    out = bytearray()
    i = 0
    while i < len(value):
        c = value[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
        elif value[i + 1:i + 2] == "\\":
            out += b"\\"
            i += 2
        elif value[i + 1:i + 2] == "x" and len(value) >= i + 4:
            out.append(int(value[i + 2:i + 4], 16))
            i += 4
        else:
            fail("label value %r: a lone backslash" % value)
    return bytes(out)


def samples(families):
    got = []
    for fam in families:
        for s in fam.samples:
            got.append((fam.name, fam.type, s.name,
                        tuple(sorted(s.labels.items())), s.value))
    return got


# The keys of test_expo.c's case_keys, in order (values 1..15).
ODD_KEYS = [
    b"nul\0inside", b"\0", b"invalid \xff byte", b"overlong \xc0\x80",
    b"surrogate \xed\xa0\x80", b"truncated \xe2\x82",
    b"beyond \xf4\x90\x80\x80", b"stray \x80 continuation", b"lead \xf5",
    b"control \x01\r\x1b\x7f", b"tab\tand newline\n", b"back\\slash",
    b"literal \\x00", "valid \u00e9 \u20ac \U0001F600".encode("utf-8"),
    b"quote \"",
]


def check_golden(folder):
    import glob
    import os

    cases = sorted({os.path.splitext(os.path.basename(p))[0]
                    for p in glob.glob(os.path.join(folder, "*.om"))})
    if not cases:
        fail("no golden files in " + folder)
    for case in cases:
        with open(os.path.join(folder, case + ".om"), "rb") as f:
            om_text = f.read().decode("utf-8")  # must be UTF-8
        with open(os.path.join(folder, case + ".prom"), "rb") as f:
            prom_text = f.read().decode("utf-8")
        try:
            om = list(parse_om(om_text))
        except ValueError as e:
            fail("%s.om: OpenMetrics parser: %s" % (case, e))
        try:
            prom = list(parse_text(prom_text))
        except ValueError as e:
            fail("%s.prom: text parser: %s" % (case, e))
        # The same series, names and values from both formats (the text
        # parser reads float64; the OpenMetrics one keeps integers).
        so = sorted((s[2], s[3], float(s[4])) for s in samples(om))
        sp = sorted((s[2], s[3], float(s[4])) for s in samples(prom))
        if so != sp:
            fail("%s: .om and .prom give different samples:\n%s\n%s"
                 % (case, so, sp))
        for fam in om:
            if fam.type == "counter" and fam.name.endswith("_total"):
                fail("%s.om: OpenMetrics family %s ends in _total"
                     % (case, fam.name))
        if case == "int64":
            exact = {(s[2], dict(s[3])["key"]): s[4] for s in samples(om)}
            want = {("events_total", "max"): 2**63 - 1,
                    ("events_total", "two_pow_53_plus_1"): 2**53 + 1,
                    ("events_total", "min"): 0,
                    ("balance", "min"): -2**63}
            for k, v in want.items():
                if exact[k] != v or not isinstance(exact[k], int):
                    fail("int64.om: %s is %r, want exactly %d"
                         % (k, exact[k], v))
        if case == "keys":
            for fam in (om, prom):
                got = {}
                for s in fam[0].samples:
                    got[int(s.value)] = decode_key(s.labels["key"])
                want = {i + 1: k for i, k in enumerate(ODD_KEYS)}
                if got != want:
                    fail("keys: decoded keys differ:\n%r\n%r" % (got, want))
        print("expo_parse: %s.om and %s.prom: %d samples, parsers agree"
              % (case, case, len(so)))


def check_big(fmt, n, path):
    with open(path, "rb") as f:
        text = f.read().decode("utf-8")
    parse = parse_om if fmt == "openmetrics" else parse_text
    try:
        fams = list(parse(text))
    except ValueError as e:
        fail("%s: %s parser: %s" % (path, fmt, e))
    got = samples(fams)
    if len(got) != n + 6:
        fail("%s: %d samples, want %d" % (path, len(got), n + 6))
    keys = {dict(s[3])["key"] for s in got}
    if len(keys) != n + 6:
        fail("%s: %d distinct keys, want %d" % (path, len(keys), n + 6))
    total = sum(int(s[4]) for s in got)
    want = 3 * n * (n - 1) // 2 + 21
    if total != want:
        fail("%s: samples sum to %d, want %d" % (path, total, want))
    print("expo_parse: %s: %d samples, %d distinct keys, sum %d"
          % (path, len(got), len(keys), total))


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "golden":
        check_golden(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "big":
        check_big(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        fail("usage: expo_parse.py golden DIR | big FORMAT N FILE")


main()
