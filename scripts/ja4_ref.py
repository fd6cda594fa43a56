#!/usr/bin/env python3
"""Independent reference JA3 / JA4 for raw ClientHello bytes (python3 stdlib only).

Written from the public specs, not from our Rust code:
  JA3: salesforce/ja3 README ("SSLVersion,Cipher,SSLExtension,EllipticCurve,
       EllipticCurvePointFormat", decimal, '-' inside a field, GREASE ignored, MD5).
  JA4: FoxIO-LLC/ja4 technical_details/JA4.md (part a, sorted cipher hash, sorted extension
       hash without SNI/ALPN plus signature algorithms in order; raw and original forms).

Usage:
  scripts/ja4_ref.py FILE.bin ...        print the values of each file
  scripts/ja4_ref.py --vectors DIR       check against DIR/vectors.json (exit 1 on a mismatch)
  scripts/ja4_ref.py --expected DIR      JSON of the values of every DIR/*.bin, for expected.json
  scripts/ja4_ref.py --tshark DIR        cross-check DIR/*.bin with tshark (see tshark_check)
Input files start at the first TLS record header (as scripts/capture-hello.py writes them).
"""
import hashlib
import json
import os
import struct
import subprocess
import sys
import tempfile


def is_grease(v):
    # RFC 8701: 0x0a0a, 0x1a1a, ..., 0xfafa (both bytes equal, low nibble 0xa).
    return (v >> 8) == (v & 0xFF) and (v & 0x0F) == 0x0A


def u16s(b):
    return [int.from_bytes(b[i:i + 2], "big") for i in range(0, len(b) - 1, 2)]


class Reader:
    """Cursor over bytes; every read is bounds-checked."""

    def __init__(self, data):
        self.d, self.p = data, 0

    def take(self, n):
        if self.p + n > len(self.d):
            raise ValueError("truncated at offset %d (need %d)" % (self.p, n))
        out = self.d[self.p:self.p + n]
        self.p += n
        return out

    def int(self, n):
        return int.from_bytes(self.take(n), "big")

    def vec(self, len_bytes):
        return self.take(self.int(len_bytes))


def handshake_message(raw):
    """Join the fragments of the TLS handshake records and return the ClientHello body."""
    r, hs = Reader(raw), b""
    while r.p < len(raw):
        rtype, _version, frag = r.int(1), r.int(2), r.vec(2)
        if rtype != 22:
            raise ValueError("not a handshake record")
        hs += frag
        if len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
            break
    h = Reader(hs)
    if h.int(1) != 1:
        raise ValueError("not a ClientHello")
    return h.vec(3)


def parse(raw):
    """ClientHello fields that JA3/JA4 use. Extension payloads are kept by type."""
    r = Reader(handshake_message(raw))
    hello = {"version": r.int(2)}
    r.take(32)          # random
    r.vec(1)            # legacy_session_id
    hello["ciphers"] = u16s(r.vec(2))
    r.vec(1)            # compression methods
    hello["ext_types"], ext_data = [], {}
    if r.p < len(r.d):  # extensions are optional (pre-TLS 1.2 clients)
        e = Reader(r.vec(2))
        while e.p < len(e.d):
            t, body = e.int(2), e.vec(2)
            hello["ext_types"].append(t)
            ext_data.setdefault(t, body)
    hello["has_sni"] = 0x0000 in ext_data
    hello["groups"] = u16s(Reader(ext_data[0x000A]).vec(2)) if 0x000A in ext_data else []
    hello["point_formats"] = list(Reader(ext_data[0x000B]).vec(1)) if 0x000B in ext_data else []
    hello["sigalgs"] = u16s(Reader(ext_data[0x000D]).vec(2)) if 0x000D in ext_data else []
    hello["supported_versions"] = u16s(Reader(ext_data[0x002B]).vec(1)) if 0x002B in ext_data else []
    hello["alpn_first"] = None
    if 0x0010 in ext_data:
        names = Reader(Reader(ext_data[0x0010]).vec(2))
        if names.p < len(names.d):
            hello["alpn_first"] = names.vec(1)
    return hello


