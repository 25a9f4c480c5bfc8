"""The chaos suite's workload: concurrent writers through Envoy over REST, and the ledger of what
was acknowledged.

Every request goes through `Traffic.call`, which sorts its outcome: 2xx, 503 (allowed during a
fault), any other status (a failure: the rules allow no other 5xx, and this workload never sends
a request that should be refused), or a transport error (a failure: Envoy itself never goes
down). A write counts as acknowledged only on 2xx; any other answer leaves its outcome unknown,
so the read-back accepts either outcome for it, and nothing else.

Each item is written only by the worker that created it, one request at a time, so the ledger
knows exactly which values an item may hold at the end: its last acknowledged value, or a value
sent after it whose answer was not 2xx.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

REQUEST_TIMEOUT = 30.0  # Envoy's route timeout is 15 s: a longer wait is Envoy's answer, not ours


@dataclass
class Problem:
    """One answer the rules do not allow, kept for the failure message."""

    at: float
    op: str
    status: int | str
    body: str


@dataclass
class Traffic:
    """Counts of every answer through Envoy, by operation and status, and the disallowed ones."""

    started: float = field(default_factory=time.monotonic)
    counts: Counter[tuple[str, int]] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    transport_errors: list[Problem] = field(default_factory=list)
    unavailable: Counter[str] = field(default_factory=Counter)  # 503s by ErrorInfo domain and reason
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(
        self, op: str, client: httpx.Client, method: str, url: str, **kwargs: Any
    ) -> httpx.Response | None:
        """Send one request; None on a transport error (recorded)."""
        try:
            response = client.request(method, url, **kwargs)
        except httpx.TransportError as error:
            with self.lock:
                self.transport_errors.append(Problem(self.elapsed(), op, type(error).__name__, str(error)))
            return None
        with self.lock:
            self.counts[(op, response.status_code)] += 1
            if response.status_code == 503:
                self.unavailable[reason_of(response.text)] += 1
            if not (200 <= response.status_code < 300 or response.status_code == 503):
                self.problems.append(Problem(self.elapsed(), op, response.status_code, response.text[:300]))
        return response

    def bad(self) -> int:
        """How many answers so far were neither 2xx nor 503, transport errors included."""
        with self.lock:
            return len(self.problems) + len(self.transport_errors)

    def problem_kinds(self) -> dict[str, int]:
        """The disallowed answers counted by operation, status and ErrorInfo reason."""
        kinds: Counter[str] = Counter()
        with self.lock:
            for problem in [*self.problems, *self.transport_errors]:
                kinds[f"{problem.op} {problem.status} {reason_of(problem.body)}"] += 1
        return dict(kinds.most_common())

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 2)

    def total(self, *, status: int | None = None, ok: bool = False) -> int:
        with self.lock:
            return sum(
                n
                for (_, code), n in self.counts.items()
                if (status is None or code == status) and (not ok or 200 <= code < 300)
            )


def reason_of(body: str) -> str:
    """`domain/REASON` of a google.rpc.Status JSON body's ErrorInfo ("?" if it has none)."""
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        for detail in json.loads(body)["details"]:
            if detail.get("@type", "").endswith("google.rpc.ErrorInfo"):
                return f"{detail.get('domain')}/{detail.get('reason')}"
    return "?"


def version_of(item: dict[str, Any]) -> tuple[str, str, str]:
    """What an item's read-back is compared on: every field the workload writes."""
    attributes = item.get("attributes") or {}
    return (str(item["title"]), str(item["content"]), repr(sorted(attributes.items())))


@dataclass
class ItemRecord:
    id: str
    owner: str
    versions: set[tuple[str, str, str]]  # what it may hold at the end
    deleted: bool = False  # a DELETE was acknowledged
    maybe_deleted: bool = False  # a DELETE was sent and not acknowledged


@dataclass
class UserRecord:
    id: str
    username: str
    email: str
    password: str = field(repr=False)
    access_token: str = field(default="", repr=False)
    refresh_token: str = field(default="", repr=False)
    deleted: bool = False  # its DELETE was acknowledged
    maybe_titles: set[str] = field(default_factory=set)  # creates with an unknown outcome

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.access_token}"}


@dataclass
class Ledger:
    """Every acknowledged write (and every write with an unknown outcome)."""

    users: dict[str, UserRecord] = field(default_factory=dict)  # acknowledged sign-ups, by id
    items: dict[str, ItemRecord] = field(default_factory=dict)  # acknowledged creates, by id
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: Counter[str] = field(default_factory=Counter)  # acknowledged writes by kind

    def ack(self, kind: str) -> None:
        with self.lock:
            self.acked[kind] += 1


def new_client(base_url: str, local_address: str) -> httpx.Client:
    """A client whose connections come from `local_address` (a 127.x address), so Envoy's
    per-client login rate limit and auth's per-IP throttling see each writer apart."""
    transport = httpx.HTTPTransport(local_address=local_address)
    return httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT, transport=transport)


