"""Misbehaving TCP peers on loopback: one that never answers, one that resets every
connection, and a port nobody listens on."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator


def free_port() -> int:
    """A loopback port with no listener right now (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def tcp_peer(behaviour: str, answer: bytes = b"") -> Iterator[int]:
    """A listener on a loopback port that accepts connections and then holds them without a
    word ("silent"), resets them at once ("reset") or reads a request and sends `answer`
    ("answer"); yields its port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if behaviour == "reset":  # linger 0: close sends RST instead of FIN
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.recv(65536)
                conn.close()
            elif behaviour == "answer":
                conn.recv(65536)
                conn.sendall(answer)
                conn.close()
            else:
                held.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for conn in held:
            conn.close()
        thread.join(5)
