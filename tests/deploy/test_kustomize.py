"""The Kubernetes manifests, checked offline the way a cluster would read them.

Each overlay is rendered with `kubectl kustomize` and validated with `kubernetes-validate --strict`
against Kubernetes 1.32 (a misspelled field fails). Then the rendered objects are read against the
deployment rules: hardening on every workload, probes, resources, pinned images, replicas,
autoscaling, disruption budgets, headless Services for Envoy's STRICT_DNS clusters, migrations
before serving, and Secrets only as references in prod.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from tests.deploy.conftest import (
    K8S,
    all_containers,
    generated,
    load_env_file,
    named,
    of_kind,
    pod_labels,
    pod_spec,
    rendered,
    rendered_text,
    tool,
    variables_the_code_reads,
    workloads,
)

KUBERNETES_VERSION = "1.32.0"
SERVICES = {"auth": 50051, "users": 50052, "data": 50053}
SQL_SERVICES = ("users", "auth")
TMP = "/tmp"  # noqa: S108 - the emptyDir every container gets on a read-only root filesystem
# Settings that are secret: they may reach a pod only through a Secret reference.
SECRET_SETTINGS = {
    "DATABASE_URL",
    "MONGODB_URL",
    "INTERNAL_TOKEN",
    "ADMIN_PASSWORD",
    "JWT_PRIVATE_KEYS",
    "PII_ENCRYPTION_KEY",
}


def test_overlay_renders_and_passes_strict_schema_validation(overlay: str, tmp_path: Path) -> None:
    manifest = tmp_path / f"{overlay}.yaml"
    manifest.write_text(rendered_text(overlay))
    result = subprocess.run(
        [tool("kubernetes-validate"), "--strict", "-k", KUBERNETES_VERSION, str(manifest)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # An unknown kind or apiVersion is only a warning for the tool; here it is a failure.
    assert "WARN" not in output and "ERROR" not in output, output
    # Every object was checked against a schema; none was skipped.
    objects = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    assert output.count("passed for resource") == len(objects), output


def _image_is_pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag not in ("", "latest") and "latest" not in tag


def test_hardening_on_every_workload(docs: list[dict[str, Any]]) -> None:
    found = workloads(docs)
    assert {w["metadata"]["name"] for w in found} >= {*SERVICES, "envoy"}
    problems: list[str] = []
    for workload in found:
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        spec = pod_spec(workload)
        pod_security = spec.get("securityContext", {})
        if pod_security.get("runAsNonRoot") is not True:
            problems.append(f"{where}: runAsNonRoot is not true")
        if not pod_security.get("runAsUser"):
            problems.append(f"{where}: no non-zero runAsUser")
        if pod_security.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{where}: seccomp profile is not RuntimeDefault")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: mounts a service account token")
        if spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC"):
            problems.append(f"{where}: shares a host namespace")
        for container in all_containers(spec):
            at = f"{where} container {container['name']}"
            security = container.get("securityContext", {})
            if security.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{at}: allowPrivilegeEscalation is not false")
            if security.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{at}: root filesystem is writable")
            if security.get("privileged"):
                problems.append(f"{at}: privileged")
            if security.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{at}: capabilities are not all dropped")
            if security.get("capabilities", {}).get("add"):
                problems.append(f"{at}: adds capabilities")
            if security.get("runAsUser") == 0 or security.get("runAsNonRoot") is False:
                problems.append(f"{at}: runs as root")
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(kind, {}):
                        problems.append(f"{at}: no {resource} {kind[:-1]}")
            if not _image_is_pinned(container["image"]):
                problems.append(f"{at}: image {container['image']!r} is not pinned to a version")
            if container in spec.get("containers", []):
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in container:
                        problems.append(f"{at}: no {probe}")
            mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
            if TMP not in mounts:
                problems.append(f"{at}: no writable /tmp (emptyDir) on a read-only root filesystem")
    assert not problems, "\n".join(problems)


def test_no_latest_tag_anywhere(overlay: str) -> None:
    text = rendered_text(overlay)
    images = re.findall(r"^\s*image:\s*(\S+)", text, re.MULTILINE)
    assert images
    assert all(_image_is_pinned(image) for image in images), images
    assert "latest" not in text.lower()


def test_grpc_services_deployments(docs: list[dict[str, Any]]) -> None:
    config = generated(docs, "ConfigMap", "pinexa-config")["data"]
    drain = float(config["SHUTDOWN_DRAIN_SECONDS"])
    grace = float(config["SHUTDOWN_GRACE_SECONDS"])
    assert config["LISTEN_HOST"] == "0.0.0.0"
    assert config["AUTO_MIGRATE"] == "false"
    for name, port in SERVICES.items():
        deployment = named(docs, "Deployment", name)
        assert deployment["spec"]["replicas"] == 2
        spec = pod_spec(deployment)
        assert spec["enableServiceLinks"] is False  # no AUTH_PORT=tcp://... from a Service named auth
        # Enough time for the drain and the grace period of the service's own shutdown.
        assert drain + grace < spec["terminationGracePeriodSeconds"] <= drain + grace + 10
        (container,) = spec["containers"]
        assert container["args"][0] == name
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["grpc"] == port
        assert ports["metrics"] == int(config["METRICS_PORT"])
        readiness, liveness = container["readinessProbe"], container["livenessProbe"]
        assert readiness["grpc"] == {"port": port}  # overall status: SERVING only with its database
        assert liveness["grpc"] == {"port": port, "service": "liveness"}
        assert container["startupProbe"]["grpc"]["service"] == "liveness"
        spread = spec["topologySpreadConstraints"]
        assert {c["topologyKey"] for c in spread} == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}
        for constraint in spread:
            assert constraint["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": name}
        (config_source,) = container["envFrom"]
        assert (
            config_source["configMapRef"]["name"]
            == generated(docs, "ConfigMap", "pinexa-config")["metadata"]["name"]
        )


def test_envoy_deployment(docs: list[dict[str, Any]]) -> None:
    deployment = named(docs, "Deployment", "envoy")
    assert deployment["spec"]["replicas"] == 2
    spec = pod_spec(deployment)
    (container,) = spec["containers"]
    assert container["image"].startswith("envoyproxy/envoy:distroless-v1.40")
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        # Envoy's stats listener (GET /stats/prometheus), which the monitoring PodMonitor scrapes.
        {"name": "metrics", "containerPort": 9902, "protocol": "TCP"},
    ]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    args = container["args"]
    config_path = args[args.index("--config-path") + 1]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert config_path == f"{mounts['config']}/envoy.yaml"
    config_volume = next(v for v in spec["volumes"] if v["name"] == "config")
    assert (
        config_volume["configMap"]["name"] == generated(docs, "ConfigMap", "envoy-config")["metadata"]["name"]
    )


def test_envoy_configmap_is_the_generated_config_and_descriptor_set(docs: list[dict[str, Any]]) -> None:
    """The ConfigMap is generated from k8s/base/envoy/ (written by `make generate` from the one
    template), byte for byte: no second, hand-kept copy."""
    configmap = generated(docs, "ConfigMap", "envoy-config")
    source = K8S / "base" / "envoy"
    assert configmap["data"]["envoy.yaml"] == (source / "envoy.yaml").read_text()
    assert base64.b64decode(configmap["binaryData"]["pinexa.pb"]) == (source / "pinexa.pb").read_bytes()
    # Client-side `kubectl apply` copies the whole object into the last-applied-configuration
    # annotation, and annotations are limited to 256 KiB. (`--server-side` keeps no such copy; the
    # descriptor set's source info, i.e. the proto comments, is most of the size.)
    last_applied = json.dumps(configmap, separators=(",", ":"))
    assert len(last_applied) < 256 * 1024, (
        f"envoy-config is {len(last_applied)} bytes as JSON: too large for client-side `kubectl apply`; "
        "ship k8s/base/envoy/pinexa.pb without source info (comments), which Envoy does not use"
    )


def test_envoy_serves_the_openapi_document_and_docs_page_from_its_configmaps(
    docs: list[dict[str, Any]],
) -> None:
    """/openapi.json and /docs are direct responses from files: the OpenAPI document and the
    Swagger UI page in envoy-docs, where the config reads them, byte for byte, and envoy-docs
    within the 1 MiB a ConfigMap may hold."""
    source = K8S / "base" / "envoy"
    config = generated(docs, "ConfigMap", "envoy-config")
    pages = generated(docs, "ConfigMap", "envoy-docs")
    assert pages["data"]["openapi.json"] == (source / "openapi.json").read_text()
    files = {**pages.get("data", {}), **pages.get("binaryData", {})}
    assert set(files) == {
        "index.html",
        "swagger-ui-bundle.js.gz",
        "swagger-ui.css.gz",
        "SWAGGER-UI-LICENSE",
        "openapi.json",
    }
    for name in ("swagger-ui-bundle.js.gz", "swagger-ui.css.gz"):
        assert base64.b64decode(pages["binaryData"][name]) == (source / "docs" / name).read_bytes()
    assert len(json.dumps(pages, separators=(",", ":"))) < 1024 * 1024
    deployment = named(docs, "Deployment", "envoy")
    spec = pod_spec(deployment)
    (container,) = spec["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volume = next(v for v in spec["volumes"] if v["name"] == "docs")
    assert volume["configMap"]["name"] == pages["metadata"]["name"]
    envoy_yaml = config["data"]["envoy.yaml"]
    for name in ("index.html", "swagger-ui-bundle.js.gz", "swagger-ui.css.gz", "openapi.json"):
        assert f"filename: {mounts['docs']}/{name}" in envoy_yaml


def test_envoy_config_matches_the_services(docs: list[dict[str, Any]]) -> None:
    """Envoy's STRICT_DNS clusters name the headless Services and their ports; its descriptor set is
    where the ConfigMap is mounted; it listens where the Service and probes point."""
    config = yaml.safe_load(generated(docs, "ConfigMap", "envoy-config")["data"]["envoy.yaml"])
    static = config["static_resources"]
    listener = static["listeners"][0]["address"]["socket_address"]
    assert (listener["address"], listener["port_value"]) == ("0.0.0.0", 8080)
    admin = config["admin"]["address"]["socket_address"]
    assert admin["address"] == "127.0.0.1"
    # The stats listener is where the Deployment's `metrics` port points; it routes one path.
    (stats,) = [li for li in static["listeners"] if li["name"] == "stats"]
    assert stats["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 9902}
    (hcm,) = stats["filter_chains"][0]["filters"]
    routes = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    assert [r["match"].get("path") for r in routes if "route" in r] == ["/stats/prometheus"]
    clusters = {c["name"]: c for c in static["clusters"]}
    for name, port in SERVICES.items():
        cluster = clusters[name]
        assert cluster["type"] == "STRICT_DNS"
        (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
        address = endpoint["endpoint"]["address"]["socket_address"]
        service = named(docs, "Service", address["address"])
        assert service["spec"]["clusterIP"] == "None"  # headless: every pod, not one virtual IP
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": name}
        assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"grpc": address["port_value"]}
        assert address["port_value"] == port
    transcoder = next(
        f for f in listener_filters(config) if f["name"] == "envoy.filters.http.grpc_json_transcoder"
    )
    assert transcoder["typed_config"]["proto_descriptor"] == "/etc/envoy/pinexa.pb"
    # Envoy -> auth's JWKS: jwt_authn fetches it from this very listener over loopback (which no
    # NetworkPolicy polices), and the listener routes it to the auth cluster (which the `envoy`
    # policy allows). A port or path out of step would leave every protected route at 401.
    jwt_authn = next(f for f in listener_filters(config) if f["name"] == "envoy.filters.http.jwt_authn")
    (provider,) = jwt_authn["typed_config"]["providers"].values()
    fetch = provider["remote_jwks"]["http_uri"]
    assert urlsplit(fetch["uri"]).netloc == f"127.0.0.1:{listener['port_value']}"
    assert urlsplit(fetch["uri"]).path == "/.well-known/jwks.json"
    jwks = clusters[fetch["cluster"]]
    (endpoint,) = jwks["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    assert (address["address"], address["port_value"]) == ("127.0.0.1", listener["port_value"])


def listener_filters(config: dict[str, Any]) -> list[dict[str, Any]]:
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return list(manager["typed_config"]["http_filters"])


def test_services(docs: list[dict[str, Any]]) -> None:
    for name, port in SERVICES.items():
        service = named(docs, "Service", name)
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["ports"][0]["name"] == "grpc"
        assert service["spec"]["ports"][0]["port"] == port
    envoy = named(docs, "Service", "envoy")
    assert envoy["spec"]["ports"][0]["port"] == 8080


DEV_ONLY_DEPLOYMENTS = {"mailpit"}


def test_autoscaler_and_disruption_budget_for_each_deployment(docs: list[dict[str, Any]]) -> None:
    # Pinexa's own Deployments; the dev overlay's mail catcher (one replica, a dev tool) has neither.
    deployments = {d["metadata"]["name"] for d in of_kind(docs, "Deployment")} - DEV_ONLY_DEPLOYMENTS
    assert deployments == {*SERVICES, "envoy"}
    autoscalers = {h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind(docs, "HorizontalPodAutoscaler")}
    assert set(autoscalers) == deployments
    for name, hpa in autoscalers.items():
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert hpa["spec"]["minReplicas"] == named(docs, "Deployment", name)["spec"]["replicas"]
        assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
    budgets = of_kind(docs, "PodDisruptionBudget")
    covered = {b["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] for b in budgets}
    assert covered == deployments
    for budget in budgets:
        assert budget["spec"]["maxUnavailable"] == 1


def test_migrations_run_before_users_and_auth_serve(docs: list[dict[str, Any]]) -> None:
    for name in SQL_SERVICES:
        spec = pod_spec(named(docs, "Deployment", name))
        (migrate,) = spec["initContainers"]
        (container,) = spec["containers"]
        assert migrate["args"] == [name, "migrate"]
        assert migrate["image"] == container["image"]
        env = {e["name"]: e for e in migrate["env"]}
        main_env = {e["name"]: e for e in container["env"]}
        assert env["DATABASE_URL"] == main_env["DATABASE_URL"]
        assert env["INTERNAL_TOKEN"] == main_env["INTERNAL_TOKEN"]  # production settings need it
    assert "initContainers" not in pod_spec(named(docs, "Deployment", "data"))


def _env_sources(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for workload in workloads(docs):
        for container in all_containers(pod_spec(workload)):
            for entry in container.get("env", []):
                out.append((f"{workload['metadata']['name']}/{container['name']}", entry))
    return out


def test_secret_settings_only_come_from_secrets(docs: list[dict[str, Any]]) -> None:
    for where, entry in _env_sources(docs):
        if entry["name"] in SECRET_SETTINGS:
            assert "secretKeyRef" in entry.get("valueFrom", {}), f"{where}: {entry['name']} is not a Secret"
    for configmap in of_kind(docs, "ConfigMap"):
        assert not SECRET_SETTINGS & set(configmap.get("data", {})), configmap["metadata"]["name"]


def test_prod_commits_no_secret() -> None:
    docs = rendered("prod")
    assert of_kind(docs, "Secret") == []
    referenced = {
        entry["valueFrom"]["secretKeyRef"]["name"]
        for _, entry in _env_sources(docs)
        if "secretKeyRef" in entry.get("valueFrom", {})
    }
    for workload in workloads(docs):
        for volume in pod_spec(workload).get("volumes", []):
            if "secret" in volume:
                referenced.add(volume["secret"]["secretName"])
    # The Secrets k8s/README.md tells operators to create; keep the two in step.
    documented = set(re.findall(r"`(pinexa-[a-z-]+)`", (K8S / "README.md").read_text()))
    assert referenced <= documented, referenced - documented


def test_dev_secret_and_configmap_references_resolve() -> None:
    docs = rendered("dev")
    secrets = {s["metadata"]["name"]: s for s in of_kind(docs, "Secret")}
    configmaps = {c["metadata"]["name"] for c in of_kind(docs, "ConfigMap")}
    for workload in workloads(docs):
        spec = pod_spec(workload)
        for container in all_containers(spec):
            for entry in container.get("env", []):
                ref = entry.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets, ref
                    assert ref["key"] in secrets[ref["name"]]["data"], ref
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in configmaps
        for volume in spec.get("volumes", []):
            if "secret" in volume:
                assert volume["secret"]["secretName"] in secrets
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps


def test_dev_jwt_keys_are_pem_files_in_the_mounted_folder(tmp_path: Path) -> None:
    from services.auth.keys import load_key_files

    docs = rendered("dev")
    auth = pod_spec(named(docs, "Deployment", "auth"))
    (container,) = auth["containers"]
    keys_dir = next(e["value"] for e in container["env"] if e["name"] == "JWT_KEYS_DIR")
    volume_name = next(m["name"] for m in container["volumeMounts"] if m["mountPath"] == keys_dir)
    volume = next(v for v in auth["volumes"] if v["name"] == volume_name)
    assert volume["secret"]["defaultMode"] == 0o440
    secret = named(docs, "Secret", volume["secret"]["secretName"])
    assert secret["data"] and all(name.endswith(".pem") for name in secret["data"])
    for name, value in secret["data"].items():
        (tmp_path / name).write_bytes(base64.b64decode(value))
        (tmp_path / name).chmod(0o600)
    # auth reads them the way it reads the mounted Secret.
    assert len(load_key_files(tmp_path)) == len(secret["data"])


def test_dev_database_passwords_agree() -> None:
    """The URLs the services use carry the passwords the database init scripts set."""
    secrets = K8S / "overlays" / "dev" / "secrets"
    postgres = load_env_file(secrets / "postgres.env")
    mongodb = load_env_file(secrets / "mongodb.env")
    users = load_env_file(secrets / "users-db.env")["uri"]
    auth = load_env_file(secrets / "auth-db.env")["uri"]
    data = load_env_file(secrets / "data-db.env")["uri"]
    assert f":{postgres['USERS_DB_PASSWORD']}@postgres:5432/pinexa_users" in users
    assert f":{postgres['AUTH_DB_PASSWORD']}@postgres:5432/pinexa_auth" in auth
    assert f":{mongodb['DATA_DB_PASSWORD']}@mongodb:27017/pinexa?" in data


def test_dev_databases_are_statefulsets_with_claims() -> None:
    docs = rendered("dev")
    for name, port in (("postgres", 5432), ("mongodb", 27017)):
        statefulset = named(docs, "StatefulSet", name)
        assert statefulset["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        (container,) = pod_spec(statefulset)["containers"]
        assert container["ports"][0]["containerPort"] == port
        assert pod_labels(statefulset)["app.kubernetes.io/name"] == name
        assert named(docs, "Service", name)["spec"]["ports"][0]["port"] == port
    assert of_kind(rendered("prod"), "StatefulSet") == []


def test_namespaces_enforce_restricted_pod_security(overlay: str, docs: list[dict[str, Any]]) -> None:
    (namespace,) = of_kind(docs, "Namespace")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == namespace["metadata"]["name"], doc["metadata"]


def _container_env(docs: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str]:
    """A container's environment as the kubelet would build it from the rendered objects."""
    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind(docs, "ConfigMap")}
    secrets = {
        s["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()}
        for s in of_kind(docs, "Secret")
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]])
        if "secretRef" in source:
            env.update(secrets[source["secretRef"]["name"]])
    for entry in container.get("env", []):
        if "value" in entry:
            env[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None:
            assert ref.get("optional"), ref
            continue
        env[entry["name"]] = value
    return env


def test_every_variable_set_for_a_service_is_one_the_code_reads(docs: list[dict[str, Any]]) -> None:
    """A misspelled name (SHUTDOWN_GRACE_SECOND, MONGO_URL) would be ignored at start-up, silently
    leaving the default; here it fails."""
    known = variables_the_code_reads()
    configmaps = {c["metadata"]["name"]: c.get("data", {}) for c in of_kind(docs, "ConfigMap")}
    checked = 0
    for workload in workloads(docs):
        for container in all_containers(pod_spec(workload)):
            if container["image"].rpartition(":")[0].rsplit("/", 1)[-1] != "pinexa":
                continue  # PostgreSQL, MongoDB and Envoy read their own variables
            names = {entry["name"] for entry in container.get("env", [])}
            for source in container.get("envFrom", []):
                assert "secretRef" not in source  # its keys would be variables nobody listed
                names |= set(configmaps[source["configMapRef"]["name"]])
            where = f"{workload['metadata']['name']}/{container['name']}"
            assert names <= known, f"{where}: unknown {sorted(names - known)}"
            checked += 1
    assert checked == 5  # three services and two migrate initContainers


def test_dev_containers_get_settings_the_services_accept() -> None:
    """Every dev container's environment passes the services' own start-up validation in
    production mode, so no pod of a fresh `kubectl apply --server-side -k k8s/overlays/dev` exits on it."""
    from services.auth.config import AuthSettings
    from services.data.config import DataSettings
    from services.users.config import UsersSettings
    from services.users.crypto import parse_keys

    settings_of = {"auth": AuthSettings, "users": UsersSettings, "data": DataSettings}
    docs = rendered("dev")
    for name in SERVICES:
        for container in all_containers(pod_spec(named(docs, "Deployment", name))):
            env = _container_env(docs, container)
            settings: Any = settings_of[name].from_env(env)
            assert settings.is_production
            assert settings.listen_host == "0.0.0.0"
            if name in SQL_SERVICES:
                assert not settings.auto_migrate  # data has no SQL, so no AUTO_MIGRATE
            if container["name"] == name and name in SQL_SERVICES:
                assert settings.database_url.startswith("postgresql://")
            if container["name"] == name == "users":
                assert len(parse_keys(settings.pii_encryption_key)) == 1
                assert settings.admin_username and settings.admin_password
            if name == "data":
                assert settings.mongodb_url.startswith("mongodb://")
