"""Tokens of a real identity provider: keys from a JWKS URL (chosen by `kid`) and the issuer.

The JWKS is served by the test itself, over loopback, from a tiny `http.server` thread that
counts how often it is asked.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from jwt import PyJWKClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from api.app import create_app
from api.auth import (
    AuthConfigError,
    InvalidTokenError,
    KeysUnavailableError,
    TokenVerifier,
    build_verifier,
)
from flows.cli import build_parser, settings_from
from flows.settings import Settings

ISSUER = "https://idp.example.test/realms/ward"


class Jwks:
    """A JWKS endpoint: the published keys can be changed while it runs; requests are counted."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.requests = 0
        self.broken = False
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.requests += 1
                if jwks.broken:
                    self.send_error(500)
                    return
                body = json.dumps({"keys": jwks.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def publish(self, *keys: tuple[str, Any]) -> None:
        self.keys = [
            {**json.loads(RSAAlgorithm.to_jwk(private.public_key())), "kid": kid, "use": "sig"}
            for kid, private in keys
        ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    return {"k1": rsa_key(), "k2": rsa_key(), "stranger": rsa_key()}


@pytest.fixture
def jwks(keys: dict[str, rsa.RSAPrivateKey]) -> Iterator[Jwks]:
    server = Jwks()
    server.publish(("k1", keys["k1"]), ("k2", keys["k2"]))
    yield server
    server.close()


def token(private: Any, kid: str | None, **claims: Any) -> str:
    body = {"exp": time.time() + 60, "iss": ISSUER, "scope": "patient:P1", **claims}
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(body, private, algorithm="RS256", headers=headers)


def verifier(jwks: Jwks, **fields: Any) -> TokenVerifier:
    built = build_verifier(Settings(auth="jwt", jwt_jwks_url=jwks.url, jwt_issuer=ISSUER, **fields))
    assert built is not None
    return built


def test_a_token_signed_with_either_published_key_verifies(
    jwks: Jwks, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    check = verifier(jwks)
    assert check.verify(token(keys["k1"], "k1")).patients == {"P1"}
    assert check.verify(token(keys["k2"], "k2", scope="events:all")).everything
    assert jwks.requests == 1  # the set is cached


def test_an_unknown_kid_is_invalid(jwks: Jwks, keys: dict[str, rsa.RSAPrivateKey]) -> None:
    with pytest.raises(InvalidTokenError, match="does not publish"):
        verifier(jwks).verify(token(keys["stranger"], "k3"))


def test_a_published_kid_with_another_keys_signature_is_invalid(
    jwks: Jwks, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    with pytest.raises(InvalidTokenError, match="signature"):
        verifier(jwks).verify(token(keys["stranger"], "k1"))


@pytest.mark.parametrize(
    "claims",
    [{"iss": "https://evil.example.test/"}, {"iss": ISSUER + "/"}, {"iss": None}],
    ids=["other-issuer", "almost-the-issuer", "no-issuer"],
)
def test_a_token_from_another_or_no_issuer_is_invalid(
    jwks: Jwks, keys: dict[str, rsa.RSAPrivateKey], claims: dict[str, Any]
) -> None:
    if claims["iss"] is None:
        signed = jwt.encode(
            {"exp": time.time() + 60, "scope": "events:all"},
            keys["k1"],
            algorithm="RS256",
            headers={"kid": "k1"},
        )
    else:
        signed = token(keys["k1"], "k1", **claims)
    with pytest.raises(InvalidTokenError, match="iss"):
        verifier(jwks).verify(signed)


def test_the_issuer_is_checked_for_hs256_tokens_too() -> None:
    secret = "issuer-test-secret-long-enough-for-hs256!!"
    check = build_verifier(Settings(auth="jwt", jwt_secret=secret, jwt_issuer=ISSUER))
    assert check is not None
    good = jwt.encode({"exp": time.time() + 60, "iss": ISSUER}, secret, algorithm="HS256")
    check.verify(good)
    bad = jwt.encode({"exp": time.time() + 60, "iss": "elsewhere"}, secret, algorithm="HS256")
    with pytest.raises(InvalidTokenError, match="issuer"):
        check.verify(bad)


def test_a_token_without_a_kid_is_invalid_when_only_a_jwks_is_configured(
    jwks: Jwks, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    with pytest.raises(InvalidTokenError, match="kid"):
        verifier(jwks).verify(token(keys["k1"], None))


def test_a_token_without_a_kid_uses_the_configured_public_key(
    jwks: Jwks, keys: dict[str, rsa.RSAPrivateKey], tmp_path: Path
) -> None:
    pem = tmp_path / "public.pem"
    pem.write_bytes(
        keys["stranger"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    check = verifier(jwks, jwt_public_key=str(pem))
    assert check.verify(token(keys["stranger"], None)).patients == {"P1"}
    assert check.verify(token(keys["k1"], "k1")).patients == {"P1"}


def test_a_rotated_in_key_is_fetched_when_a_token_first_names_it(
    jwks: Jwks, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    jwks.publish(("k1", keys["k1"]))
    # No cooldown here: PyJWT's default waits 30 s after a fetch before refetching.
    check = TokenVerifier(issuer=ISSUER, jwks=PyJWKClient(jwks.url, cooldown_duration=0))
    check.verify(token(keys["k1"], "k1"))
    jwks.publish(("k1", keys["k1"]), ("k2", keys["k2"]))
    assert check.verify(token(keys["k2"], "k2")).patients == {"P1"}
    jwks.publish(("k2", keys["k2"]))
    with pytest.raises(InvalidTokenError, match="does not publish"):
        check.verify(token(keys["k1"], "k1-retired"))


def test_made_up_kids_do_not_flood_the_identity_provider(
    jwks: Jwks, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    check = verifier(jwks)
    for n in range(20):
        with pytest.raises(InvalidTokenError):
            check.verify(token(keys["stranger"], f"made-up-{n}"))
    assert jwks.requests <= 2


def test_a_key_for_another_algorithm_is_refused(jwks: Jwks) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks.keys = [{**json.loads(ECAlgorithm.to_jwk(ec_key.public_key())), "kid": "ec"}]
    forged = jwt.encode(
        {"exp": time.time() + 60, "iss": ISSUER},
        rsa_key(),
        algorithm="RS256",
        headers={"kid": "ec"},
    )
    with pytest.raises(InvalidTokenError, match="RS256"):
        verifier(jwks).verify(forged)


def test_an_unreachable_identity_provider_is_unavailable_not_invalid(
    jwks: Jwks, keys: dict[str, rsa.RSAPrivateKey]
) -> None:
    jwks.broken = True
    with pytest.raises(KeysUnavailableError):
        verifier(jwks).verify(token(keys["k1"], "k1"))


def test_a_jwks_url_that_is_not_http_is_refused_at_start() -> None:
    with pytest.raises(AuthConfigError, match="http"):
        build_verifier(Settings(auth="jwt", jwt_jwks_url="file:///etc/passwd"))


def test_a_jwks_url_alone_is_enough_to_turn_auth_on(jwks: Jwks) -> None:
    assert build_verifier(Settings(auth="jwt", jwt_jwks_url=jwks.url)) is not None


def test_the_settings_have_cli_flags() -> None:
    args = build_parser().parse_args(
        ["api", "--jwt-jwks-url", "https://idp.example.test/certs", "--jwt-issuer", ISSUER]
    )
    settings = settings_from(args)
    assert (settings.jwt_jwks_url, settings.jwt_issuer) == (
        "https://idp.example.test/certs",
        ISSUER,
    )


def test_the_api_answers_401_for_bad_tokens_and_503_without_keys(
    jwks: Jwks, keys: dict[str, rsa.RSAPrivateKey], tmp_path: Path
) -> None:
    settings = Settings(
        auth="jwt",
        jwt_jwks_url=jwks.url,
        jwt_issuer=ISSUER,
        event_log_url=f"sqlite:///{tmp_path / 'events.db'}",
    )

    def status(client: TestClient, signed: str) -> int:
        headers = {"Authorization": f"Bearer {signed}"}
        return client.get("/events/recent", headers=headers).status_code

    with TestClient(create_app(settings)) as client:
        assert status(client, token(keys["k1"], "k1")) == 200
        assert status(client, token(keys["k2"], "k2")) == 200
        assert status(client, token(keys["stranger"], "k3")) == 401
        assert status(client, token(keys["k1"], "k1", iss="https://evil.example.test/")) == 401
    jwks.broken = True
    with TestClient(create_app(settings)) as client:
        response = client.get(
            "/events/recent", headers={"Authorization": f"Bearer {token(keys['k1'], 'k1')}"}
        )
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
