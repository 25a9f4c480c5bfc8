"""The FastAPI peers of `make bench` do GetUser's work for real: a valid ES256 token reads the row
from PostgreSQL, a token whose signature does not verify is refused with 401, and each answer is
counted on /_bench/counters (which is how the harness's 0-errors check can fail).

Real uvicorn processes on free ports, a real JWKS served over HTTP, a throwaway PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jwt
import pytest
import sqlalchemy
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy.engine import make_url

from services.users.schema import metadata, users

ROOT = Path(__file__).resolve().parents[2]
USER_ID = "00000000-0000-4000-8000-000000000001"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def jwks_url(signing_key: ec.EllipticCurvePrivateKey) -> Iterator[str]:
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(signing_key.public_key()))
    body = json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def database(postgres_database_factory: Callable[[str], str]) -> str:
    url = make_url(postgres_database_factory("pinexa_bench_peers"))
    engine = sqlalchemy.create_engine(url.set(drivername="postgresql+psycopg"))
    metadata.create_all(engine, tables=[users])
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            users.insert().values(
                id=USER_ID, username="ada", email="ciphertext", email_lookup="x", password_hash="h",
                display_name="", role="user", version=1, created_at=now, updated_at=now,
            )
        )  # fmt: skip
    engine.dispose()
    return url.render_as_string(hide_password=False).split("://", 1)[1]


def token(key: ec.EllipticCurvePrivateKey) -> str:
    now = int(time.time())
    claims = {"sub": USER_ID, "iss": "pinexa-auth", "aud": "pinexa", "iat": now, "exp": now + 300}
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "k1"})


def get(url: str, bearer: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {bearer}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (local URL)
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), json.loads(error.read())


@pytest.mark.parametrize(
    ("app", "scheme"),
    [
        ("benchmarks.peers.orm_app:app", "postgresql+psycopg"),
        ("benchmarks.peers.psycopg_app:app", "postgresql"),
    ],
)
def test_peer_reads_the_row_and_refuses_a_bad_signature(
    app: str, scheme: str, database: str, jwks_url: str, signing_key: ec.EllipticCurvePrivateKey
) -> None:
    port = free_port()
    env = {**os.environ, "PEER_DATABASE_URL": f"{scheme}://{database}", "PEER_JWKS_URL": jwks_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, process.communicate()[0]
            try:
                urllib.request.urlopen(f"{base}/_bench/counters", timeout=1).close()  # noqa: S310
                break
            except OSError:
                assert time.monotonic() < deadline, "the peer did not start"
                time.sleep(0.1)  # polling interval

        status, body = get(f"{base}/api/v1/users/{USER_ID}", token(signing_key))
        assert status == 200, body
        assert body["id"] == USER_ID and body["username"] == "ada"

        forged = token(ec.generate_private_key(ec.SECP256R1()))  # same kid, another key
        status, body = get(f"{base}/api/v1/users/{USER_ID}", forged)
        assert status == 401, body

        status, body = get(f"{base}/_bench/counters", "")
        assert body == {"ok": 1, "errors": 1}
    finally:
        process.terminate()
        process.wait(10)
