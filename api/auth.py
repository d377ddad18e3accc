"""Who may see which step events: JWT verification and the scopes a token grants.

A token's space-separated `scope` claim grants `events:all` (everything), `hospital:<id>`
(events of that hospital's patients) or `patient:<id>` (events of that patient; repeatable).
Events without a patient are visible to `events:all` only; a token with no grant sees nothing.
Tokens are HS256 (the configured secret) or RS256 (the configured public key, or the key an
identity provider publishes at its JWKS URL under the token's `kid`), and must carry `exp`;
with an issuer configured, also that `iss`. Auth is off only when the settings say so
explicitly (`VITALFLOW_AUTH=off`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import jwt
from fastapi import Header, HTTPException, Query, Request, status
from jwt import PyJWKClient
from jwt.exceptions import PyJWKClientConnectionError

if TYPE_CHECKING:
    from flows.settings import Settings

__all__ = [
    "Access",
    "AuthConfigError",
    "InvalidTokenError",
    "KeysUnavailableError",
    "TokenVerifier",
    "build_verifier",
    "require_access",
]

logger = logging.getLogger(__name__)

_MIN_HMAC_KEY_BYTES = 32
# A request waits this long at most for the identity provider's keys; they are cached for
# `_JWKS_LIFESPAN_S`, and an unknown `kid` refetches them at most every 30 s (PyJWT's
# cooldown), so a flood of made-up key ids cannot flood the provider.
_JWKS_TIMEOUT_S = 5.0
_JWKS_LIFESPAN_S = 300.0


class AuthConfigError(ValueError):
    """Auth is on but no key to check tokens with is configured."""


class InvalidTokenError(Exception):
    """A token that is missing, malformed, badly signed or expired (an HTTP 401)."""


class KeysUnavailableError(Exception):
    """The identity provider's keys cannot be fetched, so no token can be checked (a 503)."""


@dataclass(frozen=True, slots=True)
class Access:
    """What one request may see, from its token's grants."""

    everything: bool = False
    hospitals: frozenset[str] = field(default_factory=frozenset)
    patients: frozenset[str] = field(default_factory=frozenset)
    expires_at: float | None = None
    # The token's `sub`: who acknowledges an alert.
    subject: str | None = None

    @classmethod
    def unrestricted(cls) -> Access:
        """Access when auth is off: everything, never expiring."""
        return cls(everything=True)

    @classmethod
    def from_scope(
        cls, scope: object, expires_at: float | None, subject: str | None = None
    ) -> Access:
        """Read the grants out of a `scope` claim (a space-separated string or a list of them).

        A claim of any other type (null, a number, an object, a list holding anything but
        strings) raises `InvalidTokenError`: guessing what it was meant to grant could grant
        too much (the keys of an object read as a list of words).
        """
        words = _scope_words(scope)
        hospitals = {w.removeprefix("hospital:") for w in words if w.startswith("hospital:")}
        patients = {w.removeprefix("patient:") for w in words if w.startswith("patient:")}
        return cls(
            everything="events:all" in words,
            hospitals=frozenset(h for h in hospitals if h),
            patients=frozenset(p for p in patients if p),
            expires_at=expires_at,
            subject=subject,
        )

    def can_see(self, patient_id: str | None, hospital_id: str | None) -> bool:
        """Whether an event about this patient (of this hospital) is visible."""
        if self.everything:
            return True
        if patient_id is not None and patient_id in self.patients:
            return True
        # A hospital's viewers also see a message of several of its patients (a household's
        # gateway: no one patient on the event, their shared hospital is).
        return hospital_id is not None and hospital_id in self.hospitals

    def expired(self, now: float | None = None) -> bool:
        """Tell whether the token's `exp` has passed."""
        if self.expires_at is None:
            return False
        return (time.time() if now is None else now) >= self.expires_at


