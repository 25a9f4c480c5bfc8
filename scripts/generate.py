"""Generate the Python stubs and Envoy's descriptor set from protos/ (run by `make generate`).

Output goes to generated/, whose folders mirror the proto packages, so the code imports as
`from pinexa.users.v1 import users_pb2`. Never edit generated/ by hand: CI regenerates it and
fails on any drift.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "generated"
DESCRIPTOR_SET = OUT / "pinexa.pb"

# Imported by the transcoder's error conversion; without them Envoy drops error details.
EXTRA_DESCRIPTOR_PROTOS = ["google/rpc/status.proto", "google/rpc/error_details.proto"]


def _googleapis_root() -> Path:
    import google.api.annotations_pb2 as annotations

    return Path(annotations.__file__).resolve().parent.parent.parent


def _run(args: list[str]) -> None:
    code = protoc.main(["grpc_tools.protoc", *args])
    if code != 0:
        sys.exit(f"protoc failed ({code}): {' '.join(args)}")


def main() -> None:
    protos = sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))
    includes = [
        f"-I{PROTOS}",
        f"-I{_googleapis_root()}",
        f"-I{Path(grpc_tools.__file__).parent / '_proto'}",
    ]
    shutil.rmtree(OUT / "pinexa", ignore_errors=True)
    OUT.mkdir(exist_ok=True)
    _run([*includes, f"--python_out={OUT}", f"--pyi_out={OUT}", f"--grpc_python_out={OUT}", *protos])
    _run(
        [
            *includes,
            "--include_imports",
            f"--descriptor_set_out={DESCRIPTOR_SET}",
            *protos,
            *EXTRA_DESCRIPTOR_PROTOS,
        ]
    )
    # Regular packages (not namespace packages), so mypy and setuptools see them plainly.
    for folder in [OUT / "pinexa", *sorted(p for p in (OUT / "pinexa").rglob("*") if p.is_dir())]:
        (folder / "__init__.py").write_text("")
    (OUT / "pinexa" / "py.typed").write_text("")
    # The strict edge's table of fields per REST route (Envoy's Lua filter, envoy/strict.lua).
    from edge_schema import render as render_edge_schema

    (OUT / "edge_schema.lua").write_text(render_edge_schema(DESCRIPTOR_SET))
    # Envoy for Kubernetes: envoy/envoy.yaml.tmpl rendered with the Kubernetes parameters, plus the
    # descriptor set, in k8s/base/envoy/ where kustomize builds the ConfigMap from them. The renderer
    # (envoy/render.py) sits beside its template at the repository root, outside the package.
    sys.path.insert(0, str(ROOT))
    from envoy.render import write_kubernetes_files

    write_kubernetes_files(DESCRIPTOR_SET)


if __name__ == "__main__":
    main()
