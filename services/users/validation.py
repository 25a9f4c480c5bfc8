"""Input rules for accounts: plain functions, no I/O, so they are unit-tested without a server.

Each `check_*` adds a field violation to a `Violations` collector rather than raising, so one
response names every bad field at once. Messages never echo the value (it may be a password or
personal data).
"""

from __future__ import annotations

import re
import unicodedata

USERNAME_MIN = 3
USERNAME_MAX = 32
PASSWORD_MIN = 10
PASSWORD_MAX = 256
DISPLAY_NAME_MAX = 100
EMAIL_MAX = 254
EMAIL_LOCAL_MAX = 64

_USERNAME = re.compile(r"[a-z0-9_.-]+")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_TOP_LEVEL = re.compile(r"[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}")


def normalize_username(raw: str) -> str:
    """Usernames are compared and stored lower-cased; surrounding spaces are dropped."""
    return raw.strip().lower()


def normalize_email(raw: str) -> str:
    """The address as the user typed it, without surrounding spaces (kept for display)."""
    return raw.strip()


def email_key(email: str) -> str:
    """What makes two addresses 'the same' for uniqueness and login: the lower-cased address."""
    return email.strip().lower()


def username_problem(username: str) -> str | None:
    """Why a normalized username is unacceptable, or None."""
    if not USERNAME_MIN <= len(username) <= USERNAME_MAX:
        return f"must be {USERNAME_MIN} to {USERNAME_MAX} characters long"
    if not _USERNAME.fullmatch(username):
        return "may contain only a-z, 0-9, '_', '.' and '-'"
    return None


def email_problem(email: str) -> str | None:
    """Why a normalized address is unacceptable, or None. ASCII addresses only: an
    internationalized domain must be given in its xn-- form."""
    if not email:
        return "is required"
    if len(email) > EMAIL_MAX:
        return f"must be at most {EMAIL_MAX} characters long"
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        return "must be an e-mail address like name@example.com"
    if len(local) > EMAIL_LOCAL_MAX or not _EMAIL_LOCAL.fullmatch(local):
        return "must be an e-mail address like name@example.com"
    labels = domain.split(".")
    if len(labels) < 2 or not all(_DOMAIN_LABEL.fullmatch(label) for label in labels):
        return "must be an e-mail address like name@example.com"
    if not _TOP_LEVEL.fullmatch(labels[-1]):
        return "must be an e-mail address like name@example.com"
    return None


def password_problem(password: str) -> str | None:
    if len(password) < PASSWORD_MIN:
        return f"must be at least {PASSWORD_MIN} characters long"
    if len(password) > PASSWORD_MAX:
        return f"must be at most {PASSWORD_MAX} characters long"
    return None


def display_name_problem(display_name: str) -> str | None:
    if len(display_name) > DISPLAY_NAME_MAX:
        return f"must be at most {DISPLAY_NAME_MAX} characters long"
    if any(unicodedata.category(ch) == "Cc" for ch in display_name):
        return "must not contain control characters"
    return None
