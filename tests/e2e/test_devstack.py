"""`make run` (python -m devstack): it starts the stack, prints where it is, and never
leaves a process behind: not on Ctrl-C, not on SIGTERM, not when it is killed outright, and not
when one of its children dies."""

from __future__ import annotations

import email
import email.policy
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient

from tests.support import free_port, mail_token

pytestmark = pytest.mark.e2e


class Devstack:
    """`python -m devstack --free-ports` as a child of the test, output collected."""

    def __init__(self, data_dir: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "--free-ports", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.output):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {text!r} in the output:\n{''.join(self.output)}")
            try:
                self.output.append(self.lines.get(timeout=remaining))
            except queue.Empty:
                continue

    def finish(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return code

    def children(self) -> list[int]:
        return [pid for pid in _pids() if _parent(pid) == self.process.pid]

    @property
    def text(self) -> str:
        return "".join(self.output)


def _pids() -> list[int]:
    return [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields after "pid (comm)": state, ppid, ...


def _parent(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if fields else -1


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _gone(pid: int) -> bool:
    fields = _stat(pid)
    return fields is None or fields[0] in ("Z", "X")  # exited (a zombie waits only for its reaper)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        alive = [pid for pid in pids if not _gone(pid)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)  # polling interval


@pytest.fixture
def devstack(tmp_path: Path) -> Iterator[Devstack]:
    running = Devstack(tmp_path / "var")
    yield running
    if running.process.poll() is None:
        os.killpg(running.process.pid, signal.SIGKILL)
        running.process.wait(10)


def _rest_url(text: str) -> str:
    match = re.search(r"REST \+ gRPC\s+(http://127\.0\.0\.1:\d+)", text)
    assert match, text
    return match[1]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_make_run_starts_everything_and_stops_it_all(devstack: Devstack, tmp_path: Path, sig: int) -> None:
    devstack.wait_for("Press Ctrl-C")
    assert httpx.get(f"{_rest_url(devstack.text)}/healthz").status_code == 200
    children = devstack.children()
    assert len(children) >= 2, devstack.text  # at least Envoy and one service
    for log in ("envoy.log",):
        assert (tmp_path / "var" / "logs" / log).exists()
    assert (tmp_path / "var" / "envoy.yaml").exists()

    devstack.process.send_signal(sig)
    assert devstack.finish() == 0, devstack.text
    assert "Stopped." in devstack.text
    assert _wait_gone(children, 5) == []


def test_killing_make_run_outright_takes_its_children_with_it(devstack: Devstack) -> None:
    devstack.wait_for("Press Ctrl-C")
    children = devstack.children()
    assert children
    devstack.process.kill()  # SIGKILL: no handler runs; the kernel tells the children (PDEATHSIG)
    devstack.finish()
    assert _wait_gone(children, 30) == []


def test_a_child_dying_stops_the_rest(devstack: Devstack) -> None:
    devstack.wait_for("Press Ctrl-C")
    children = devstack.children()
    victim = next(pid for pid in children if "services.users" in _cmdline(pid))
    os.kill(victim, signal.SIGKILL)
    assert devstack.finish() == 1
    assert "users exited unexpectedly" in devstack.text
    assert _wait_gone(children, 5) == []


def test_the_embedded_mongodb_stopping_is_an_outage_not_a_crash(devstack: Devstack, tmp_path: Path) -> None:
    """Stopping nx-27017 under `make run` leaves the rest running: data answers 503 over REST, and
    recovers by itself once nx-27017 is started again with the command make run prints."""
    devstack.wait_for("Press Ctrl-C")
    rest = _rest_url(devstack.text)
    children = devstack.children()
    mongo = next(pid for pid in children if "nx-27017" in _cmdline(pid))
    client = httpx.Client(base_url=rest, timeout=15)
    name = f"outage{time.monotonic_ns()}"
    password = "correct horse battery"
    assert (
        client.post(
            "/api/v1/users", json={"username": name, "email": f"{name}@example.com", "password": password}
        ).status_code
        == 200
    )
    token = client.post("/api/v1/auth/login", json={"username": name, "password": password}).json()[
        "access_token"
    ]
    headers = {"authorization": f"Bearer {token}"}
    item = client.post("/api/v1/data", json={"title": "kept"}, headers=headers).json()

    os.kill(mongo, signal.SIGTERM)
    devstack.wait_for("the data service recovers by itself")
    down = client.get(f"/api/v1/data/{item['id']}", headers=headers)
    assert down.status_code == 503 and down.json()["code"] == 14, down.text
    assert devstack.process.poll() is None  # make run is still up
    message = devstack.text[devstack.text.index("Start it again") :].splitlines()
    restarted = subprocess.Popen(
        shlex.split(message[1]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while (back := client.get(f"/api/v1/data/{item['id']}", headers=headers)).status_code != 200:
            assert time.monotonic() < deadline, back.text
            time.sleep(0.2)  # polling interval
        assert back.json()["title"] == "kept"
    finally:
        os.killpg(restarted.pid, signal.SIGTERM)
        restarted.wait(10)
    devstack.process.send_signal(signal.SIGINT)
    assert devstack.finish() == 0, devstack.text


@pytest.mark.parametrize("quiet", [True, False], ids=["as make run starts it", "nx-27017 alone"])
def test_nx_27017_under_make_run_does_not_log_every_command(tmp_path: Path, quiet: bool) -> None:
    """Health pings (every 2 s under `make run`) leave no line in nx-27017's log; nx-27017 started
    directly logs two per command, which shows the check can see them."""
    port = free_port()
    command = (
        [sys.executable, "-m", "devstack.nx27017"]
        if quiet
        else [str(Path(sys.executable).with_name("nx-27017"))]
    )
    log = tmp_path / "nx-27017.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [
                *command,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--db",
                str(tmp_path / "nx.db"),
                "--pid-file",
                str(tmp_path / "nx.pid"),
                "--log-file",
                os.devnull,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        client: MongoClient[dict[str, object]] = MongoClient(
            f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=20_000
        )
        for _ in range(5):
            assert client.admin.command("ping")["ok"] == 1
        client["pinexa"]["items"].insert_one({"title": "kept"})
        client.close()
    finally:
        server.terminate()
        server.wait(10)
    text = log.read_text()
    if quiet:
        assert "Calling db.command" not in text and " - INFO - " not in text, text
    else:
        assert text.count("Calling db.command") >= 5, text


def test_the_banner_commands_work_as_printed(devstack: Devstack) -> None:
    """Every grpcurl and curl command `make run` prints runs as pasted, from where make run runs
    (grpcurl is not on PATH, so the banner names .venv/bin/grpcurl)."""
    devstack.wait_for("Press Ctrl-C")
    commands = re.findall(
        r"((?:\S*/)?grpcurl -plaintext \S+ list|curl http://\S+)$", devstack.text, re.MULTILINE
    )
    assert len(commands) >= 4, devstack.text  # Envoy's, and each service's
    for command in commands:
        assert not command.startswith("grpcurl "), command
        ran = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)
        assert ran.returncode == 0, (command, ran.stdout, ran.stderr)
        assert ran.stdout.strip(), command
    devstack.process.send_signal(signal.SIGINT)
    assert devstack.finish() == 0, devstack.text


def test_a_malformed_shared_setting_is_refused_by_name_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher reads the shared settings it needs (shutdown timing, JWT issuer) with the kit's
    loader, so a malformed one is the loader's message and status 1, and every child is stopped."""
    monkeypatch.setenv("SHUTDOWN_GRACE_SECONDS", "soon")
    running = Devstack(tmp_path / "var")
    try:
        assert running.finish(timeout=60) == 1
        assert (
            "Could not start Pinexa: configuration error: SHUTDOWN_GRACE_SECONDS must be a number, got 'soon'"
            in running.text
        )
        assert "Traceback" not in running.text
        assert running.children() == []
    finally:
        if running.process.poll() is None:
            os.killpg(running.process.pid, signal.SIGKILL)
            running.process.wait(10)


def _mail_files(directory: Path, count: int, timeout: float = 20) -> list[Path]:
    deadline = time.monotonic() + timeout
    while True:
        files = sorted(directory.glob("*.eml")) if directory.exists() else []
        if len(files) >= count or time.monotonic() > deadline:
            return files
        time.sleep(0.1)  # polling interval


def test_make_run_catches_mail_in_var_mail_and_the_link_verifies(devstack: Devstack, tmp_path: Path) -> None:
    """The tour as a newcomer takes it: sign up over REST, open var/mail/*.eml, verify."""
    devstack.wait_for("Press Ctrl-C")
    assert re.search(
        r"Mail \(SMTP\)\s+smtp://127\.0\.0\.1:\d+\s+every mail .* lands in \S*mail/\*\.eml", devstack.text
    )
    rest = _rest_url(devstack.text)
    password = "correct horse battery"
    created = httpx.post(
        f"{rest}/api/v1/users", json={"username": "ada", "email": "ada@example.com", "password": password}
    )
    assert created.status_code == 200, created.text
    assert created.json().get("email_verified", False) is False
    [eml] = _mail_files(tmp_path / "var" / "mail", 1)
    message = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    assert message["To"] == "ada@example.com"
    token = mail_token(message)  # type: ignore[arg-type]
    assert f"{rest}/verify-email?token=" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]

    verified = httpx.post(f"{rest}/api/v1/auth/email:verify", json={"token": token})
    assert verified.status_code == 200, verified.text
    assert verified.json() == {
        "user_id": created.json()["id"],
        "email": "ada@example.com",
        "email_verified": True,
    }
    again = httpx.post(f"{rest}/api/v1/auth/email:verify", json={"token": token})
    assert again.status_code == 401 and again.json()["details"][0]["reason"] == "MAIL_TOKEN_USED", again.text

    login = httpx.post(f"{rest}/api/v1/auth/login", json={"username": "ada", "password": password}).json()
    profile = httpx.get(f"{rest}/api/profile", headers={"authorization": f"Bearer {login['access_token']}"})
    assert profile.json()["email_verified"] is True and profile.json()["email_verified_at"]
