"""docker-compose.yml: valid against the Compose Specification's JSON schema (the copy that
check-jsonschema vendors), and wired the way the README promises: real databases, migrations
before the services, health checks and `depends_on` conditions, Envoy on 8080, the same dev
placeholders as the Kubernetes dev overlay."""

from __future__ import annotations

import subprocess
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.conftest import K8S, ROOT, load_env_file, tool, variables_the_code_reads

COMPOSE = ROOT / "docker-compose.yml"
DEV_SECRETS = K8S / "overlays" / "dev" / "secrets"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_compose_file_matches_the_compose_spec_schema() -> None:
    result = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "mongodb", "migrations", "auth", "users", "data", "envoy", "mailpit"}
    assert services["users"]["environment"]["SMTP_URL"] == "smtp://mailpit:1025"
    assert services["mailpit"]["image"].startswith("axllent/mailpit:v")
    assert services["postgres"]["image"].startswith("postgres:16.")
    assert services["mongodb"]["image"].startswith("mongo:7.")
    assert services["envoy"]["ports"] == ["127.0.0.1:8080:8080"]
    assert services["migrations"]["command"] == ["migrations"]
    assert services["migrations"]["restart"] == "no"
    for name in ("auth", "users", "data"):
        assert services[name]["command"] == [name]


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    assert "latest" not in COMPOSE.read_text().lower()
    for name, service in compose["services"].items():
        image = service["image"]
        tag = image.rpartition(":")[2]
        assert ":" in image and tag and "latest" not in tag, f"{name}: {image}"


def test_health_checks_and_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        if name != "migrations":
            assert service["healthcheck"]["test"][0] == "CMD", name
    for name, port in (("auth", 50051), ("users", 50052), ("data", 50053)):
        assert services[name]["healthcheck"]["test"] == ["CMD", "pinexa", "healthcheck", str(port)]
    conditions = {
        name: {dep: spec["condition"] for dep, spec in service.get("depends_on", {}).items()}
        for name, service in services.items()
    }
    assert conditions["migrations"] == {"postgres": "service_healthy"}
    for name in ("auth", "users"):
        assert conditions[name] == {
            "migrations": "service_completed_successfully",
            "postgres": "service_healthy",
        }
    assert conditions["data"] == {"mongodb": "service_healthy"}
    assert conditions["envoy"] == {name: "service_healthy" for name in ("auth", "users", "data")}


def test_services_run_hardened(compose: dict[str, Any]) -> None:
    for name in ("migrations", "auth", "users", "data", "envoy"):
        service = compose["services"][name]
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
    for name in ("auth", "users", "data"):
        environment = compose["services"][name]["environment"]
        assert environment["PINEXA_ENV"] == "production"
        assert environment["LISTEN_HOST"] == "0.0.0.0"
        assert environment["AUTO_MIGRATE"] == "false"


def test_dev_placeholders_are_marked_and_shared_with_the_dev_overlay(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text()
    for line in text.splitlines():
        if any(word in line for word in ("PASSWORD:", "TOKEN:", "_URL:", "KEY:")) and "dev-only" in line:
            assert "# DEV ONLY" in line, line
    services = compose["services"]
    assert services["auth"]["environment"]["DATABASE_URL"] == compose_url(
        load_env_file(DEV_SECRETS / "auth-db.env")["uri"]
    )
    assert services["users"]["environment"]["DATABASE_URL"] == compose_url(
        load_env_file(DEV_SECRETS / "users-db.env")["uri"]
    )
    assert services["data"]["environment"]["MONGODB_URL"] == compose_url(
        load_env_file(DEV_SECRETS / "data-db.env")["uri"]
    )
    migrations = services["migrations"]["environment"]
    assert migrations["USERS_DATABASE_URL"] == services["users"]["environment"]["DATABASE_URL"]
    assert migrations["AUTH_DATABASE_URL"] == services["auth"]["environment"]["DATABASE_URL"]
    for name in ("auth", "users", "data"):
        assert (
            services[name]["environment"]["INTERNAL_TOKEN"]
            == load_env_file(DEV_SECRETS / "internal.env")["token"]
        )
    assert (
        services["users"]["environment"]["PII_ENCRYPTION_KEY"]
        == load_env_file(DEV_SECRETS / "pii.env")["key"]
    )
    admin = load_env_file(DEV_SECRETS / "admin.env")
    assert services["users"]["environment"]["ADMIN_PASSWORD"] == admin["password"]
    # Mounted files and env files exist where the compose file expects them.
    for name, service in services.items():
        for volume in service.get("volumes", []):
            if volume.startswith("./"):
                assert (ROOT / volume.split(":")[0]).is_file(), f"{name}: {volume}"
        if "env_file" in service:
            assert (ROOT / service["env_file"]).is_file(), name


def compose_url(url: str) -> str:
    """The dev overlay's URLs name the in-cluster Services; compose's service names are the same."""
    host = urlsplit(url).hostname
    assert host in ("postgres", "mongodb")
    assert host in yaml.safe_load(COMPOSE.read_text())["services"]
    return url


def test_every_variable_set_for_a_service_is_one_the_code_reads(compose: dict[str, Any]) -> None:
    known = variables_the_code_reads()
    pinexa = [name for name, service in compose["services"].items() if service["image"].startswith("pinexa:")]
    assert sorted(pinexa) == ["auth", "data", "migrations", "users"]
    for name in pinexa:
        assert "env_file" not in compose["services"][name]
        unknown = set(compose["services"][name]["environment"]) - known
        assert not unknown, f"{name}: unknown {sorted(unknown)}"


def test_compose_services_get_settings_the_services_accept(compose: dict[str, Any]) -> None:
    from services.auth.config import AuthSettings
    from services.data.config import DataSettings
    from services.kit.settings import Settings
    from services.users.config import UsersSettings
    from services.users.crypto import parse_keys

    # The migrations container runs users' and auth's migrations, so it needs both their settings.
    read_by: dict[str, tuple[type[Settings], ...]] = {
        "migrations": (UsersSettings, AuthSettings),
        "auth": (AuthSettings,),
        "users": (UsersSettings,),
        "data": (DataSettings,),
    }
    for name, classes in read_by.items():
        environment = {k: str(v) for k, v in compose["services"][name]["environment"].items()}
        for cls in classes:
            settings = cls.from_env(environment)
            assert settings.is_production
            assert not getattr(settings, "auto_migrate", False)
    users = UsersSettings.from_env(
        {k: str(v) for k, v in compose["services"]["users"]["environment"].items()}
    )
    assert len(parse_keys(users.pii_encryption_key)) == 1
