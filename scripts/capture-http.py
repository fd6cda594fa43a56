#!/usr/bin/env python3
"""Capture the first decrypted bytes a real HTTP client sends (python3 stdlib only).

Usage:
    scripts/capture-http.py PORT OUTFILE [--ready FILE] [--timeout SECS] [--alpn LIST]
    scripts/capture-http.py --decode FILE

Capture mode listens on 127.0.0.1:PORT (0 picks a free port) with TLS (certs/dev-cert.pem,
certs/dev-key.pem; ALPN `h2,http/1.1` unless --alpn says otherwise). Each accepted connection
is served on its own thread, because browsers open speculative connections that never send a
request. After the handshake an HTTP/2 connection gets an empty SETTINGS frame (the server
preface, RFC 9113 section 3.4), as every real server sends one; then the client's bytes are
read until the first request's header section is complete:

- HTTP/2: the 24-byte client preface and whole frames up to and including the frame that ends
  the first header block (HEADERS, then CONTINUATION frames, until END_HEADERS);
- HTTP/1.1: up to and including the blank line that ends the header section;

or until 16 KiB. The first connection to finish is written to OUTFILE (exactly those bytes,
no later ones) and the program exits without answering (the client reports an error, which is
expected). After listen() the port is written to the --ready file, so a caller can wait for it.
Exit status: 0 on success, 1 on a timeout.

Decode mode prints the frames of a capture (SETTINGS ids and values, WINDOW_UPDATE,
PRIORITY, the HEADERS block decoded with the `hpack` package when it is installed) and the
Akamai fingerprint computed from them: an implementation independent of the Rust one, used
to cross-check the fixtures. For HTTP/1 captures it prints the request head.
"""
import argparse
import os
import socket
import ssl
import struct
import sys
import threading

MAX_BYTES = 16 * 1024
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CERT = os.path.join(ROOT, "certs", "dev-cert.pem")
KEY = os.path.join(ROOT, "certs", "dev-key.pem")
EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # length 0, type 4, flags 0, stream 0


def h2_end(buf):
    """Length of the prefix of `buf` that ends with the first complete header block, or None."""
    if len(buf) < len(PREFACE):
        return None
    pos = len(PREFACE)
    in_block = False
    while pos + 9 <= len(buf):
        length = int.from_bytes(buf[pos:pos + 3], "big")
        ftype, flags = buf[pos + 3], buf[pos + 4]
        if pos + 9 + length > len(buf):
            return None
        pos += 9 + length
        if ftype == 1 or (ftype == 9 and in_block):
            in_block = True
            if flags & 0x4:  # END_HEADERS
                return pos
    return None


def h1_end(buf):
    i = buf.find(b"\r\n\r\n")
    return None if i < 0 else i + 4


def serve(conn, done, result, timeout):
    try:
        conn.settimeout(timeout)
        conn.do_handshake()
        proto = conn.selected_alpn_protocol() or "http/1.1"
        if proto == "h2":
            conn.sendall(EMPTY_SETTINGS)
        end_of = h2_end if proto == "h2" else h1_end
        buf = b""
        while not done.is_set():
            end = end_of(buf)
            if end is not None or len(buf) >= MAX_BYTES:
                with done_lock:
                    if not done.is_set():
                        result.append((proto, buf[:end] if end is not None else buf[:MAX_BYTES]))
                        done.set()
                return
            chunk = conn.recv(4096)
            if not chunk:
                return
            buf += chunk
    except (OSError, ssl.SSLError):
        return
    finally:
        try:
            conn.close()
        except OSError:
            pass


done_lock = threading.Lock()


