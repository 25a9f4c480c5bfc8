"""Builds the web console (console/) for Envoy to serve at `/`: `make run` and the console tests.

The build is from the lockfile (`npm ci`, only when node_modules does not match
console/package-lock.json), then `vite build` into console/dist/, then the bundle gzipped
(Envoy sends it with content-encoding: gzip, as it does Swagger UI's). Both steps are skipped when
nothing they read changed since the last build (a digest of the sources in dist/.source-digest),
so `make run` rebuilds only after an edit, and says what it does while it does it.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
CONSOLE = ROOT / "console"
DIST = CONSOLE / "dist"
NODE_MAJOR = 20  # the Node.js version the console needs at least (README "The web console")
# What the build reads: a change to any of these rebuilds the console.
SOURCES = ("index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts", "src")
LOCK_STAMP = CONSOLE / "node_modules" / ".pinexa-lock-digest"
SOURCE_STAMP = DIST / ".source-digest"


class ConsoleBuildError(RuntimeError):
    """The console could not be built (no Node.js, or npm or vite failed); says why."""


def _digest(paths: list[Path]) -> str:
    sha = hashlib.sha256()
    for path in sorted(paths):
        sha.update(path.relative_to(CONSOLE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()


def source_digest() -> str:
    files: list[Path] = []
    for name in SOURCES:
        path = CONSOLE / name
        files += [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return _digest(files)


def node_version(node: str) -> tuple[int, ...]:
    text = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.match(r"v(\d+)\.(\d+)", text.strip())
    return tuple(int(part) for part in match.groups()) if match else (0,)


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise ConsoleBuildError(
            f"{name} is not on PATH: the console needs Node.js {NODE_MAJOR}+ with npm "
            "(Debian: apt-get install nodejs npm)"
        )
    return found


def _run(argv: list[str], out: IO[str], *, count_fetches: bool = False) -> None:
    """Runs `argv` in console/, its output to `out`. With `count_fetches` (npm ci at
    --loglevel=http), the per-package fetch lines become a running count, so a slow first install
    shows progress without printing hundreds of lines."""
    env = {**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1", "NO_UPDATE_NOTIFIER": "1"}
    out.flush()
    fetched = 0
    with subprocess.Popen(
        argv, cwd=CONSOLE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if count_fetches and line.startswith("npm http fetch"):
                fetched += 1
                if fetched % 50 == 0:
                    out.write(f"    ... {fetched} packages fetched\n")
                    out.flush()
                continue
            out.write(line)
            out.flush()
    if child.returncode != 0:
        command = " ".join([Path(argv[0]).name, *argv[1:]])
        raise ConsoleBuildError(f"`{command}` failed (exit {child.returncode}); its output is above")


def install(out: IO[str] = sys.stdout) -> None:
    """`npm ci` unless node_modules already holds what package-lock.json says."""
    node = _tool("node")
    if node_version(node)[0] < NODE_MAJOR:
        raise ConsoleBuildError(f"the console needs Node.js {NODE_MAJOR}+, {node} is older")
    npm = _tool("npm")
    lock = _digest([CONSOLE / "package-lock.json"])
    if LOCK_STAMP.exists() and LOCK_STAMP.read_text() == lock:
        return
    out.write("==> console: npm ci (its packages, from package-lock.json; the first time a minute or two)\n")
    _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=http"], out, count_fetches=True)
    LOCK_STAMP.write_text(lock)


def run_codegen(out: IO[str] = sys.stdout) -> None:
    """src/api/generated.ts from ../generated/openapi.json (`make generate`; console/openapi-config.cjs)."""
    _run([_tool("npx"), "--no-install", "rtk-query-codegen-openapi", "openapi-config.cjs"], out)


def build(out: IO[str] = sys.stdout) -> Path:
    """console/dist/ (index.html and console.js.gz are what Envoy serves), built now if its
    sources changed since the last build; returns it."""
    digest = source_digest()
    bundle, gzipped = DIST / "assets" / "console.js", DIST / "console.js.gz"
    if SOURCE_STAMP.exists() and SOURCE_STAMP.read_text() == digest and gzipped.exists():
        return DIST
    install(out)
    out.write("==> console: building it (vite build, about 20 s)\n")
    _run([_tool("npx"), "--no-install", "vite", "build"], out)
    # Beside index.html, so the folder is flat like the ConfigMap Kubernetes mounts it from.
    gzipped.write_bytes(gzip.compress(bundle.read_bytes(), 9, mtime=0))
    SOURCE_STAMP.write_text(digest)
    out.write(f"==> console: built into {DIST.relative_to(ROOT)}/\n")
    return DIST
