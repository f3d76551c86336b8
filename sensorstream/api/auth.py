"""Who may call the API: a bearer token with the scope asked for, or loopback when none is set.

A request presents ``Authorization: Bearer <token>``; :mod:`~sensorstream.tokens` says
where tokens are configured. The presented token's SHA-256 is compared with *every*
configured token's, each with :func:`hmac.compare_digest`, so the time taken reveals neither
whether nor which one matched. Answers:

- no token, or one no configuration holds: **401**, with ``WWW-Authenticate: Bearer``;
- a known token without the scope the endpoint needs: **403**, naming the scope;
- **no token configured at all**: loopback clients (127.0.0.0/8, ``::1``) may call every
  endpoint without one; any other client gets **403**, saying to configure a token. (Behind
  a reverse proxy on the same machine every client looks like loopback: configure one.)

Once a token is configured, every client needs one, loopback too. Routers use
:meth:`Auth.require` as a FastAPI dependency::

    router = APIRouter(dependencies=[Depends(auth.require("read"))])
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from fastapi import HTTPException, Request

from sensorstream.errors import SensorstreamError
from sensorstream.tokens import Scope, Token, TokenSettings, digest_of, resolve_tokens

__all__ = ["Auth", "Denied", "Grant", "is_loopback"]

LOOPBACK = "loopback client (no token configured)"


@dataclass(frozen=True)
class Grant:
    """Who a request is (a token's label, or the loopback client) and the scopes it holds."""

    who: str
    scopes: frozenset[Scope]


# A FastAPI dependency answering the request's Grant for one scope (``Auth.require``):
# routers that act on someone's behalf take one, to know who.
Requirement = Callable[..., Grant]


class Denied(SensorstreamError):
    """A request without the right to what it asks: an HTTP status and a message saying why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        """What a 401 must carry: how to authenticate."""
        return {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}


class Auth:
    """Checks requests against the configured tokens; see the module.

    >>> from sensorstream.tokens import Token
    >>> auth = Auth([Token.of("a-gateway-token-0123", ["ingest"], "gateway")])
    >>> auth.check("Bearer a-gateway-token-0123", "192.0.2.7", "ingest").who
    'gateway'
    >>> Auth().check(None, "127.0.0.1", "admin").who
    'loopback client (no token configured)'
    """

    def __init__(self, tokens: Iterable[Token] = ()) -> None:
        self.tokens: tuple[Token, ...] = tuple(tokens)

    @classmethod
    def configure(
        cls,
        tokens: Sequence[TokenSettings] = (),
        environ: Mapping[str, str] | None = None,
        where: str = "api.tokens",
    ) -> Auth:
        """The configured tokens (``where`` names them in messages) and ``SENSORSTREAM_TOKENS``'."""
        return cls(resolve_tokens(tokens, environ, where))

    @property
    def open_to_loopback(self) -> bool:
        """No token is configured: loopback clients need none, and others are refused."""
        return not self.tokens

    def check(self, authorization: str | None, client_host: str | None, scope: Scope) -> Grant:
        """Who the request is, if it may use ``scope``; else :class:`Denied`."""
        if self.open_to_loopback:
            if client_host is not None and is_loopback(client_host):
                return Grant(LOOPBACK, frozenset(("ingest", "read", "admin")))
            msg = (
                f"no API token is configured, so only clients on this machine may call it (this "
                f"one is {client_host or 'unknown'}): configure a token in api.tokens or "
                "SENSORSTREAM_TOKENS, and send it as Authorization: Bearer <token>"
            )
            raise Denied(403, msg)
        presented = _bearer(authorization)
        digest = digest_of(presented)
        matched: list[Token] = []
        for token in self.tokens:  # every one, matched or not: the time says nothing
            if hmac.compare_digest(digest, token.digest):
                matched.append(token)
        if not matched:
            msg = "the bearer token is not one this server knows: check the Authorization header"
            raise Denied(401, msg)
        scopes = frozenset(s for token in matched for s in token.scopes)
        if scope not in scopes:
            held = ", ".join(sorted(scopes))
            msg = f"this token ({matched[0].label}) has the scopes {held}, not {scope!r}"
            raise Denied(403, msg)
        return Grant(matched[0].label, scopes)

    def require(self, scope: Scope) -> Callable[[Request], Grant]:
        """A FastAPI dependency: the request's :class:`Grant` for ``scope``, or 401/403."""

        def authorized(request: Request) -> Grant:
            host = request.client.host if request.client is not None else None
            try:
                return self.check(request.headers.get("authorization"), host, scope)
            except Denied as denied:
                raise HTTPException(denied.status, denied.message, denied.headers) from None

        return authorized


def _bearer(authorization: str | None) -> str:
    if not authorization:
        msg = "this API needs a token: send Authorization: Bearer <token>"
        raise Denied(401, msg)
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        # Never echo the header: without a scheme, its first word is the token.
        msg = "the Authorization header is not a bearer token: send Authorization: Bearer <token>"
        raise Denied(401, msg)
    return token.strip()


def is_loopback(host: str) -> bool:
    """Whether a client address is this machine's own (127.0.0.0/8, ``::1``, mapped IPv4).

    >>> is_loopback("127.3.2.1"), is_loopback("::ffff:127.0.0.1"), is_loopback("10.0.0.1")
    (True, True, False)
    """
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
