"""deploy/ (Dockerfile, Helm values) and dagster_cloud.yaml reference what the package serves.

No docker or Kubernetes here: these tests parse the files and check every name they point at
(module, port, config path, secrets, limits) against the code and the local instance config,
so a rename in the package breaks them instead of a deployment.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import tomllib
from pathlib import Path

import yaml

from gsc_pipeline.config import CONFIG_ENV, CredentialConfig
from gsc_pipeline.defs.resources import WAREHOUSE_URL_ENV

ROOT = Path(__file__).resolve().parents[1]
MODULE = "gsc_pipeline.definitions"


def _dockerfile() -> dict[str, str]:
    """The last value of each instruction (CMD, EXPOSE, ENV, FROM, ...), comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "deploy" / "Dockerfile").read_text())
    out: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out[word.upper()] = rest.strip() if word.upper() != "RUN" else out.get("RUN", "") + rest
    return out


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _instance_yaml() -> dict:
    path = ROOT / "gsc_pipeline" / "instance" / "dagster-postgres.yaml"
    return yaml.safe_load(path.read_text())


def test_the_code_location_module_is_the_same_everywhere_and_importable():
    assert importlib.util.find_spec(MODULE) is not None
    assert _pyproject()["tool"]["dagster"]["module_name"] == MODULE
    cloud = yaml.safe_load((ROOT / "dagster_cloud.yaml").read_text())
    assert [loc["code_source"]["module_name"] for loc in cloud["locations"]] == [MODULE]
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == MODULE


def test_dockerfile_serves_the_module_on_its_exposed_port_with_the_k8s_extra():
    docker = _dockerfile()
    cmd = yaml.safe_load(docker["CMD"])  # exec form: a JSON list
    assert cmd[:3] == ["dagster", "api", "grpc"]
    assert cmd[cmd.index("-m") + 1] == MODULE
    assert cmd[cmd.index("-p") + 1] == docker["EXPOSE"]
    assert docker["FROM"].startswith("python:3.11"), "requires-python and CI use 3.11"
    assert '".[k8s]"' in docker["RUN"]
    assert shlex.split(docker["ENV"])[0].startswith(f"{CONFIG_ENV}=")
    # The pinned extra matches dagster-postgres (both are 0.x libraries of the same release).
    project = _pyproject()["project"]
    postgres_pin = next(d for d in project["dependencies"] if d.startswith("dagster-postgres=="))
    assert project["optional-dependencies"]["k8s"] == [
        "dagster-k8s==" + postgres_pin.split("==")[1]
    ]


def test_helm_values_use_the_k8s_run_launcher_postgres_and_the_local_limits():
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
    docker = _dockerfile()
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["-m", MODULE]
    assert str(deployment["port"]) == docker["EXPOSE"]
    env = {e["name"]: e["value"] for e in deployment["env"]}
    config_path = Path(env[CONFIG_ENV])
    assert f"{CONFIG_ENV}={config_path}" == shlex.split(docker["ENV"])[0]
    mounts = {m["name"]: m["mountPath"] for m in deployment["volumeMounts"]}
    volumes = {v["name"]: v["configMap"]["name"] for v in deployment["volumes"]}
    assert mounts == {name: str(config_path.parent) for name in volumes}
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    # The warehouse URL is a secret; the values name the secret, the header says what it holds.
    assert deployment["envSecrets"] == [{"name": "gsc-pipeline-env"}]
    assert f"--from-literal={WAREHOUSE_URL_ENV}=postgresql://" in (
        ROOT / "deploy" / "helm" / "values.yaml"
    ).read_text()

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["postgresqlHost"]
    # Same pool and run limits as the local instance, and the same run-queue settings.
    local = _instance_yaml()
    assert values["concurrency"]["pools"]["defaultLimit"] == local["concurrency"]["pools"][
        "default_limit"
    ] == CredentialConfig.model_fields["pool_limit"].default
    assert values["concurrency"]["pools"]["granularity"] == local["concurrency"]["pools"][
        "granularity"
    ]
    assert values["concurrency"]["runs"]["maxConcurrentRuns"] == local["concurrency"]["runs"][
        "max_concurrent_runs"
    ]
    # The project's loggers reach the runs' logs on every instance config.
    postgres_instance = yaml.safe_load(
        (ROOT / "gsc_pipeline" / "instance" / "dagster-postgres.yaml").read_text()
    )
    assert values["pythonLogs"]["managedPythonLoggers"] == local["python_logs"][
        "managed_python_loggers"
    ] == postgres_instance["python_logs"]["managed_python_loggers"] == ["gsc_pipeline"]
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert {
        "dequeue_use_threads": queued["dequeueUseThreads"],
        "dequeue_num_workers": queued["dequeueNumWorkers"],
        "dequeue_interval_seconds": queued["dequeueIntervalSeconds"],
    } == local["run_coordinator"]["config"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["freeSlotsAfterRunEndSeconds"] == local["run_monitoring"][
        "free_slots_after_run_end_seconds"
    ]


def test_dagster_cloud_hybrid_pods_get_the_same_config_mount_and_secret_as_helm():
    cloud = yaml.safe_load((ROOT / "dagster_cloud.yaml").read_text())
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "values.yaml").read_text())
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    k8s = cloud["locations"][0]["container_context"]["k8s"]
    env = dict(item.split("=", 1) for item in k8s["env_vars"])
    assert env == {e["name"]: e["value"] for e in deployment["env"]}
    assert k8s["env_secrets"] == [s["name"] for s in deployment["envSecrets"]]
    assert k8s["volumes"] == deployment["volumes"]
    assert k8s["volume_mounts"] == deployment["volumeMounts"]
