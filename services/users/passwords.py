"""argon2id password hashing off the event loop.

Hashing is deliberately slow (tens of milliseconds and 64 MiB with the defaults), so every hash
and verify runs in a small dedicated thread pool: the event loop keeps serving other calls, and
the pool's size bounds the memory that concurrent logins can take. argon2-cffi releases the GIL
while it hashes.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

T = TypeVar("T")


class Passwords:
    """Hashes and verifies passwords with argon2id.

    The default `PasswordHasher()` uses argon2-cffi's recommended parameters (RFC 9106 low-memory
    profile). Tests pass a cheaper hasher explicitly; production never lowers the cost silently.
    """

    def __init__(self, hasher: PasswordHasher | None = None, *, threads: int | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._pool = ThreadPoolExecutor(
            max_workers=threads or max(2, os.cpu_count() or 2), thread_name_prefix="argon2"
        )
        self._dummy_hash: str | None = None

    async def _call(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    async def warm_up(self) -> None:
        """Prepare the hash that `dummy_verify` checks against, with the same parameters."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(24))

    async def hash(self, password: str) -> str:
        return str(await self._call(partial(self._hasher.hash, password)))

    async def verify(self, password_hash: str, password: str) -> bool:
        """True when `password` matches; False on a mismatch or an unreadable hash."""
        return await self._run_verify(password_hash, password)

    async def dummy_verify(self, password: str) -> None:
        """Spend the same time as a real verify, for an account that does not exist, so an
        unknown username cannot be told from a wrong password by timing."""
        await self.warm_up()
        assert self._dummy_hash is not None
        await self._run_verify(self._dummy_hash, password)

    async def _run_verify(self, password_hash: str, password: str) -> bool:
        def verify() -> bool:
            try:
                return bool(self._hasher.verify(password_hash, password))
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await self._call(verify)

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        try:
            return bool(self._hasher.check_needs_rehash(password_hash))
        except (InvalidHashError, ValueError):
            return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
