"""Auth: bearer tokens with scopes, the loopback rule without them, and no token ever shown."""

from __future__ import annotations

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from sensorstream.api.auth import Auth, Denied, Grant
from sensorstream.errors import ConfigError
from sensorstream.tokens import Token, TokenSettings, parse_tokens, resolve_tokens

GATEWAY = "gateway-token-0123456789"
READER = "reader-token-0123456789"


def app_with(auth: Auth) -> FastAPI:
    app = FastAPI()

    @app.get("/ingest")
    def ingest(grant: Grant = Depends(auth.require("ingest"))) -> dict[str, str]:  # noqa: B008
        return {"who": grant.who}

    @app.get("/admin")
    def admin(grant: Grant = Depends(auth.require("admin"))) -> dict[str, str]:  # noqa: B008
        return {"who": grant.who}

    return app


def client(auth: Auth, host: str = "127.0.0.1") -> TestClient:
    return TestClient(app_with(auth), client=(host, 50000))


def tokens() -> Auth:
    return Auth(
        [Token.of(GATEWAY, ["ingest"], "gateway"), Token.of(READER, ["read", "admin"], "reader")]
    )


# -- without tokens: loopback only ---------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.8.7", "::1", "::ffff:127.0.0.1"])
def test_without_tokens_a_loopback_client_may_call_everything(host: str) -> None:
    for path in ("/ingest", "/admin"):
        answer = client(Auth(), host).get(path)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"who": "loopback client (no token configured)"}


@pytest.mark.parametrize("host", ["10.0.0.7", "192.0.2.1", "2001:db8::1", "testclient"])
def test_without_tokens_any_other_client_is_told_to_configure_one(host: str) -> None:
    answer = client(Auth(), host).get("/ingest")

    assert answer.status_code == 403
    assert "configure a token in api.tokens or SENSORSTREAM_TOKENS" in answer.json()["detail"]


# -- with tokens ---------------------------------------------------------------------------


def test_a_token_with_the_scope_is_let_in_from_anywhere() -> None:
    answer = client(tokens(), "192.0.2.1").get(
        "/ingest", headers={"Authorization": f"Bearer {GATEWAY}"}
    )
    assert (answer.status_code, answer.json()) == (200, {"who": "gateway"})


def test_once_a_token_is_configured_loopback_needs_one_too() -> None:
    answer = client(tokens(), "127.0.0.1").get("/ingest")

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert "Authorization: Bearer <token>" in answer.json()["detail"]


@pytest.mark.parametrize(
    "header",
    [f"Bearer {GATEWAY}x", f"Bearer {GATEWAY[:-1]}", "Bearer ", f"Basic {GATEWAY}", GATEWAY],
    ids=["longer", "shorter", "empty", "another scheme", "no scheme"],
)
def test_a_wrong_token_is_401_and_the_answer_never_repeats_it(header: str) -> None:
    answer = client(tokens(), "192.0.2.1").get("/ingest", headers={"Authorization": header})

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert GATEWAY[:10] not in answer.text


def test_a_token_without_the_scope_is_403_naming_the_scope() -> None:
    answer = client(tokens(), "192.0.2.1").get(
        "/ingest", headers={"Authorization": f"bearer {READER}"}
    )

    assert answer.status_code == 403
    assert answer.json()["detail"] == "this token (reader) has the scopes admin, read, not 'ingest'"
    assert READER not in answer.text


def test_admin_does_not_imply_the_other_scopes() -> None:
    auth = Auth([Token.of(READER, ["admin"], "admin")])
    assert auth.check(f"Bearer {READER}", "192.0.2.1", "admin").scopes == {"admin"}
    with pytest.raises(Denied) as denied:
        auth.check(f"Bearer {READER}", "192.0.2.1", "read")
    assert denied.value.status == 403


def test_the_same_token_configured_twice_holds_both_scopes() -> None:
    auth = Auth([Token.of(GATEWAY, ["ingest"], "one"), Token.of(GATEWAY, ["read"], "two")])
    assert auth.check(f"Bearer {GATEWAY}", None, "read").scopes == {"ingest", "read"}


def test_every_token_is_compared_matched_or_not(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    compared: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    auth = tokens()
    auth.check(f"Bearer {GATEWAY}", None, "ingest")  # the first matches: the second is compared

    assert compared == [token.digest for token in auth.tokens]


def test_a_token_is_kept_only_as_its_digest() -> None:
    token = Token.of(GATEWAY, ["ingest"], "gateway")
    assert GATEWAY not in repr(token)
    assert GATEWAY.encode() not in token.digest


# -- configuration -------------------------------------------------------------------------


def test_tokens_come_from_the_settings_and_the_environment() -> None:
    configured = (
        TokenSettings(token=SecretStr(GATEWAY), scopes=("ingest",)),
        TokenSettings(token_env="READER_TOKEN", scopes=("read",)),
    )
    environ = {"READER_TOKEN": READER, "SENSORSTREAM_TOKENS": "admin-token-0123456789:admin"}

    auth = Auth.configure(configured, environ)

    assert [(t.label, sorted(t.scopes)) for t in auth.tokens] == [
        ("api.tokens[0]", ["ingest"]),
        ("api.tokens[1] ($READER_TOKEN)", ["read"]),
        ("SENSORSTREAM_TOKENS entry 1", ["admin"]),
    ]
    assert auth.check("Bearer admin-token-0123456789", None, "admin").who == (
        "SENSORSTREAM_TOKENS entry 1"
    )


def test_the_environment_variable_holds_several_tokens_with_scopes() -> None:
    parsed = parse_tokens(f" {GATEWAY}:ingest ; {READER}:read, admin ;")
    assert [sorted(t.scopes) for t in parsed] == [["ingest"], ["admin", "read"]]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GATEWAY, "entry 1 has no scopes: write TOKEN:SCOPE"),
        (f"{GATEWAY}:ingest;{READER}:raed", "entry 2: unknown scope 'raed'; allowed: ingest"),
        (f"{GATEWAY}:", "entry 1: unknown scope ''"),
        ("short:ingest", "entry 1: a token must be at least 16 characters"),
    ],
)
def test_a_malformed_environment_variable_says_which_entry_never_the_token(
    text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        parse_tokens(text)
    assert GATEWAY not in str(error.value)
    assert READER not in str(error.value)
    assert "short:" not in str(error.value)


def test_a_token_env_that_is_not_set_is_a_config_error() -> None:
    configured = (TokenSettings(token_env="MISSING_TOKEN", scopes=("ingest",)),)
    with pytest.raises(ConfigError, match=r"api.tokens\[0\]: the environment variable MISSING"):
        resolve_tokens(configured, environ={})


def test_token_settings_take_one_of_token_and_token_env_and_hide_the_text() -> None:
    with pytest.raises(ValueError, match="either as token_env"):
        TokenSettings(scopes=("ingest",))
    with pytest.raises(ValueError, match="either as token_env"):
        TokenSettings(token=SecretStr(GATEWAY), token_env="X", scopes=("ingest",))
    with pytest.raises(ValueError, match="scopes"):
        TokenSettings(token=SecretStr(GATEWAY), scopes=())
    settings = TokenSettings(token=SecretStr(GATEWAY), scopes=("ingest",))
    assert GATEWAY not in repr(settings)
    assert GATEWAY not in str(settings)
    assert TokenSettings.model_validate_json(settings.model_dump_json()) == settings