def _scope_words(scope: object) -> list[str]:
    if isinstance(scope, str):
        return scope.split()
    if isinstance(scope, list) and all(isinstance(item, str) for item in scope):
        return [word for item in scope for word in item.split()]
    msg = f"the scope claim must be a string or a list of strings, not {type(scope).__name__}"
    raise InvalidTokenError(msg)


@dataclass(frozen=True)
class TokenVerifier:
    """Checks bearer tokens against the configured HS256 secret and/or RS256 keys.

    RS256 keys are the configured public key and/or an identity provider's JWKS (`jwks`):
    a token naming a `kid` is checked with the JWKS key of that id, one without with the
    public key.
    """

    secret: str | None = None
    public_key: str | None = None
    audience: str | None = None
    leeway_seconds: float = 0.0
    issuer: str | None = None
    jwks: PyJWKClient | None = None

    def verify(self, token: str) -> Access:
        """Return the token's access, or raise `InvalidTokenError`."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            msg = "malformed token"
            raise InvalidTokenError(msg) from exc
        algorithm = str(header.get("alg"))
        # The key is chosen by the algorithm, and each key accepts only its own algorithm, so a
        # token signed with the public key as an HMAC secret can never pass.
        key: Any = self.secret if algorithm == "HS256" else None
        if algorithm == "RS256":
            kid = header.get("kid")
            if self.jwks is not None and (kid is not None or self.public_key is None):
                key = _jwks_key(self.jwks, kid)
            else:
                key = self.public_key
        if key is None:
            msg = f"tokens signed with {algorithm!r} are not accepted"
            raise InvalidTokenError(msg)
        required = ["exp", "iss"] if self.issuer is not None else ["exp"]
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": required},
            )
        except jwt.ExpiredSignatureError as exc:
            msg = "token expired"
            raise InvalidTokenError(msg) from exc
        except jwt.MissingRequiredClaimError as exc:
            msg = f"token lacks the {exc.claim!r} claim"
            raise InvalidTokenError(msg) from exc
        except jwt.InvalidSignatureError as exc:
            msg = "bad token signature"
            raise InvalidTokenError(msg) from exc
        except jwt.InvalidIssuerError as exc:
            msg = "token from another issuer"
            raise InvalidTokenError(msg) from exc
        except jwt.PyJWTError as exc:
            msg = f"invalid token ({type(exc).__name__})"
            raise InvalidTokenError(msg) from exc
        # RFC 7519: a time claim is a NumericDate, a JSON number. PyJWT also takes a numeric
        # string ("9999999999") and converts it: such a token is not one an issuer made.
        for name in ("exp", "nbf", "iat"):
            value = claims.get(name)
            if name in claims and (not isinstance(value, int | float) or isinstance(value, bool)):
                msg = f"token's {name!r} claim is not a number"
                raise InvalidTokenError(msg)
        # No claim grants nothing; a claim of `null` is a claim of the wrong type.
        subject = claims.get("sub")
        return Access.from_scope(
            claims.get("scope", ""),
            expires_at=float(claims["exp"]),
            subject=subject if isinstance(subject, str) and subject else None,
        )


def _jwks_key(jwks: PyJWKClient, kid: object) -> Any:
    """Return the RS256 key the identity provider publishes under `kid`."""
    if not isinstance(kid, str) or not kid:
        msg = "token names no key id (kid)"
        raise InvalidTokenError(msg)
    try:
        # Cached; raises only when the provider cannot be reached or answers nonsense.
        jwks.get_signing_keys()
    except jwt.PyJWTError as exc:
        msg = f"the identity provider's keys are unavailable ({type(exc).__name__})"
        raise KeysUnavailableError(msg) from exc
    try:
        # Refetches the set (rotation) when the id is unknown, at most every 30 s.
        jwk = jwks.get_signing_key(kid)
    except PyJWKClientConnectionError as exc:
        msg = f"the identity provider's keys are unavailable ({type(exc).__name__})"
        raise KeysUnavailableError(msg) from exc
    except jwt.PyJWTError as exc:
        msg = "token signed with a key the identity provider does not publish"
        raise InvalidTokenError(msg) from exc
    # A key published for another algorithm (an EC key, an RS512 key) is not an RS256 key.
    if jwk.algorithm_name != "RS256":
        msg = f"key {kid!r} is not an RS256 key"
        raise InvalidTokenError(msg)
    return jwk.key


def _read_public_key(value: str) -> str:
    """Accept the PEM text itself (with real or escaped newlines) or a path to a PEM file."""
    text = value.strip()
    if text.startswith("-----BEGIN"):
        return text.replace("\\n", "\n")
    path = Path(text).expanduser()
    if path.is_file():
        return path.read_text(encoding="ascii")
    msg = "VITALFLOW_JWT_PUBLIC_KEY is neither a PEM public key nor the path of one"
    raise AuthConfigError(msg)


def build_verifier(settings: Settings) -> TokenVerifier | None:
    """Build the token verifier the settings ask for (None when auth is explicitly off)."""
    mode = settings.auth.strip().lower()
    if mode == "off":
        logger.warning(
            "AUTH IS OFF (VITALFLOW_AUTH=off): every client can read every step event. "
            "Only for the local demo, never with real patient data."
        )
        return None
    if mode != "jwt":
        msg = f"VITALFLOW_AUTH must be 'jwt' or 'off', not {settings.auth!r}"
        raise AuthConfigError(msg)
    secret = settings.jwt_secret or None
    public_key = _read_public_key(settings.jwt_public_key) if settings.jwt_public_key else None
    jwks = _jwks_client(settings.jwt_jwks_url) if settings.jwt_jwks_url else None
    if secret is None and public_key is None and jwks is None:
        msg = (
            "VITALFLOW_AUTH=jwt needs VITALFLOW_JWT_SECRET (HS256), VITALFLOW_JWT_PUBLIC_KEY "
            "or VITALFLOW_JWT_JWKS_URL (RS256); set VITALFLOW_AUTH=off only for the demo"
        )
        raise AuthConfigError(msg)
    if secret is not None and len(secret.encode()) < _MIN_HMAC_KEY_BYTES:
        logger.warning("VITALFLOW_JWT_SECRET is shorter than 32 bytes; use a longer secret")
    return TokenVerifier(
        secret=secret,
        public_key=public_key,
        audience=settings.jwt_audience,
        issuer=settings.jwt_issuer or None,
        jwks=jwks,
    )


def _jwks_client(url: str) -> PyJWKClient:
    try:
        return PyJWKClient(url, timeout=_JWKS_TIMEOUT_S, lifespan=_JWKS_LIFESPAN_S)
    except jwt.PyJWTError as exc:
        msg = f"VITALFLOW_JWT_JWKS_URL must be an http(s) URL: {exc}"
        raise AuthConfigError(msg) from None


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=reason,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def require_access(
    request: Request,
    authorization: Annotated[
        str | None, Header(description="`Bearer <JWT>`; the token's scope decides what is seen")
    ] = None,
    access_token: Annotated[
        str | None,
        Query(description="The JWT, for clients that cannot set headers (browser EventSource)"),
    ] = None,
) -> Access:
    """FastAPI dependency: the caller's access, or 401 when its token is missing or invalid."""
    verifier: TokenVerifier | None = request.app.state.runtime.verifier
    if verifier is None:
        return Access.unrestricted()
    token: str | None = None
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            raise _unauthorized("the Authorization header must be 'Bearer <token>'")
        token = credentials.strip()
    elif access_token:
        token = access_token
    if not token:
        raise _unauthorized("a bearer token is required")
    try:
        return verifier.verify(token)
    except InvalidTokenError as exc:
        raise _unauthorized(str(exc)) from None
    except KeysUnavailableError as exc:
        logger.warning("cannot check a token: %s", exc)
        raise HTTPException(
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=str(exc),
            headers={"Retry-After": "5"},
        ) from None
