"""API tokens: their settings in a pipeline, the ``SENSORSTREAM_TOKENS`` variable, and scopes.

A token is a secret and the scopes it grants: ``ingest`` (post readings), ``read`` (query
results and alerts), ``admin`` (acknowledge, silence, manage). A token holds exactly the
scopes it lists: ``admin`` does not imply the others.

In a pipeline, each token is written as the environment variable holding it (``token_env``,
which keeps the secret out of the file) or as the text itself (``token``)::

    api:
      tokens:
        - {token_env: GATEWAY_TOKEN, scopes: [ingest]}
        - {token: "a-long-random-text-for-the-dashboard", scopes: [read]}

The environment variable ``SENSORSTREAM_TOKENS`` adds more: entries ``TOKEN:SCOPE[,SCOPE]``
separated by ``;``::

    SENSORSTREAM_TOKENS = "k3y-for-the-gateways-0123:ingest;another-key-0123456789:read,admin"

A token must be at least 16 characters long (``python -c "import secrets;
print(secrets.token_urlsafe(32))"`` makes a good one). Only its SHA-256 is kept in memory,
and no message ever shows it. This module loads no FastAPI, so a pipeline's settings can
name tokens without the cost; :mod:`~sensorstream.api.auth` checks requests against them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_serializer, model_validator

from sensorstream.errors import ConfigError

Scope = Literal["ingest", "read", "admin"]
SCOPES: tuple[Scope, ...] = get_args(Scope)
TOKENS_ENV = "SENSORSTREAM_TOKENS"
MIN_TOKEN_LENGTH = 16

__all__ = [
    "MIN_TOKEN_LENGTH",
    "SCOPES",
    "TOKENS_ENV",
    "Scope",
    "Token",
    "TokenSettings",
    "parse_tokens",
    "resolve_tokens",
]


@dataclass(frozen=True)
class Token:
    """A configured token: where it was configured (for messages), its scopes, its SHA-256."""

    label: str
    scopes: frozenset[Scope]
    digest: bytes = field(repr=False)

    @classmethod
    def of(cls, secret: str, scopes: Iterable[Scope], label: str) -> Token:
        """A token from its text; ConfigError (naming ``label``, never the text) if too short."""
        if len(secret) < MIN_TOKEN_LENGTH:
            msg = (
                f"{label}: a token must be at least {MIN_TOKEN_LENGTH} characters long, so that "
                'it cannot be guessed; make one with: python -c "import secrets; '
                'print(secrets.token_urlsafe(32))"'
            )
            raise ConfigError(msg)
        return cls(label, frozenset(scopes), digest_of(secret))


def digest_of(secret: str) -> bytes:
    """The SHA-256 a token is compared by: equal lengths, so the comparison leaks no length."""
    return hashlib.sha256(secret.encode()).digest()


class TokenSettings(BaseModel):
    """One token as a pipeline's YAML writes it: ``token`` or ``token_env``, and ``scopes``.

    >>> TokenSettings(token_env="GATEWAY_TOKEN", scopes=("ingest",)).scopes
    ('ingest',)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: SecretStr | None = None
    token_env: str | None = None
    scopes: tuple[Scope, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> TokenSettings:
        if (self.token is None) == (self.token_env is None):
            msg = (
                "give a token either as token_env (the environment variable holding it) or as "
                "token (its text), not both or neither"
            )
            raise ValueError(msg)
        return self

    @field_serializer("token", when_used="json")
    def _written_out(self, token: SecretStr | None) -> str | None:
        # As the YAML holds it, so that a spec written back reads back the same; repr() and
        # str() still hide it.
        return None if token is None else token.get_secret_value()

    def resolve(self, label: str, environ: Mapping[str, str]) -> Token:
        """The token itself, read from the environment if ``token_env`` names it."""
        if self.token is not None:
            return Token.of(self.token.get_secret_value(), self.scopes, label)
        assert self.token_env is not None  # the validator saw to it
        secret = environ.get(self.token_env)
        if not secret:
            msg = (
                f"{label}: the environment variable {self.token_env} holding the token is not "
                "set (or empty): set it before starting the pipeline"
            )
            raise ConfigError(msg)
        return Token.of(secret, self.scopes, f"{label} (${self.token_env})")


def parse_tokens(text: str, label: str = TOKENS_ENV) -> list[Token]:
    """Tokens from ``TOKEN:SCOPE[,SCOPE];...`` (``SENSORSTREAM_TOKENS``); ConfigError if malformed.

    >>> [sorted(t.scopes) for t in parse_tokens("0123456789abcdef:ingest,read; ")]
    [['ingest', 'read']]
    """
    tokens = []
    entries = [entry.strip() for entry in text.split(";")]
    for number, entry in enumerate((e for e in entries if e), start=1):
        where = f"{label} entry {number}"
        secret, colon, scopes_text = entry.rpartition(":")
        if not colon or not secret:
            msg = f"{where} has no scopes: write TOKEN:SCOPE[,SCOPE], scopes from {_allowed()}"
            raise ConfigError(msg)
        scopes = [scope.strip() for scope in scopes_text.split(",") if scope.strip()]
        unknown = [scope for scope in scopes if scope not in SCOPES]
        if unknown or not scopes:
            msg = f"{where}: unknown scope {(unknown or [''])[0]!r}; allowed: {_allowed()}"
            raise ConfigError(msg)
        tokens.append(Token.of(secret, [s for s in SCOPES if s in scopes], where))
    return tokens


def resolve_tokens(
    configured: Sequence[TokenSettings],
    environ: Mapping[str, str] | None = None,
    where: str = "api.tokens",
) -> list[Token]:
    """The configured tokens (``where`` names them in messages) and ``SENSORSTREAM_TOKENS``'."""
    environ = os.environ if environ is None else environ
    tokens = [settings.resolve(f"{where}[{i}]", environ) for i, settings in enumerate(configured)]
    return tokens + parse_tokens(environ.get(TOKENS_ENV, ""))


def _allowed() -> str:
    return ", ".join(SCOPES)