def ja3(h):
    def field(values):
        return "-".join(str(v) for v in values if not is_grease(v))
    s = ",".join([str(h["version"]), field(h["ciphers"]), field(h["ext_types"]),
                  field(h["groups"]), field(h["point_formats"])])
    return s, hashlib.md5(s.encode()).hexdigest()


VERSIONS = {0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3",
            0x0002: "s2", 0xFEFF: "d1", 0xFEFD: "d2", 0xFEFC: "d3"}


def alpn_chars(v):
    if not v:                       # no ALPN extension, no value, or an empty first value
        return "00"
    alnum = lambda c: chr(c).isascii() and chr(c).isalnum()
    if alnum(v[0]) and alnum(v[-1]):
        return chr(v[0]) + chr(v[-1])
    hx = v.hex()                    # spec: first and last characters of the hex form
    return hx[0] + hx[-1]


def hash12(text):
    return hashlib.sha256(text.encode()).hexdigest()[:12] if text else "000000000000"


def ja4(h):
    """Return (ja4, ja4_r, ja4_o, ja4_ro)."""
    ciphers = [c for c in h["ciphers"] if not is_grease(c)]
    exts = [e for e in h["ext_types"] if not is_grease(e)]
    sigalgs = [s for s in h["sigalgs"] if not is_grease(s)]
    versions = [v for v in h["supported_versions"] if not is_grease(v)]
    version = max(versions) if versions else h["version"]
    a = "t%s%s%02d%02d%s" % (VERSIONS.get(version, "00"), "d" if h["has_sni"] else "i",
                             min(len(ciphers), 99), min(len(exts), 99),
                             alpn_chars(h["alpn_first"]))
    hx = lambda vals: ",".join("%04x" % v for v in vals)
    sig = hx(sigalgs)

    def form(cipher_list, ext_list):
        b = hx(cipher_list)
        c = hx(ext_list)
        c_in = c + "_" + sig if (c and sig) else c      # no sigalgs: no trailing "_"
        raw = "%s_%s_%s" % (a, b, c) + ("_" + sig if sig else "")
        return "%s_%s_%s" % (a, hash12(b), hash12(c_in)), raw

    sorted_exts = sorted(e for e in exts if e not in (0x0000, 0x0010))
    fp, raw = form(sorted(ciphers), sorted_exts)
    fp_o, raw_o = form(ciphers, exts)
    return fp, raw, fp_o, raw_o


def values(raw):
    h = parse(raw)
    full, md5 = ja3(h)
    fp, r, o, ro = ja4(h)
    return {"ja3": full, "ja3_hash": md5, "ja4": fp, "ja4_r": r, "ja4_o": o, "ja4_ro": ro,
            "sni_present": h["has_sni"],
            "alpn_first": None if h["alpn_first"] is None else h["alpn_first"].decode("latin-1")}


def check_vectors(d):
    """Every vector must match. ja4_o/ja4_ro there are the FoxIO tool's: part a (10 chars)
    is re-spelled from the spec value when the vector carries ja4_spec."""
    bad = 0
    vectors = json.load(open(os.path.join(d, "vectors.json")))
    for v in vectors:
        got = values(open(os.path.join(d, v["file"]), "rb").read())
        want = {k: v[k] for k in ("ja3", "ja3_hash", "ja4", "ja4_r", "ja4_o", "ja4_ro")}
        if "ja4_spec" in v:
            want["ja4"], want["ja4_r"] = v["ja4_spec"], v["ja4_r_spec"]
            for k in ("ja4_o", "ja4_ro"):
                want[k] = v["ja4_spec"][:10] + want[k][10:]
        for k, w in want.items():
            if got[k] != w:
                bad += 1
                print("MISMATCH %s %s\n  want %s\n  got  %s" % (v["file"], k, w, got[k]))
    print("%d vectors, %d mismatches" % (len(vectors), bad), file=sys.stderr)
    return 1 if bad else 0


