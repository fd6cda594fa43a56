#!/usr/bin/env python3
"""Per-request instructions by function: the difference of two callgrind outputs.

    scripts/cg-diff.py DIR [TOP] [--inclusive] [--callers=SUBSTRING]

DIR holds cg.N1 and cg.N2 as `KEEP=DIR scripts/callgrind.sh MODE N1 N2` leaves them. Prints
the functions whose instruction count grew the most between the two runs, divided by
N2 - N1: what one request costs in each, with startup and handshakes cancelled out.
--callers=SUBSTRING instead splits the cost of the functions whose name holds SUBSTRING (e.g.
__memcpy) by caller.
"""
import glob
import os
import re
import subprocess
import sys
from collections import Counter

LINE = re.compile(r"^\s*([\d,]+)\s+\([^)]*\)\s+(.*)$")


def functions(path, inclusive):
    out = subprocess.run(
        ["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}", "--threshold=100", "--auto=no", path],
        capture_output=True, text=True, check=True,
    ).stdout
    counts = Counter()
    for line in out.splitlines():
        m = LINE.match(line)
        if m and "PROGRAM TOTALS" not in line:
            name = re.sub(r" \[[^\]]*\]$", "", m.group(2))
            counts[name] += int(m.group(1).replace(",", ""))
    return counts


def callers(path, needle):
    out = subprocess.run(
        ["callgrind_annotate", "--tree=caller", "--threshold=100", "--auto=no", path],
        capture_output=True, text=True, check=True,
    ).stdout
    counts = Counter()
    block = []
    for line in out.splitlines() + [""]:
        if line.strip():
            block.append(line)
            continue
        target = [l for l in block if " *  " in l and needle in l]
        if target:
            for l in block:
                if re.search(r"\)\s+<\s", l):
                    m = LINE.match(l)
                    if m:
                        name = re.sub(r" \(\d+x\)", "", m.group(2).lstrip("< ").strip())
                        name = re.sub(r" \[[^\]]*\]$", "", name)
                        counts[name] += int(m.group(1).replace(",", ""))
        block = []
    return counts


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    inclusive = "--inclusive" in sys.argv
    d = args[0]
    top = int(args[1]) if len(args) > 1 else 40
    files = sorted(glob.glob(os.path.join(d, "cg.*")), key=lambda p: int(p.rsplit(".", 1)[1]))
    (n1, f1), (n2, f2) = [(int(p.rsplit(".", 1)[1]), p) for p in files[:2]]
    needle = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--callers=")), None)
    if needle:
        a, b = callers(f1, needle), callers(f2, needle)
        inclusive = True
    else:
        a, b = functions(f1, inclusive), functions(f2, inclusive)
    per = {k: (b[k] - a.get(k, 0)) / (n2 - n1) for k in b}
    total = sum(v for v in per.values()) if not inclusive else None
    if total is not None:
        print(f"total {total:,.0f} instructions per request")
    for name, v in sorted(per.items(), key=lambda kv: -kv[1])[:top]:
        short = re.sub(r"/root/\.cargo/registry/src/[^/]+/", "", name)
        print(f"{v:9,.0f}  {short[:170]}")


if __name__ == "__main__":
    main()
