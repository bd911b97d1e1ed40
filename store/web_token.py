"""The credential of a worker's privileged web endpoints: ``/sql``, ``/explain`` and the
backtest writes.

A client's address is no credential: a reverse proxy on the worker's host makes every client a
loopback one. The token is ``pipeline.web_token`` when it is set; otherwise a worker makes a
random one when it starts and writes it to ``Settings.web_token_path``, readable by its own
user only, where the CLI of that user on that machine finds it. Clients send it as
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import os
import secrets

from config.settings import Settings

HEADER = "Authorization"


def issue(settings: Settings) -> str:
    """The worker's token: the configured one, else a new one written to the token file."""
    configured = settings.pipeline.web_token.get_secret_value()
    if configured:
        return configured
    token = secrets.token_urlsafe(32)
    path = settings.web_token_path
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        out.write(token)
    os.replace(temporary, path)
    return token


def credentials(settings: Settings) -> dict[str, str]:
    """The header a client sends: the configured token, else the local worker's from its
    file; none when neither exists (the worker then refuses with 401)."""
    token = settings.pipeline.web_token.get_secret_value()
    if not token:
        try:
            token = settings.web_token_path.read_text(encoding="utf-8").strip()
        except OSError:
            return {}
    return {HEADER: f"Bearer {token}"}


def authorized(header: str | None, token: str) -> bool:
    """Whether a request's ``Authorization`` header carries ``token`` (constant time)."""
    expected = f"Bearer {token}".encode()
    return bool(token) and header is not None and hmac.compare_digest(header.encode(), expected)
