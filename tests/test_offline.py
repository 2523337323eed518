"""The suite runs offline: the hub is switched off and a test that opens a connection fails."""

from __future__ import annotations

import os
import socket

import pytest
from conftest import NetworkAccessError


def test_hub_is_switched_off():
    assert os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_connection_attempt_fails_the_test():
    with pytest.raises(NetworkAccessError):
        socket.create_connection(("203.0.113.1", 443), timeout=1)  # TEST-NET-3, never routed


def test_loopback_is_allowed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(server.getsockname(), timeout=1)
    client.close()
    server.close()