def capture(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERT, KEY)
    ctx.set_alpn_protocols(args.alpn.split(","))
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(8)
    srv.settimeout(0.2)
    if args.ready:
        with open(args.ready, "w") as f:
            f.write("%d\n" % srv.getsockname()[1])
    done, result = threading.Event(), []
    waited = 0.0
    while not done.is_set() and waited < args.timeout:
        try:
            raw, _ = srv.accept()
        except socket.timeout:
            waited += 0.2
            continue
        conn = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
        threading.Thread(target=serve, args=(conn, done, result, args.timeout), daemon=True).start()
    srv.close()
    if not result:
        sys.exit("capture-http: no complete request within %.0fs" % args.timeout)
    proto, data = result[0]
    with open(args.outfile, "wb") as f:
        f.write(data)
    print("capture-http: %s, %d bytes -> %s" % (proto, len(data), args.outfile), file=sys.stderr)


FRAME_NAMES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS",
               5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}
PSEUDO_LETTER = {":method": "m", ":authority": "a", ":scheme": "s", ":path": "p"}


def decode(path):
    data = open(path, "rb").read()
    if not data.startswith(PREFACE):
        print(data.split(b"\r\n\r\n")[0].decode("latin-1"))
        return
    print("preface (24 bytes)")
    pos, settings, wu, prio, block, in_block = len(PREFACE), None, None, [], b"", False
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos:pos + 3], "big")
        ftype, flags = data[pos + 3], data[pos + 4]
        stream = int.from_bytes(data[pos + 5:pos + 9], "big") & 0x7FFFFFFF
        body = data[pos + 9:pos + 9 + length]
        print("%s len=%d flags=0x%02x stream=%d" % (FRAME_NAMES.get(ftype, ftype), length, flags, stream))
        if ftype == 4 and not flags & 1:
            pairs = [struct.unpack(">HI", body[i:i + 6]) for i in range(0, len(body), 6)]
            for k, v in pairs:
                print("    setting id=%d value=%d" % (k, v))
            if settings is None:
                settings = pairs
        elif ftype == 8:
            inc = int.from_bytes(body, "big") & 0x7FFFFFFF
            print("    increment=%d" % inc)
            if stream == 0 and wu is None:
                wu = inc
        elif ftype == 2:
            dep = int.from_bytes(body[:4], "big")
            entry = "%d:%d:%d:%d" % (stream, dep >> 31, dep & 0x7FFFFFFF, body[4] + 1)
            print("    priority %s" % entry)
            prio.append(entry)
        elif ftype in (1, 9):
            frag = body
            if ftype == 1:
                pad = 0
                if flags & 0x8:
                    pad, frag = frag[0], frag[1:]
                if flags & 0x20:
                    dep = int.from_bytes(frag[:4], "big")
                    print("    headers priority: exclusive=%d dep=%d weight=%d"
                          % (dep >> 31, dep & 0x7FFFFFFF, frag[4] + 1))
                    frag = frag[5:]
                frag = frag[:len(frag) - pad]
            block += frag
            if flags & 0x4:
                break
        pos += 9 + length
    try:
        import hpack
        headers = hpack.Decoder().decode(block, raw=True)
    except ImportError:
        print("(install hpack to decode the header block)")
        headers = []
    for name, value in headers:
        print("    %s: %s" % (name.decode("latin-1"), value.decode("latin-1")))
    letters = []
    for name, _ in headers:
        if not name.startswith(b":"):
            break
        if name.decode() in PSEUDO_LETTER:
            letters.append(PSEUDO_LETTER[name.decode()])
    akamai = "%s|%d|%s|%s" % (
        ";".join("%d:%d" % kv for kv in (settings or [])),
        wu or 0,
        ",".join(prio) if prio else "0",
        ",".join(letters),
    )
    print("akamai: %s" % akamai)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("port", type=int, nargs="?")
    ap.add_argument("outfile", nargs="?")
    ap.add_argument("--ready", help="file to write the listening port to")
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--alpn", default="h2,http/1.1")
    ap.add_argument("--decode", metavar="FILE", help="print the frames of a capture and exit")
    args = ap.parse_args()
    if args.decode:
        decode(args.decode)
    elif args.port is None or not args.outfile:
        ap.error("PORT and OUTFILE are required")
    else:
        capture(args)


if __name__ == "__main__":
    main()
