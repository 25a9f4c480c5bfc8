"""The users service as `make bench` runs it: argon2id with the cheapest parameters.

    python -m benchmarks.cheap_hash_users

Bench stack only (never `make run` or a deployment): CreateUser and the seeding of 10,000 users
would otherwise measure argon2 (tens of ms of CPU per hash by design), not the service. argon2id
stays the algorithm; `time_cost=1, memory_cost=64 KiB, parallelism=1` makes a hash cost tens of
µs. Done here, by replacing the default hasher before the service starts, because the service has
no setting that lowers the cost (on purpose: production never lowers it silently).
"""

from __future__ import annotations

import sys

from argon2 import PasswordHasher

from services.users import passwords


class CheapHasher(PasswordHasher):
    """argon2id at its cheapest: what `Passwords()` builds in the bench stack's users service."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=64, parallelism=1)


passwords.PasswordHasher = CheapHasher  # type: ignore[attr-defined,assignment]

if __name__ == "__main__":
    from services.users.__main__ import main

    sys.exit(main())
