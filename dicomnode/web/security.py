"""Who may use the web side, and how a browser's POST is told from a forged one.

- **Token** (``http.token``; required by the configuration off loopback): scripts and Prometheus send
  ``Authorization: Bearer <token>``; a browser logs in once with the token and gets a session cookie
  (HttpOnly, SameSite=Strict) whose value is an HMAC of the token, so changing the token logs everyone out.
  ``/healthz`` and ``/readyz`` stay open for orchestrators' probes; they reveal no patient data.
- **Host check** when bound to loopback: the Host header must name a loopback address (or the host of
  ``http.public_origin``). This defeats DNS rebinding, where a hostile web page gets a name of its own to
  resolve to 127.0.0.1.
- **Forged POSTs (CSRF)**: every POST needs an Origin header (or, lacking one, a Referer) naming this very
  origin (or ``http.public_origin``, the origin browsers see behind a reverse proxy), and forms carry a CSRF
  token (an HMAC of the session with a secret made at start-up) that a page of another origin cannot read.
  The page has no JavaScript, and a Content-Security-Policy forbids any.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from starlette.requests import Request

from dicomnode.config import HttpSection, is_loopback

SESSION_COOKIE = "kneealign_session"
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def _mac(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def host_name(host_header: str) -> str:
    """The host part of a Host header: ``[::1]:8080`` -> ``::1``, ``localhost:8080`` -> ``localhost``."""
    host = host_header.strip()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Security:
    def __init__(self, http: HttpSection) -> None:
        self._token = http.token.get_secret_value() if http.token is not None else None
        self.loopback_only = is_loopback(http.bind)
        self.public_origin = http.public_origin
        self._public_host = urlsplit(http.public_origin).netloc if http.public_origin else None
        self._csrf_key = secrets.token_bytes(32)

    @property
    def token_required(self) -> bool:
        return self._token is not None

    # -- requests ---------------------------------------------------------------------------------------
    def host_allowed(self, request: Request) -> bool:
        host = request.headers.get("host", "")
        return not self.loopback_only or is_loopback(host_name(host)) or host.lower() == self._public_host

    def session_value(self) -> str:
        """The cookie a browser gets after logging in with the token."""
        assert self._token is not None
        return _mac(self._token.encode(), "kneealign-session")

    def token_matches(self, candidate: str) -> bool:
        return self._token is not None and hmac.compare_digest(candidate.encode(), self._token.encode())

    def authenticated(self, request: Request) -> bool:
        if self._token is None:
            return True
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.token_matches(credentials.strip()):
            return True
        cookie = request.cookies.get(SESSION_COOKIE, "")
        return bool(cookie) and hmac.compare_digest(cookie.encode(), self.session_value().encode())

    def csrf_token(self, request: Request) -> str:
        """The token forms carry; bound to the session cookie when there is one."""
        return _mac(self._csrf_key, request.cookies.get(SESSION_COOKIE, "") or "no-session")

    def same_origin(self, request: Request) -> bool:
        """True if the POST comes from a page of this origin (Origin header, else Referer)."""
        allowed = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower(), self.public_origin}
        origin = request.headers.get("origin")
        if origin is None:
            referer = urlsplit(request.headers.get("referer", ""))
            origin = f"{referer.scheme}://{referer.netloc}" if referer.scheme and referer.netloc else None
        return origin is not None and origin.lower() in allowed

    def post_allowed(self, request: Request, csrf: str | None) -> bool:
        return self.same_origin(request) and csrf is not None and hmac.compare_digest(
            csrf.encode(), self.csrf_token(request).encode())
