"""The layering of every service, read from the import graph (every `import` statement, those inside
functions and under TYPE_CHECKING included):

- each service has the same modules in the same roles: model (records and the store Protocol),
  domain (the rules), store (the only database access), servicer (protobuf <-> domain) and server
  (the wiring);
- domain and store never import each other, and model imports neither: both depend on model;
- the servicer does not import the store, and nothing but server.py (the wiring) does; auth's
  users client and the in-memory stores (memory.py), adapters like a store, do not import the
  domain either;
- no circular imports among the modules under services/.

Each check also runs on a small package planted with the fault, so none can pass vacuously.

The graph is grimp's (import-linter's graph builder), the reader tests/deploy/test_import_graph.py
uses too.
"""

from __future__ import annotations

import graphlib
from pathlib import Path

import grimp
import pytest

SERVICES = ("users", "auth", "data")
ROLES = ("model", "domain", "store", "servicer", "server")
# Outbound adapters other than the store: like a store, each implements a Protocol of model.py
# and never imports the domain. memory.py holds the in-memory stores (and auth's in-memory users
# client) the domain tests run on.
ADAPTERS = {"auth": ("users_client", "memory"), "users": ("memory",), "data": ("memory",)}


def import_graph(package: str) -> dict[str, set[str]]:
    """module -> the modules of `package` it imports directly, for every module of `package`
    (which must be importable), as grimp reads them (tests/deploy/test_import_graph.py uses the
    same reader for the dev-tools rule)."""
    # No cache: grimp would otherwise write .grimp_cache/ into the working directory.
    graph = grimp.build_graph(package, cache_dir=None)
    return {
        module: set(graph.find_modules_directly_imported_by(module)) - {module} for module in graph.modules
    }


def layering_faults(
    graph: dict[str, set[str]],
    package: str,
    services: tuple[str, ...],
    adapters: dict[str, tuple[str, ...]] = ADAPTERS,
) -> list[str]:
    """Every breach of the layering rules, as `importer -> imported: rule`."""
    faults = []
    for service in services:
        prefix = f"{package}.{service}"
        missing = [role for role in ROLES if f"{prefix}.{role}" not in graph]
        if missing:
            faults.append(f"{prefix} has no {', '.join(missing)} module")
        forbidden = {
            "domain": ("store", "servicer", "server"),
            "store": ("domain", "servicer", "server"),
            "model": ("domain", "store", "servicer", "server"),
            "servicer": ("store", "server"),
        }
        for adapter in adapters.get(service, ()):
            forbidden[adapter] = ("domain", "servicer", "server")
        for importer, imported in sorted(forbidden.items()):
            for target in imported:
                if f"{prefix}.{target}" in graph.get(f"{prefix}.{importer}", set()):
                    faults.append(
                        f"{prefix}.{importer} -> {prefix}.{target}: {importer} must not import {target}"
                    )
        for module, imports in sorted(graph.items()):
            if f"{prefix}.store" in imports and module not in (f"{prefix}.server", f"{prefix}.store"):
                faults.append(f"{module} -> {prefix}.store: only {prefix}.server wires the store in")
    return faults


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle among the modules (as a list of module names), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as error:
        return list(error.args[1])
    return None


def test_every_service_has_the_same_layers_and_they_depend_one_way() -> None:
    graph = import_graph("services")
    assert len(graph) > 40  # the graph really holds the services
    # The reading sees real edges: the domain and the store of each service both use its model.
    for service in SERVICES:
        assert f"services.{service}.model" in graph[f"services.{service}.domain"]
        assert f"services.{service}.model" in graph[f"services.{service}.store"]
        assert f"services.{service}.store" in graph[f"services.{service}.server"]
    assert layering_faults(graph, "services", SERVICES) == []


def test_no_circular_imports_among_the_services_modules() -> None:
    assert import_cycle(import_graph("services")) is None


@pytest.fixture
def planted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A package `planted.svc` whose domain imports the store lazily (and so forms a cycle with
    it: store -> domain), whose servicer imports the store relatively, whose client (an adapter)
    imports the domain, and which has no model."""
    service = tmp_path / "planted" / "svc"
    service.mkdir(parents=True)
    (tmp_path / "planted" / "__init__.py").write_text("")
    (service / "__init__.py").write_text("")
    (service / "domain.py").write_text("def later():\n    from planted.svc import store\n    return store\n")
    (service / "store.py").write_text("from planted.svc.domain import later\n")
    (service / "servicer.py").write_text("from .store import later\n")
    (service / "server.py").write_text("from . import servicer, store\n")
    (service / "client.py").write_text("import planted.svc.domain\n")
    monkeypatch.syspath_prepend(str(tmp_path))  # grimp finds the package by importing its name
    return tmp_path


def test_the_checks_catch_what_they_look_for(planted: Path) -> None:
    graph = import_graph("planted")
    assert graph["planted.svc.server"] == {"planted.svc.servicer", "planted.svc.store"}
    assert layering_faults(graph, "planted", ("svc",), {"svc": ("client",)}) == [
        "planted.svc has no model module",
        "planted.svc.client -> planted.svc.domain: client must not import domain",
        "planted.svc.domain -> planted.svc.store: domain must not import store",
        "planted.svc.servicer -> planted.svc.store: servicer must not import store",
        "planted.svc.store -> planted.svc.domain: store must not import domain",
        "planted.svc.domain -> planted.svc.store: only planted.svc.server wires the store in",
        "planted.svc.servicer -> planted.svc.store: only planted.svc.server wires the store in",
    ]
    cycle = import_cycle(graph)
    assert cycle is not None and {"planted.svc.domain", "planted.svc.store"} <= set(cycle)
