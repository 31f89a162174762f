"""Annotator accounts on a Label Studio server, so a team does not share one login.

Small on purpose: `add_user` makes an account with a password (generated unless given) and
returns it once; `list_users` names who is there. Who annotated what comes back with each
annotation (`Annotation.annotator`), which is what multi-annotator handling builds on.
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from annotations.client import LabelStudioClient
from annotations.errors import AlreadyExists, LabelStudioError

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
MIN_PASSWORD = 8  # Label Studio's own minimum


@dataclass(frozen=True)
class User:
    id: int
    email: str


@dataclass(frozen=True)
class NewUser:
    """An account just made; the password is shown to whoever made it, once, and kept nowhere."""

    id: int
    email: str
    password: str

    def __repr__(self) -> str:  # keep the password out of tracebacks and logs
        return f"NewUser(id={self.id}, email={self.email!r}, password=***)"


def list_users(client: LabelStudioClient) -> list[User]:
    return [User(u["id"], u["email"]) for u in client.list_users()]


def add_user(client: LabelStudioClient, email: str, password: str | None = None) -> NewUser:
    """Create an annotator account on the server; raises AlreadyExists, or LabelStudioError with the reason."""
    email = email.strip().lower()
    if not _EMAIL.match(email):
        raise LabelStudioError(f"{email!r} is not an e-mail address", "give the annotator's e-mail, e.g. ann@lab.org")
    if password is not None and len(password) < MIN_PASSWORD:
        raise LabelStudioError(f"The password needs at least {MIN_PASSWORD} characters")
    if any(u.email == email for u in list_users(client)):
        raise AlreadyExists(f"Label Studio at {client.url} already has a user {email}",
                         "log in as that user, or pick another e-mail")
    password = password or secrets.token_urlsafe(12)
    client.sign_up(email, password)
    made = next((u for u in list_users(client) if u.email == email), None)
    if made is None:
        raise LabelStudioError(f"Label Studio did not create {email}")
    return NewUser(made.id, email, password)
