#!/usr/bin/env python3
"""Atomic read-modify-write instructions executed, from callgrind outputs taken with
--dump-instr=yes (docs/benchmarks.md, section 5).

    VG_ARGS=--dump-instr=yes KEEP=DIR scripts/callgrind.sh h2 500 4500
    scripts/cg-atomics.py DIR/cg.500 DIR/cg.4500 [TOP]

callgrind counts an atomic as one instruction, but on x86 a `lock`-prefixed instruction (or an
`xchg` with memory) costs tens of cycles, so two programs with the same instruction count can
differ in time. This prints, per request (the difference of the two runs divided by the
difference of their request counts, read from the file names), the atomics executed per object
and the functions that execute the most.

How: each cost line of a --dump-instr=yes output gives an instruction address (at run time)
and its count. objdump finds the atomic instructions of each object (file addresses); the
offset between the two is the most common difference between a function's first executed
address at run time and its symbol's address.
"""

import collections
import os
import re
import signal
import subprocess
import sys

NAMED = re.compile(r"^(ob|fl|fi|fe|fn|cob|cfi|cfl|cfn)=\((\d+)\)(?: (.*))?$")


def parse(path):
    """Returns {object: {address: count}}, {object: {function: first address}}, {(object, address): function}."""
    names = {}
    counts = collections.defaultdict(collections.Counter)
    first = collections.defaultdict(dict)
    owner = {}
    npos = 1
    ob = fn = None
    prev = [0, 0]
    skip_next = False
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("positions:"):
                npos = len(line.split()[1:])
                continue
            m = NAMED.match(line)
            if m:
                kind, ident, name = m.groups()
                key = (kind.lstrip("c").replace("fi", "fl").replace("fe", "fl"), ident)
                if name is not None:
                    names[key] = name
                if kind == "ob":
                    ob = names.get(("ob", ident))
                elif kind == "fn":
                    fn = names.get(("fn", ident))
                continue
            if line.startswith("calls="):
                skip_next = True
                continue
            c0 = line[0]
            if not (c0.isdigit() or c0 in "+-*"):
                continue
            parts = line.split()
            pos = []
            for i, p in enumerate(parts[:npos]):
                if p == "*":
                    v = prev[i]
                elif p[0] in "+-":
                    v = prev[i] + int(p, 0)
                else:
                    v = int(p, 0)
                pos.append(v)
            for i, v in enumerate(pos):
                prev[i] = v
            if skip_next:
                skip_next = False
                continue
            ir = int(parts[npos]) if len(parts) > npos else 0
            addr = pos[0]
            counts[ob][addr] += ir
            f0 = first[ob].get(fn)
            if f0 is None or addr < f0:
                first[ob][fn] = addr
            owner[(ob, addr)] = fn
    return counts, first, owner


def atomics_of(obj):
    """File addresses of the atomic read-modify-write instructions of an object."""
    out = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", obj],
        capture_output=True, text=True, check=False,
    ).stdout
    found = set()
    for line in out.splitlines():
        m = re.match(r"^\s*([0-9a-f]+):\s+(.*)$", line)
        if not m:
            continue
        ins = m.group(2)
        if ins.startswith("lock ") or (ins.startswith("xchg") and "(" in ins):
            found.add(int(m.group(1), 16))
    return found


def symbols_of(obj):
    out = subprocess.run(
        ["nm", "--defined-only", "-C", obj], capture_output=True, text=True, check=False
    ).stdout
    if not out.strip():
        out = subprocess.run(
            ["nm", "-D", "--defined-only", "-C", obj], capture_output=True, text=True, check=False
        ).stdout
    syms = {}
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            syms.setdefault(parts[2], int(parts[0], 16))
    return syms


def offset_of(obj, first):
    syms = symbols_of(obj)
    diffs = collections.Counter()
    for fn, addr in first.items():
        if fn in syms:
            d = addr - syms[fn]
            if d % 0x1000 == 0:
                diffs[d] += 1
    return diffs.most_common(1)[0][0] if diffs else 0


def main():
    a, b = sys.argv[1], sys.argv[2]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    n = int(b.rsplit(".", 1)[1]) - int(a.rsplit(".", 1)[1])
    ca, _, _ = parse(a)
    cb, first, owner = parse(b)
    total = 0.0
    by_fn = collections.Counter()
    rows = []
    for obj, addrs in cb.items():
        if not obj or not os.path.exists(obj):
            continue
        off = offset_of(obj, first[obj])
        atomic = atomics_of(obj)
        executed = 0
        for addr, cnt in addrs.items():
            if addr - off in atomic:
                per = (cnt - ca.get(obj, {}).get(addr, 0)) / n
                executed += per
                by_fn[(os.path.basename(obj), owner.get((obj, addr)))] += per
        if executed > 0.05:
            rows.append((executed, obj))
        total += executed
    print(f"atomic read-modify-writes per request: {total:.1f}")
    for executed, obj in sorted(rows, reverse=True):
        print(f"  {executed:7.1f}  {obj}")
    print("by function:")
    for (obj, fn), per in by_fn.most_common(top):
        print(f"  {per:7.1f}  {obj}: {(fn or '?')[:150]}")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # quiet when piped into `head`
    main()