class Writer:
    """One concurrent writer: signs up, logs in, then creates, updates, deletes and reads its own
    items and profile until told to stop; now and then it signs up another account."""

    OPS = ("create", "update", "delete", "profile", "signup")
    WEIGHTS = (40, 30, 12, 15, 2)
    MAX_ACCOUNTS = 3  # sign-ups per writer (argon2 is the costliest request by far)

    def __init__(
        self,
        number: int,
        client: httpx.Client,
        traffic: Traffic,
        ledger: Ledger,
        stop: threading.Event,
        *,
        pause: tuple[float, float] = (0.02, 0.06),
    ) -> None:
        self.number = number
        self.client = client
        self.traffic = traffic
        self.ledger = ledger
        self.stop = stop
        self.pause = pause
        self.rng = random.Random(number)  # a workload, not a secret
        self.user: UserRecord | None = None
        self.live: list[ItemRecord] = []  # its items that may still be updated or deleted
        self.serial = 0
        self.accounts = 0

    # ---- helpers

    def _sleep(self, seconds: float) -> None:
        self.stop.wait(seconds)

    def _next(self) -> int:
        self.serial += 1
        return self.serial

    def sign_up(self) -> UserRecord | None:
        """A fresh account, acknowledged and logged in; None if told to stop first."""
        while not self.stop.is_set():
            username = f"c{self.number}_{uuid.uuid4().hex[:12]}"
            email = f"{username}@example.com"
            password = secrets.token_urlsafe(16)
            body = {"username": username, "email": email, "password": password}
            response = self.traffic.call("signup", self.client, "POST", "/api/v1/users", json=body)
            if response is not None and response.status_code == 200:
                user = UserRecord(response.json()["id"], username, email, password)
                with self.ledger.lock:
                    self.ledger.users[user.id] = user
                self.ledger.ack("signup")
                self.accounts += 1
                if self.log_in(user):
                    return user
                return None
            self._sleep(0.2)  # unknown outcome: that name may exist; try another one
        return None

    def log_in(self, user: UserRecord) -> bool:
        while not self.stop.is_set():
            body = {"username": user.username, "password": user.password}
            response = self.traffic.call("login", self.client, "POST", "/api/v1/auth/login", json=body)
            if response is not None and response.status_code == 200:
                user.access_token = response.json()["access_token"]
                return True
            self._sleep(0.3)  # 30 writers retrying stay under Envoy's login rate limit (200/s)
        return False

    # ---- operations

    def create(self, user: UserRecord) -> None:
        n = self._next()
        title = f"chaos {self.number}-{n}"
        body = {
            "title": title,
            "content": f"v0 {secrets.token_hex(8)}",
            "attributes": {"w": self.number, "v": 0},
        }
        response = self.traffic.call(
            "create", self.client, "POST", "/api/v1/data", json=body, headers=user.headers
        )
        if response is not None and response.status_code == 200:
            item = response.json()
            record = ItemRecord(item["id"], user.id, {version_of(item)})
            if version_of(item) != version_of(body):
                record.versions = set()  # acknowledged with other values than sent: corrupted
            with self.ledger.lock:
                self.ledger.items[record.id] = record
            self.ledger.ack("create")
            self.live.append(record)
        else:
            user.maybe_titles.add(title)

    def update(self, user: UserRecord) -> None:
        if not self.live:
            return self.create(user)
        record = self.rng.choice(self.live)
        title = next(iter(record.versions))[0] if record.versions else ""
        v = self._next()
        body = {"content": f"v{v} {secrets.token_hex(8)}", "attributes": {"w": self.number, "v": v}}
        sent = version_of({"title": title, **body})
        response = self.traffic.call(
            "update",
            self.client,
            "PATCH",
            f"/api/v1/data/{record.id}",
            params={"update_mask": "content,attributes"},
            json=body,
            headers=user.headers,
        )
        with self.ledger.lock:
            if response is not None and response.status_code == 200:
                # Acknowledged: from now on the item holds this, whatever was in doubt before.
                record.versions = {sent} if version_of(response.json()) == sent else set()
                self.ledger.acked["update"] += 1
            else:
                record.versions.add(sent)  # unknown outcome: either is fine at the end
        return None

    def delete(self, user: UserRecord) -> None:
        if not self.live:
            return self.create(user)
        record = self.live.pop(self.rng.randrange(len(self.live)))
        response = self.traffic.call(
            "delete", self.client, "DELETE", f"/api/v1/data/{record.id}", headers=user.headers
        )
        with self.ledger.lock:
            if response is not None and response.status_code == 200:
                record.deleted = True
                self.ledger.acked["delete"] += 1
            else:
                record.maybe_deleted = True  # never touched again
        return None

    def profile(self, user: UserRecord) -> None:
        response = self.traffic.call("profile", self.client, "GET", "/api/profile", headers=user.headers)
        if response is not None and response.status_code == 200:
            me = response.json()
            if (me.get("id"), me.get("username"), me.get("email")) != (user.id, user.username, user.email):
                with self.traffic.lock:
                    self.traffic.problems.append(
                        Problem(self.traffic.elapsed(), "profile", 200, f"wrong profile: {me}")
                    )

    def run(self) -> None:
        self.user = self.sign_up()
        while self.user is not None and not self.stop.is_set():
            op = self.rng.choices(self.OPS, self.WEIGHTS)[0]
            if op == "signup" and self.accounts < self.MAX_ACCOUNTS:
                fresh = self.sign_up()
                if fresh is None:
                    break
                self.user, self.live = fresh, []
            elif op != "signup":
                getattr(self, op)(self.user)
            self._sleep(self.rng.uniform(*self.pause))