def write_pcap(path, payloads):
    """Classic pcap, Ethernet/IPv4/TCP, one packet (one TCP stream) per payload, to port 443
    so tshark dissects it as TLS. Checksums are left 0 (tshark does not verify them)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, data in enumerate(payloads):
            tcp = struct.pack("!HHIIBBHHH", 40000 + i, 443, 1, 0, 5 << 4, 0x18, 65535, 0, 0)
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(data), 0, 0, 64, 6, 0,
                             bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1]))
            frame = b"\0" * 12 + b"\x08\x00" + ip + tcp + data
            f.write(struct.pack("<IIII", i, 0, len(frame), len(frame)) + frame)


def tshark_check(d):
    """Wrap every DIR/*.bin into one pcap and let tshark (Wireshark's TLS dissector) parse it.
    JA3: tshark's own tls.handshake.ja3_full / ja3 must equal ours. JA4: tshark 4.0 has no
    JA4 field, so JA4 is recomputed with ja4() from the lists tshark dissected (ciphers,
    extension types, signature algorithms, supported_versions, ALPN), which checks parse()."""
    files = sorted(f for f in os.listdir(d) if f.endswith(".bin"))
    raws = [open(os.path.join(d, f), "rb").read() for f in files]
    with tempfile.TemporaryDirectory() as tmp:
        write_pcap(os.path.join(tmp, "hellos.pcap"), raws)
        fields = ["tls.handshake.ja3_full", "tls.handshake.ja3", "tls.handshake.version",
                  "tls.handshake.ciphersuite", "tls.handshake.extension.type",
                  "tls.handshake.sig_hash_alg", "tls.handshake.extensions.supported_version",
                  "tls.handshake.extensions_alpn_str"]
        cmd = ["tshark", "-r", os.path.join(tmp, "hellos.pcap"), "-T", "fields",
               "-E", "separator=|"] + sum([["-e", f] for f in fields], [])
        lines = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()
    bad = 0
    nums = lambda s: [int(x, 0) for x in s.split(",") if x]
    for name, raw, line in zip(files, raws, lines):
        full, md5, version, ciphers, exts, sigs, versions, alpn = line.split("|")
        ext_types = nums(exts)
        h = {"version": int(version, 0), "ciphers": nums(ciphers), "ext_types": ext_types,
             "sigalgs": nums(sigs), "supported_versions": nums(versions),
             "has_sni": 0 in ext_types,
             "alpn_first": alpn.split(",")[0].encode() if 0x0010 in ext_types else None}
        ours = values(raw)
        theirs = {"ja3": full, "ja3_hash": md5, "ja4": ja4(h)[0], "ja4_r": ja4(h)[1]}
        # tshark's flat field lists cannot carry these two cases: sig_hash_alg also collects
        # delegated_credentials (0x22) / signature_algorithms_cert (0x32) entries, and a
        # non-UTF-8 ALPN is shown with U+FFFD. Then only JA3 is compared.
        if 0x22 in ext_types or 0x32 in ext_types or "\ufffd" in alpn:
            del theirs["ja4"], theirs["ja4_r"]
        for k, v in theirs.items():
            ok = v == ours[k]
            bad += not ok
            print("%-4s %-16s %-8s %s" % ("ok" if ok else "DIFF", name, k, v))
    print("%d files, %d differences" % (len(files), bad), file=sys.stderr)
    return 1 if bad or len(lines) != len(files) else 0


def main(argv):
    if len(argv) == 2 and argv[0] == "--vectors":
        return check_vectors(argv[1])
    if len(argv) == 2 and argv[0] == "--tshark":
        return tshark_check(argv[1])
    if len(argv) == 2 and argv[0] == "--expected":
        files = sorted(f for f in os.listdir(argv[1]) if f.endswith(".bin"))
        out = {f[:-4]: values(open(os.path.join(argv[1], f), "rb").read()) for f in files}
        print(json.dumps(out, indent=2, sort_keys=True))
        return 0
    if not argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    for path in argv:
        print(path)
        for k, v in values(open(path, "rb").read()).items():
            print("  %-10s %s" % (k, v))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
