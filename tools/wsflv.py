#!/usr/bin/env python3
"""A minimal WS-FLV client for tools/windows-smoke.sh, deploy/check.sh and the WSS test: upgrades
ws://HOST:PORT/PATH (wss:// with --cafile: Python's ssl, the certificate verified against CAFILE and
the name HOST), reads binary frames for SECS seconds (or until the server closes), and writes their
payloads, concatenated, to OUT. Exits 0 only when the upgrade answered 101 and the bytes start with an
FLV header; prints the frame and byte counts. Standard library only, so CI needs nothing from PyPI.

Usage: wsflv.py [--cafile CAFILE] HOST PORT PATH SECS OUT
"""
import base64
import os
import socket
import ssl
import struct
import sys
import time

MAX_BYTES = 64 << 20  # the smoke test reads seconds of a small fixture; more is a runaway server


def read_exact(sock, n, deadline):
    buf = b""
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def main():
    args = sys.argv[1:]
    cafile = None
    if args[:1] == ["--cafile"] and len(args) > 1:
        cafile, args = args[1], args[2:]
    if len(args) != 5:
        sys.exit(__doc__.strip().splitlines()[-1])
    host, port, path, secs, out = args[0], int(args[1]), args[2], float(args[3]), args[4]
    sock = socket.create_connection((host, port), timeout=5)
    if cafile:
        try:
            sock = ssl.create_default_context(cafile=cafile).wrap_socket(sock, server_hostname=host)
        except (ssl.SSLError, OSError) as e:
            sys.exit(f"wsflv: TLS handshake with {host}:{port}: {e}")
        print(f"wsflv: {sock.version()} {sock.cipher()[0]}, certificate verified against {cafile}")
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk or len(head) > 16384:
            sys.exit(f"wsflv: no upgrade answer: {head!r}")
        head += chunk
    head, rest = head.split(b"\r\n\r\n", 1)
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" ":
        sys.exit(f"wsflv: upgrade refused: {status.decode(errors='replace')}")

    data = bytearray()
    frames = 0
    ended = "time limit"
    deadline = time.monotonic() + secs
    pending = rest

    def take(n):
        nonlocal pending
        if len(pending) >= n:
            got, pending = pending[:n], pending[n:]
            return got
        got = pending + read_exact(sock, n - len(pending), deadline)
        pending = b""
        return got

    try:
        while len(data) < MAX_BYTES:
            b0, b1 = take(2)
            opcode, length = b0 & 0x0F, b1 & 0x7F
            if length == 126:
                (length,) = struct.unpack(">H", take(2))
            elif length == 127:
                (length,) = struct.unpack(">Q", take(8))
            if length > MAX_BYTES:
                sys.exit(f"wsflv: frame of {length} bytes")
            mask = take(4) if b1 & 0x80 else None
            payload = take(length)
            if mask:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            if opcode in (0x0, 0x2):
                data += payload
                frames += 1
            elif opcode == 0x1:
                sys.exit("wsflv: the server sent a text frame")
            elif opcode == 0x8:
                ended = "close frame"
                break
    except TimeoutError:
        pass
    except EOFError:
        ended = "connection dropped"
    try:
        # A masked, empty close frame: leave politely.
        sock.sendall(b"\x88\x80" + os.urandom(4))
    except OSError:
        pass
    sock.close()
    with open(out, "wb") as f:
        f.write(data)
    print(f"wsflv: {frames} binary frames, {len(data)} bytes, ended by {ended}")
    if not data.startswith(b"FLV\x01"):
        sys.exit("wsflv: the bytes do not start with an FLV header")


if __name__ == "__main__":
    main()
