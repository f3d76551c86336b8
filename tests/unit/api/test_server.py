"""BackgroundServer: an ASGI app on a free loopback port, in a thread, stopped by close()."""

from __future__ import annotations

import socket

import httpx
import pytest
from fastapi import FastAPI

from sensorstream.api.server import BackgroundServer


def app() -> FastAPI:
    served = FastAPI()

    @served.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    return served


def test_it_serves_on_a_free_port_until_closed() -> None:
    with BackgroundServer(app(), "127.0.0.1", 0) as server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert httpx.get(f"{server.url}/ping", timeout=5).json() == {"pong": "yes"}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/ping", timeout=1)


def test_a_port_in_use_is_an_os_error_before_any_thread_starts() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(OSError, match="in use"):
            BackgroundServer(app(), "127.0.0.1", holder.getsockname()[1])


def test_a_wildcard_address_is_reached_through_the_loopback() -> None:
    server = BackgroundServer(app(), "0.0.0.0", 0)
    try:
        assert server.url == f"http://127.0.0.1:{server.port}"
    finally:
        server.close()


def test_its_socket_says_tcp_so_that_answers_are_not_held_back_by_nagle() -> None:
    # asyncio sets TCP_NODELAY on accepted connections only when the listening socket's
    # protocol is IPPROTO_TCP; with 0, every answer waited ~40 ms for a delayed ACK.
    server = BackgroundServer(app(), "127.0.0.1", 0)
    try:
        assert server.socket.proto == socket.IPPROTO_TCP
    finally:
        server.close()
