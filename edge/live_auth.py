"""Who may see the live view: a bearer token or a basic-auth user and password (see :mod:`edge.live`)."""

from __future__ import annotations

import base64
import hmac
import urllib.parse
from dataclasses import dataclass, field

from edge.errors import ConfigError

__all__ = ["LiveAuth", "COOKIE"]

COOKIE = "edgecam_token"  # a browser's bearer token, set once from /?token=TOKEN


@dataclass(frozen=True)
class LiveAuth:
    """A bearer token or a basic-auth user and password for the page, the stream and ``/metrics``.

    Example:
        >>> LiveAuth.parse("basic:operator:s3cret").kind
        'basic'
    """

    kind: str
    secret: str = field(repr=False)  # the token, or "user:password"

    @classmethod
    def parse(cls, spec: str) -> "LiveAuth":
        """``bearer:TOKEN`` (8 characters at least) or ``basic:USER:PASSWORD``.

        Raises:
            ConfigError: any other form (the secret is not echoed).
        """
        kind, _, secret = str(spec).partition(":")
        if kind == "bearer" and len(secret) >= 8 and secret.isprintable() and " " not in secret:
            return cls("bearer", secret)
        user, sep, password = secret.partition(":")
        if kind == "basic" and user and sep and password and ":" not in user:
            return cls("basic", secret)
        if kind in ("bearer", "basic"):
            got = f"a {kind} value that does not fit"
        else:  # the rest may be a secret: only the part before the first colon is shown
            got = f"kind {kind!r}" if ":" in str(spec) else "a value without 'bearer:' or 'basic:'"
        raise ConfigError("--live-auth expects 'bearer:TOKEN' (a token of 8 or more printable characters, no spaces) or "
                          f"'basic:USER:PASSWORD'; received {got}")

    def allows(self, authorization: str | None, cookie: str | None) -> bool:
        """Whether an ``Authorization`` header or the token cookie proves it."""
        scheme, _, value = (authorization or "").partition(" ")
        if self.kind == "bearer":
            offered = value.strip() if scheme.lower() == "bearer" else _cookie(cookie, COOKIE)
            return offered is not None and hmac.compare_digest(offered.encode(), self.secret.encode())
        if scheme.lower() != "basic":
            return False
        try:
            offered = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        return hmac.compare_digest(offered.encode(), self.secret.encode())


def _cookie(header: str | None, name: str) -> str | None:
    for part in (header or "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return urllib.parse.unquote(value)
    return None
