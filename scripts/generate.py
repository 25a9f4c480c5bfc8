"""Generate the Python stubs, Envoy's descriptor set, the OpenAPI document, the /docs page and the
web console's API client from protos/ (run by `make generate`).

Output goes to generated/, whose folders mirror the proto packages, so the code imports as
`from pinexa.users.v1 import users_pb2`. Never edit generated/ by hand: CI regenerates it and
fails on any drift.
"""

from __future__ import annotations

import gzip
import shutil
import sys
import tomllib
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
OUT = ROOT / "generated"
DESCRIPTOR_SET = OUT / "pinexa.pb"
OPENAPI = OUT / "openapi.json"
DOCS = OUT / "docs"

# The /docs page: Swagger UI's own files from the swagger-ui-py wheel (nothing is loaded from the
# internet at run time). Gzipped, so the largest fits a Kubernetes ConfigMap; Envoy serves them
# with content-encoding: gzip.
SWAGGER_UI_ASSETS = ["swagger-ui-bundle.js", "swagger-ui.css"]
DOCS_INDEX = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <title>Pinexa REST API</title>
    <link rel="stylesheet" href="/docs/swagger-ui.css">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="/docs/swagger-ui-bundle.js" charset="utf-8"></script>
    <script>
      window.onload = function () {
        window.ui = SwaggerUIBundle({
          url: "/openapi.json",
          dom_id: "#swagger-ui",
          deepLinking: true,
          persistAuthorization: false,
          tryItOutEnabled: true,
        });
      };
    </script>
  </body>
</html>
"""

# Imported by the transcoder's error conversion; without them Envoy drops error details.
EXTRA_DESCRIPTOR_PROTOS = ["google/rpc/status.proto", "google/rpc/error_details.proto"]


def _googleapis_root() -> Path:
    import google.api.annotations_pb2 as annotations

    return Path(annotations.__file__).resolve().parent.parent.parent


def _run(args: list[str]) -> None:
    code = protoc.main(["grpc_tools.protoc", *args])
    if code != 0:
        sys.exit(f"protoc failed ({code}): {' '.join(args)}")


def _version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def write_docs() -> None:
    """generated/docs/: the /docs page and the Swagger UI files it loads."""
    import swagger_ui

    static = Path(swagger_ui.__file__).resolve().parent / "static"
    shutil.rmtree(DOCS, ignore_errors=True)
    DOCS.mkdir()
    (DOCS / "index.html").write_text(DOCS_INDEX)
    for name in SWAGGER_UI_ASSETS:
        # mtime=0: the same input gives the same bytes, so CI's drift check holds.
        (DOCS / f"{name}.gz").write_bytes(gzip.compress((static / name).read_bytes(), 9, mtime=0))
    shutil.copyfile(static / "LICENSE", DOCS / "SWAGGER-UI-LICENSE")


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
    # The OpenAPI 3.1 document, from the same protos and the jwt_authn rules of the Envoy template.
    import openapi  # scripts/openapi.py, beside this file

    # The Envoy renderer (envoy/render.py) sits beside its template at the repository root,
    # outside the package.
    sys.path.insert(0, str(ROOT))
    from envoy.render import kubernetes_params, render, write_kubernetes_files

    openapi.write(
        OPENAPI,
        includes=includes,
        protos=[*protos, *EXTRA_DESCRIPTOR_PROTOS],
        envoy_yaml=render(kubernetes_params()),
        version=_version(),
    )
    write_docs()
    # The strict edge's table of fields per REST route (Envoy's Lua filter, envoy/strict.lua).
    from edge_schema import render as render_edge_schema

    (OUT / "edge_schema.lua").write_text(render_edge_schema(DESCRIPTOR_SET))
    # Envoy for Kubernetes: envoy/envoy.yaml.tmpl rendered with the Kubernetes parameters, plus the
    # descriptor set, in k8s/base/envoy/ where kustomize builds the ConfigMap from them.
    console_dist = write_console()
    write_kubernetes_files(DESCRIPTOR_SET, OPENAPI, DOCS, console_dist)


def write_console() -> Path:
    """console/src/api/generated.ts: the web console's RTK Query endpoints and TypeScript types,
    from generated/openapi.json by @rtk-query/codegen-openapi (console/openapi-config.cjs); then
    the console built with them (console/dist/, for k8s/base/envoy/console/). Its npm packages
    come from console/package-lock.json first (npm ci, with progress)."""
    from devstack import console

    console.install(sys.stdout)
    console.run_codegen(sys.stdout)
    return console.build(sys.stdout)


if __name__ == "__main__":
    main()
