"""pipelines.runtime's port check: a listener counts, a stopped server's connections do not."""

from __future__ import annotations

import socket

from pipelines.runtime import port_free


def test_a_port_is_free_when_nothing_listens_there() -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HAProxy and uvicorn do
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    assert not port_free("127.0.0.1", port)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    accepted.close()  # the server closes first: its side of the connection waits in TIME_WAIT
    client.close()
    server.close()
    assert port_free("127.0.0.1", port)
