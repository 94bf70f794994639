# Copyright (c) kubeha.gce contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Service-account keys, the OAuth2 token endpoint (JWT bearer grant) and bearer tokens."""

from __future__ import annotations

import base64
import json
import secrets
import time
import typing as t

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

GOOGLE_TOKEN_ENDPOINT = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
TOKEN_LIFETIME = 3600
CLOCK_SKEW = 300


class TokenError(Exception):
    """An OAuth2 error answer (RFC 6749 section 5.2)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def new_key(project: str, account: str, token_uri: str) -> tuple[dict[str, t.Any], dict[str, t.Any]]:
    """A service-account JSON key as Google issues it, and the record the simulator keeps."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_id = secrets.token_hex(20)
    email = "%s@%s.iam.gserviceaccount.com" % (account, project)
    client_id = str(secrets.randbelow(10 ** 20))
    key = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": key_id,
        "private_key": private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()).decode(),
        "client_email": email,
        "client_id": client_id,
        "auth_uri": token_uri.rsplit("/", 1)[0] + "/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": token_uri.rsplit("/", 1)[0] + "/certs",
        "client_x509_cert_url": token_uri.rsplit("/", 1)[0] + "/certs/" + email,
    }
    record = {
        "key_id": key_id,
        "email": email,
        "public_key": private.public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
    }
    return key, record


#: Scopes that let a self-signed JWT call the Compute API.
COMPUTE_SCOPES = frozenset(("https://www.googleapis.com/auth/compute", "https://www.googleapis.com/auth/cloud-platform"))
#: The audience Google's client libraries give a self-signed JWT for the Compute API.
COMPUTE_AUDIENCE = "https://compute.googleapis.com/"


def _signed_claims(token: str, keys: t.Mapping[str, t.Mapping[str, str]]) -> dict[str, t.Any]:
    """The claims of a JWT signed (RS256) with a key the simulator issued to its issuer; TokenError otherwise."""
    try:
        header_b64, claims_b64, signature_b64 = token.split(".")
        header = json.loads(_unb64(header_b64))
        claims = json.loads(_unb64(claims_b64))
        signature = _unb64(signature_b64)
    except (ValueError, TypeError):
        raise TokenError("invalid_grant", "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe") from None
    if header.get("alg") != "RS256":
        raise TokenError("invalid_grant", "Invalid JWT Signature.")
    record = keys.get(str(header.get("kid")))
    if record is None:
        # Google looks the key up by the issuer when there is no kid.
        record = next((r for r in keys.values() if r["email"] == claims.get("iss")), None)
    if record is None or record["email"] != claims.get("iss"):
        raise TokenError("invalid_grant", "Invalid grant: account not found")
    public = serialization.load_pem_public_key(record["public_key"].encode())
    try:
        public.verify(signature, ("%s.%s" % (header_b64, claims_b64)).encode(),  # type: ignore[call-arg]
                      padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg]
    except InvalidSignature:
        raise TokenError("invalid_grant", "Invalid JWT Signature.") from None
    return claims


def _check_lifetime(claims: t.Mapping[str, t.Any], now: float) -> None:
    issued, expires = claims.get("iat"), claims.get("exp")
    if not isinstance(issued, (int, float)) or not isinstance(expires, (int, float)) \
            or issued > now + CLOCK_SKEW or expires < now - CLOCK_SKEW or expires - issued > TOKEN_LIFETIME:
        raise TokenError("invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a "
                                          "reasonable timeframe. Check your iat and exp values in the JWT claim.")


def verify_assertion(assertion: str, keys: t.Mapping[str, t.Mapping[str, str]], audience: str,
                     now: float | None = None) -> dict[str, t.Any]:
    """Check a JWT bearer assertion signed with a key the simulator issued; return its claims."""
    now = time.time() if now is None else now
    claims = _signed_claims(assertion, keys)
    # google-auth always addresses Google's token endpoint, wherever token_uri points.
    if claims.get("aud") not in (audience, GOOGLE_TOKEN_ENDPOINT):
        raise TokenError("invalid_grant", "Invalid JWT: audience must be %s" % audience)
    _check_lifetime(claims, now)
    return claims


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")


def verify_self_signed(token: str, keys: t.Mapping[str, t.Mapping[str, str]], audiences: t.Collection[str],
                       now: float | None = None) -> dict[str, t.Any]:
    """Check a self-signed JWT used as the bearer token itself (no token exchange), as Google's client libraries
    send with ``with_always_use_jwt_access(True)``: signed with an issued key, ``iss`` and ``sub`` the account,
    for the Compute API by its ``aud`` or its ``scope`` claim, and short-lived. Returns its claims."""
    now = time.time() if now is None else now
    claims = _signed_claims(token, keys)
    if claims.get("sub", claims.get("iss")) != claims.get("iss"):
        raise TokenError("invalid_grant", "Invalid JWT: sub must be the issuer")
    scopes = set(str(claims.get("scope") or "").split())
    if not scopes & COMPUTE_SCOPES and claims.get("aud") not in audiences:
        raise TokenError("invalid_grant", "Invalid JWT: audience %r or scopes %r do not allow the Compute API"
                         % (claims.get("aud"), sorted(scopes)))
    _check_lifetime(claims, now)
    return claims


def new_token() -> str:
    return "ya29.lab-" + secrets.token_urlsafe(32)
