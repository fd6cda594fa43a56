#!/usr/bin/env python3
"""Capture one raw TLS ClientHello from a real client (python3 stdlib only).

Usage:
    scripts/capture-hello.py PORT OUTFILE [--ready FILE] [--timeout SECS]

Listens on 127.0.0.1:PORT (PORT 0 picks a free port), accepts ONE connection, reads TLS
records until a whole ClientHello handshake message is in (it may span several records and
TCP segments), writes the bytes from the first record header up to the end of the record that
completes the hello to OUTFILE, then closes the connection without answering (the client
then fails its handshake, which is expected). After listen() it writes the port number to
the --ready file, so a caller can wait for that file before starting the client without
spending the one connection on a probe. Exit status: 0 on success, 1 on a timeout or on
bytes that are not a TLS handshake.

Example:
    scripts/capture-hello.py 0 /tmp/curl.bin --ready /tmp/port &
    while [ ! -s /tmp/port ]; do sleep 0.1; done
    curl -sk https://localhost:$(cat /tmp/port)/ ; wait
"""
import argparse
import socket
import sys

MAX_BYTES = 64 * 1024  # no real ClientHello comes close


def hello_end(buf):
    """Return the length of the prefix of `buf` holding the complete ClientHello, or None.

    TLS records: type(1) version(2) length(2) fragment. Handshake records (type 22) are
    concatenated; the hello is message type 1 with a 3-byte length (RFC 8446 5.1, 4)."""
    hs = b""
    pos = 0
    while pos + 5 <= len(buf):
        rtype, rlen = buf[pos], int.from_bytes(buf[pos + 3:pos + 5], "big")
        if rtype != 22:
            raise ValueError("record type %d is not a handshake record" % rtype)
        if pos + 5 + rlen > len(buf):
            return None  # record not fully read yet
        hs += buf[pos + 5:pos + 5 + rlen]
        pos += 5 + rlen
        if len(hs) >= 4:
            if hs[0] != 1:
                raise ValueError("handshake type %d is not ClientHello" % hs[0])
            if len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
                return pos
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("outfile")
    ap.add_argument("--ready", help="file to write the listening port to")
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", args.port))
    srv.listen(1)
    srv.settimeout(args.timeout)
    if args.ready:
        with open(args.ready, "w") as f:
            f.write("%d\n" % srv.getsockname()[1])
    try:
        conn, _ = srv.accept()
    except socket.timeout:
        sys.exit("capture-hello: no connection within %.0fs" % args.timeout)
    srv.close()  # one connection only: later attempts are refused

    conn.settimeout(args.timeout)
    buf = b""
    try:
        while True:
            end = hello_end(buf)
            if end is not None:
                break
            chunk = conn.recv(4096)
            if not chunk:
                sys.exit("capture-hello: peer closed after %d bytes" % len(buf))
            buf += chunk
            if len(buf) > MAX_BYTES:
                sys.exit("capture-hello: more than %d bytes without a whole hello" % MAX_BYTES)
    except (ValueError, socket.timeout) as e:
        sys.exit("capture-hello: %s" % e)
    finally:
        conn.close()

    with open(args.outfile, "wb") as f:
        f.write(buf[:end])
    print("capture-hello: %d bytes -> %s" % (end, args.outfile), file=sys.stderr)


if __name__ == "__main__":
    main()
