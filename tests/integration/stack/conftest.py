import socket

import pytest


@pytest.fixture
def free_ports():
    """Ports free right now on 127.0.0.1, for private instances beside the shared stack."""

    def take(n: int) -> list[int]:
        socks = [socket.socket() for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        ports = [s.getsockname()[1] for s in socks]
        for s in socks:
            s.close()
        return ports

    return take
