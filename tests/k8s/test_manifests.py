"""The Kubernetes manifests in k8s/, checked without a cluster.

Each kustomization is built with `kubectl kustomize` (offline), then checked the way the
cluster would check it (the RayService CRD schema, with unknown fields rejected), the way Ray
Serve would (ServeDeploySchema, AppArgs, AutoscalingConfig), and against the promises the
manifests make: no work on the head, replicas that fit the worker groups, GPUs shared as
configured, requests and limits everywhere, keys from the Secret, volumes where the app looks.
"""

import copy
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
CRD_PATH = REPO.parent / "shared" / "kuberay" / "ray.io_rayservices.yaml"
API_KEYS_SECRET = "qwen3-search-api-keys"
MODEL_CACHE_CLAIM = "qwen3-search-model-cache"
INDEX_CLAIM = "qwen3-search-index"
KUBERAY_NAME_LIMIT = 47
ZERO_DOWNTIME_STRATEGIES = {"NewCluster", "NewClusterWithIncrementalUpgrade"}

try:
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pyyaml built without libyaml
    _Loader = yaml.SafeLoader


def _load_generator() -> Any:
    spec = importlib.util.spec_from_file_location("k8s_generate", K8S / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


generate = _load_generator()
TARGETS = list(generate.LAYERS)
OVERLAYS = [t for t in TARGETS if t.startswith("overlays/")]
POSTGRES_TARGETS = [t for t in TARGETS if "components/postgres" in generate.LAYERS[t]]
"""Collections in PostgreSQL (CloudNativePG): no index pod, no index volume (tests/k8s/test_postgres_manifests.py)."""


# ---------------------------------------------------------------- building and reading


@cache
def build(target: str) -> tuple[dict[str, Any], ...]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH: cannot build the kustomizations")
    result = subprocess.run(["kubectl", "kustomize", str(K8S / target)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, f"kubectl kustomize {target} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.load_all(result.stdout, Loader=_Loader) if doc)


def objects(target: str, kind: str) -> list[dict[str, Any]]:
    return [doc for doc in build(target) if doc["kind"] == kind]


def rayservice(target: str) -> dict[str, Any]:
    (service,) = objects(target, "RayService")
    return service


def serve_config(target: str) -> dict[str, Any]:
    return yaml.safe_load(rayservice(target)["spec"]["serveConfigV2"])


def app_args(target: str) -> Any:
    from deployments.config import AppArgs, IndexConfig

    if target in POSTGRES_TARGETS and "backend" not in IndexConfig.model_fields:
        pytest.skip("IndexConfig has no `backend` field yet: index.backend: postgres does not validate")

    (application,) = serve_config(target)["applications"]
    return AppArgs.model_validate(application["args"])


def ray_groups(target: str) -> list[tuple[str, dict[str, Any]]]:
    """(name, group spec) of the head ("head") and of every worker group."""
    cluster = rayservice(target)["spec"]["rayClusterConfig"]
    return [("head", cluster["headGroupSpec"])] + [(g["groupName"], g) for g in cluster["workerGroupSpecs"]]


def pod_specs(target: str) -> list[tuple[str, dict[str, Any]]]:
    """(owner, pod template) of every pod the kustomization makes: Ray groups and Jobs."""
    pods = [(name, group["template"]) for name, group in ray_groups(target)]
    pods += [(f"job/{job['metadata']['name']}", job["spec"]["template"]) for job in objects(target, "Job")]
    return pods


def ray_container(group: dict[str, Any]) -> dict[str, Any]:
    return group["template"]["spec"]["containers"][0]  # KubeRay: the Ray container is the first


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def volume_under(pod: dict[str, Any], container: dict[str, Any], path: str) -> dict[str, Any] | None:
    """The volume whose mount holds `path`, if any."""
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        if path == mount["mountPath"] or path.startswith(mount["mountPath"].rstrip("/") + "/"):
            return volumes[mount["name"]]
    return None


_QUANTITY = re.compile(r"^([0-9.]+(?:[eE][-+]?[0-9]+)?)([a-zA-Z]*)$")
_SUFFIX = {"": 1, "m": 1e-3, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value: Any) -> float:
    """A Kubernetes quantity ("500m", "4Gi", 2) as a number."""
    match = _QUANTITY.match(str(value))
    assert match and match.group(2) in _SUFFIX, f"not a Kubernetes quantity: {value!r}"
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def ray_resources(group: dict[str, Any]) -> dict[str, float]:
    """Ray's logical resources of one pod of `group`, as KubeRay starts it."""
    params = group.get("rayStartParams", {})
    limits = ray_container(group)["resources"]["limits"]
    resources = {
        "CPU": float(params["num-cpus"]) if "num-cpus" in params else quantity(limits["cpu"]),
        "GPU": float(params["num-gpus"]) if "num-gpus" in params else quantity(limits.get("nvidia.com/gpu", 0)),
        "memory": quantity(params["memory"]) if "memory" in params else quantity(limits["memory"]),
    }
    if "resources" in params:  # '"{\"name\": amount}"', as `ray start --resources` takes it
        resources |= json.loads(params["resources"].strip('"').replace('\\"', '"'))
    return resources


def replica_demands(target: str) -> dict[str, tuple[int, dict[str, float]]]:
    """deployment -> (replicas at most, Ray resources of one replica)."""
    args = app_args(target)

    def demand(options: Any) -> tuple[int, dict[str, float]]:
        actor = options.ray_actor_options
        need = {"CPU": float(actor.get("num_cpus", 1)), "GPU": float(actor.get("num_gpus", 0)),
                "memory": float(actor.get("memory", 0))} | {k: float(v) for k, v in actor.get("resources", {}).items()}
        autoscaling = options.autoscaling_config
        return (autoscaling["max_replicas"] if autoscaling else options.num_replicas or 1), need

    demands = {f"{kind}[{i}]": demand(m.deployment) for kind, models in
               (("embedding", args.embedding_models), ("reranker", args.reranker_models)) for i, m in enumerate(models)}
    demands["APIIngress"] = demand(args.ingress)
    demands["SearchPipeline"] = demand(args.pipeline)
    if getattr(args.index, "backend", "embedded") == "embedded":  # postgres: no IndexShard deployments
        for shard in range(args.index.shards):
            demands[f"IndexShard-{shard}"] = demand(args.index.deployment)
    return demands


def walk(node: Any, key: str) -> list[Any]:
    """Every value stored under `key` anywhere in `node`."""
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append(v)
            found += walk(v, key)
    elif isinstance(node, list):
        for item in node:
            found += walk(item, key)
    return found


# ---------------------------------------------------------------- builds and schema


def test_every_kustomization_is_generated() -> None:
    """A kustomization missing from generate.LAYERS would keep a stale (or no) serveConfigV2."""
    folders = {str(p.parent.relative_to(K8S)) for p in K8S.rglob("kustomization.yaml")
               if yaml.safe_load(p.read_text())["kind"] == "Kustomization"}
    assert folders == set(TARGETS)


@pytest.mark.parametrize("target", TARGETS)
def test_kustomization_builds_the_whole_service(target: str) -> None:
    kinds = sorted(doc["kind"] for doc in build(target))
    assert kinds.count("RayService") == 1
    assert {"PersistentVolumeClaim", "PodMonitor"} <= set(kinds)
    claims = {pvc["metadata"]["name"] for pvc in objects(target, "PersistentVolumeClaim")}
    used = {v["persistentVolumeClaim"]["claimName"] for _, pod in pod_specs(target)
            for v in pod["spec"].get("volumes", []) if "persistentVolumeClaim" in v}
    if target in POSTGRES_TARGETS:
        assert used == claims == {MODEL_CACHE_CLAIM}
        assert kinds.count("Cluster") == 1
    else:
        assert used == claims == {MODEL_CACHE_CLAIM, INDEX_CLAIM}


@cache
def strict_rayservice_schema() -> dict[str, Any]:
    """The CRD's v1 schema with unknown fields rejected, as the API server's pruning would drop them."""
    if not CRD_PATH.is_file():
        pytest.skip(f"the KubeRay CRD is not at {CRD_PATH}: cannot validate against its schema")
    crd = yaml.load(CRD_PATH.read_text(encoding="utf-8"), Loader=_Loader)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for item in node:
                close(item)

    close(schema)
    return schema


def schema_errors(document: dict[str, Any]) -> list[str]:
    from jsonschema import Draft7Validator

    validator = Draft7Validator(strict_rayservice_schema())
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.mark.parametrize("target", TARGETS)
def test_rayservice_matches_the_crd_schema(target: str) -> None:
    assert schema_errors(rayservice(target)) == []


def test_schema_check_rejects_a_misspelt_field() -> None:
    """The strict schema really catches what the CRD alone lets through (e.g. `minReplica`)."""
    document = copy.deepcopy(rayservice("overlays/gpu"))
    document["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["minReplica"] = 1
    assert any("minReplica" in error for error in schema_errors(document))


# ---------------------------------------------------------------- the embedded Serve config


@pytest.mark.parametrize("target", TARGETS)
def test_serve_config_is_the_generated_one(target: str) -> None:
    """The overlay really applies its generated patch (a forgotten patch inherits the base's)."""
    assert serve_config(target) == generate.serve_config(target)


@pytest.mark.parametrize("target", TARGETS)
def test_serve_config_validates_with_ray_serve(target: str) -> None:
    from ray.serve.config import AutoscalingConfig
    from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

    config = serve_config(target)
    ServeDeploySchema.model_validate(config)
    # ServeDeploySchema ignores unknown keys; a misspelt one would silently do nothing.
    assert set(config) <= set(ServeDeploySchema.model_fields)
    for application in config["applications"]:
        assert set(application) <= set(ServeApplicationSchema.model_fields)
    assert config["http_options"]["host"] == "0.0.0.0"
    autoscaling_configs = walk(config, "autoscaling_config")
    assert autoscaling_configs, "no autoscaling_config: nothing would scale"
    for autoscaling in autoscaling_configs:
        if autoscaling is not None:
            AutoscalingConfig.model_validate(autoscaling)


@pytest.mark.parametrize("target", TARGETS)
def test_application_args_validate_as_app_args(target: str) -> None:
    args = app_args(target)  # raises on a field AppArgs does not know or a bad value
    model_autoscaling = [m.deployment.autoscaling_config for m in args.embedding_models + args.reranker_models]
    assert all(a and a["max_replicas"] > a["min_replicas"] for a in model_autoscaling), \
        "every model deployment should be able to scale"


# ---------------------------------------------------------------- cluster invariants


@pytest.mark.parametrize("target", TARGETS)
def test_rayservice_names_fit_kuberay(target: str) -> None:
    service = rayservice(target)
    assert len(service["metadata"]["name"]) <= KUBERAY_NAME_LIMIT
    assert len(service["spec"]["serveService"]["metadata"]["name"]) <= 63  # a DNS label


@pytest.mark.parametrize("target", TARGETS)
def test_head_runs_no_replicas_and_has_no_gpu(target: str) -> None:
    head = rayservice(target)["spec"]["rayClusterConfig"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert float(head["rayStartParams"].get("num-gpus", "0")) == 0
    for container in head["template"]["spec"]["containers"]:
        for section in ("requests", "limits"):
            assert "nvidia.com/gpu" not in container["resources"].get(section, {})


@pytest.mark.parametrize("target", TARGETS)
def test_worker_group_replica_bounds(target: str) -> None:
    for name, group in ray_groups(target)[1:]:
        assert 0 <= group["minReplicas"] <= group["maxReplicas"], name
        assert group["minReplicas"] <= group.get("replicas", group["minReplicas"]) <= group["maxReplicas"], name


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_has_requests_and_limits(target: str) -> None:
    containers = [(owner, c) for owner, pod in pod_specs(target)
                  for c in pod["spec"].get("containers", []) + pod["spec"].get("initContainers", [])]
    autoscaler = rayservice(target)["spec"]["rayClusterConfig"].get("autoscalerOptions", {})
    containers.append(("autoscaler", {"name": "autoscaler", "resources": autoscaler.get("resources", {})}))
    for owner, container in containers:
        resources = container["resources"]
        for resource in ("cpu", "memory"):
            request, limit = resources["requests"][resource], resources["limits"][resource]
            assert quantity(request) <= quantity(limit), f"{owner}/{container['name']} {resource}"
        for extended in set(resources["limits"]) - {"cpu", "memory"}:  # GPUs: request == limit
            assert quantity(resources["requests"].get(extended, resources["limits"][extended])) == \
                quantity(resources["limits"][extended])


@pytest.mark.parametrize("target", TARGETS)
def test_every_replica_fits_a_worker_pod(target: str) -> None:
    pods = {name: ray_resources(group) for name, group in ray_groups(target)}
    for deployment, (_, need) in replica_demands(target).items():
        fitting = [name for name, has in pods.items() if all(has.get(r, 0) >= amount for r, amount in need.items())]
        assert fitting, f"no pod can hold one {deployment} replica ({need})"
        assert fitting != ["head"], f"{deployment} could only run on the head"


@pytest.mark.parametrize("target", TARGETS)
def test_replicas_at_max_fit_the_groups_at_max(target: str) -> None:
    """Summed per resource: the autoscaler can never be asked for more than maxReplicas allow."""
    capacity: dict[str, float] = {}
    for name, group in ray_groups(target):
        count = 1 if name == "head" else group["maxReplicas"]
        for resource, amount in ray_resources(group).items():
            capacity[resource] = capacity.get(resource, 0) + count * amount
    demand: dict[str, float] = {}
    for replicas, need in replica_demands(target).values():
        for resource, amount in need.items():
            demand[resource] = demand.get(resource, 0) + replicas * amount
    for resource, amount in demand.items():
        assert amount <= capacity.get(resource, 0) + 1e-9, f"{resource}: {amount} needed, {capacity.get(resource)}"


@pytest.mark.parametrize("target", TARGETS)
def test_no_replica_can_land_on_the_head(target: str) -> None:
    """The head offers CPU 0; a replica asking no CPU, GPU or custom resource could still go there."""
    for deployment, (_, need) in replica_demands(target).items():
        assert need["CPU"] > 0 or need["GPU"] > 0 or set(need) - {"CPU", "GPU", "memory"}, deployment


def gpu_groups(target: str) -> list[dict[str, Any]]:
    return [g for _, g in ray_groups(target)[1:] if "nvidia.com/gpu" in ray_container(g)["resources"]["limits"]]


@pytest.mark.parametrize("target", ["overlays/gpu", "overlays/gpu-8b"])
def test_gpu_workers_are_schedulable_on_gpu_nodes(target: str) -> None:
    (group,) = gpu_groups(target)
    spec = group["template"]["spec"]
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    assert spec.get("nodeSelector") or spec.get("affinity", {}).get("nodeAffinity")
    assert "num-gpus" not in group["rayStartParams"]  # KubeRay derives it from the limit
    assert group["maxReplicas"] > group["minReplicas"] >= 1
    assert group["idleTimeoutSeconds"] > 0


def test_gpu_overlay_shares_one_gpu_between_the_small_models() -> None:
    args = app_args("overlays/gpu")
    (group,) = gpu_groups("overlays/gpu")
    gpus_per_pod = quantity(ray_container(group)["resources"]["limits"]["nvidia.com/gpu"])
    fractions = [m.deployment.ray_actor_options["num_gpus"] for m in args.embedding_models + args.reranker_models]
    assert all(0 < f < 1 for f in fractions)
    assert sum(fractions) <= gpus_per_pod  # one Embedder and one Reranker replica fit one pod
    cpus = [m.deployment.ray_actor_options["num_cpus"] for m in args.embedding_models + args.reranker_models]
    assert sum(cpus) <= quantity(ray_container(group)["resources"]["limits"]["cpu"])


def test_gpu_8b_overlay_gives_each_large_model_whole_gpus() -> None:
    args = app_args("overlays/gpu-8b")
    for model in args.embedding_models + args.reranker_models:
        assert "8B" in model.model
        num_gpus = model.deployment.ray_actor_options["num_gpus"]
        assert num_gpus >= 1 and float(num_gpus).is_integer()


@pytest.mark.parametrize("target", ["overlays/gpu", "overlays/gpu-8b"])
def test_gpu_overlays_serve_both_models_with_vllm(target: str) -> None:
    from deployments.engine.vllm_options import derive_gpu_memory_utilization

    args = app_args(target)
    for model in args.embedding_models + args.reranker_models:
        assert (model.backend, model.device, model.dtype) == ("vllm", "cuda", "bfloat16")
        # vLLM's share of the device follows the replica's: the replicas of one pod fit together.
        assert derive_gpu_memory_utilization(model.deployment.ray_actor_options["num_gpus"]) <= 0.9
    shares = [derive_gpu_memory_utilization(m.deployment.ray_actor_options["num_gpus"])
              for m in args.embedding_models + args.reranker_models if m.deployment.ray_actor_options["num_gpus"] < 1]
    assert sum(shares) <= 0.9


@pytest.mark.parametrize("target", ["base", "overlays/cpu"])
def test_cpu_targets_keep_the_default_backend(target: str) -> None:
    args = app_args(target)
    assert {m.backend for m in args.embedding_models + args.reranker_models} == {"auto"}


# ---------------------------------------------------------------- operations


@pytest.mark.parametrize("target", TARGETS)
def test_autoscaling_is_on(target: str) -> None:
    cluster = rayservice(target)["spec"]["rayClusterConfig"]
    assert cluster["enableInTreeAutoscaling"] is True
    assert cluster["autoscalerOptions"]["idleTimeoutSeconds"] > 0


@pytest.mark.parametrize("target", TARGETS)
def test_upgrades_start_a_new_cluster(target: str) -> None:
    strategy = rayservice(target)["spec"]["upgradeStrategy"]
    assert strategy["type"] in ZERO_DOWNTIME_STRATEGIES  # the CRD does not enumerate them
    if strategy["type"] == "NewClusterWithIncrementalUpgrade":
        assert strategy["clusterUpgradeOptions"]["gatewayClassName"]


@pytest.mark.parametrize("target", TARGETS)
def test_probes_reflect_serve_health(target: str) -> None:
    """KubeRay injects Serve-aware probes only into containers without their own; a worker probe we
    write must keep the Serve proxy check, and the port it checks must be the Serve port."""
    config = serve_config(target)
    service_ports = {p["name"]: p["port"] for p in rayservice(target)["spec"]["serveService"]["spec"]["ports"]}
    assert service_ports["serve"] == config["http_options"]["port"]
    for name, group in ray_groups(target):
        container = ray_container(group)
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["serve"] == config["http_options"]["port"], name
        probe = container.get("readinessProbe")
        if probe is not None and name != "head":
            assert "/-/healthz" in json.dumps(probe), f"{name}: readiness without the Serve proxy check"


@pytest.mark.parametrize("target", TARGETS)
def test_podmonitor_scrapes_every_ray_pod(target: str) -> None:
    (monitor,) = objects(target, "PodMonitor")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert "metrics" in {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]}
    for name, group in ray_groups(target):
        labels = group["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"{name} pods are not scraped"
        ports = {p["name"]: p["containerPort"] for p in ray_container(group)["ports"]}
        assert ports["metrics"] == int(group["rayStartParams"]["metrics-export-port"]) == 8080, name


@pytest.mark.parametrize("target", TARGETS)
def test_api_keys_come_from_the_secret(target: str) -> None:
    for name, group in ray_groups(target):  # an ingress replica may be placed on any Ray pod
        container = ray_container(group)
        env = env_of(container)
        assert "QWEN3_SEARCH_API_KEYS" not in env, f"{name}: keys in plain text"
        volume = volume_under(group["template"], container, env["QWEN3_SEARCH_API_KEYS_FILE"])
        assert volume is not None, f"{name}: the keys file is on no volume"
        assert volume["secret"]["secretName"] == API_KEYS_SECRET
        assert not volume["secret"].get("optional", False), "without the Secret the API would be open"
        assert env["QWEN3_SEARCH_API_KEYS_FILE"].endswith("/api-keys")  # the Secret's key (docs)


@pytest.mark.parametrize("target", TARGETS)
def test_model_cache_volume_holds_hf_home(target: str) -> None:
    """Every pod that can run a model keeps its downloads on the shared cache volume."""
    model_pods = [(n, g) for n, g in ray_groups(target)
                  if n not in ("head", "index") and (not gpu_groups(target) or g in gpu_groups(target))]
    assert model_pods
    for _, pod in pod_specs(target):
        container = pod["spec"]["containers"][0]
        if "HF_HOME" in env_of(container):
            volume = volume_under(pod, container, env_of(container)["HF_HOME"])
            assert volume and volume["persistentVolumeClaim"]["claimName"] == MODEL_CACHE_CLAIM
    for name, group in model_pods:
        assert "HF_HOME" in env_of(ray_container(group)), name


@pytest.mark.parametrize("target", [t for t in TARGETS if t not in POSTGRES_TARGETS])
def test_index_lives_on_its_volume_on_one_pod(target: str) -> None:
    storage_path = app_args(target).index.storage_path
    mounting = [(n, g) for n, g in ray_groups(target)
                if any(v.get("persistentVolumeClaim", {}).get("claimName") == INDEX_CLAIM
                       for v in g["template"]["spec"].get("volumes", []))]
    assert len(mounting) == 1, "the ReadWriteOnce index volume is mounted by one group only"
    name, group = mounting[0]
    assert group["maxReplicas"] == 1
    env = env_of(ray_container(group))
    assert env["QWEN3_SEARCH_DATA_DIR"] == storage_path
    volume = volume_under(group["template"], ray_container(group), storage_path)
    assert volume and volume["persistentVolumeClaim"]["claimName"] == INDEX_CLAIM
    shard_resources = app_args(target).index.deployment.ray_actor_options.get("resources", {})
    assert shard_resources and set(shard_resources) <= set(ray_resources(group)), \
        "shards must ask for a resource only the index pod offers"


@pytest.mark.parametrize("target", ["overlays/gpu", "overlays/gpu-8b"])
def test_preload_job_fetches_the_served_models(target: str) -> None:
    args = app_args(target)
    hub_models = {m.model for m in args.embedding_models + args.reranker_models if not m.model.startswith("/")}
    (job,) = objects(target, "Job")  # the preload-weights component
    assert set(env_of(job["spec"]["template"]["spec"]["containers"][0])["MODELS"].split()) == hub_models


@pytest.mark.parametrize("target", OVERLAYS)
def test_overlay_images_are_pinned_and_match_ray(target: str) -> None:
    images = {c["image"] for _, pod in pod_specs(target) for c in pod["spec"]["containers"]}
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", f"{image}: pin a tag"
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    ray_image_tag = re.search(r"ARG RAY_IMAGE=rayproject/ray:([0-9.]+)-", dockerfile)
    assert ray_image_tag, "Dockerfile: ARG RAY_IMAGE=rayproject/ray:<version>-..."
    assert rayservice(target)["spec"]["rayClusterConfig"]["rayVersion"] == ray_image_tag.group(1)


# ---------------------------------------------------------------- the generator


def test_generated_serve_configs_are_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(K8S / "generate.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_check_detects_an_edited_serve_config(tmp_path: Path) -> None:
    shutil.copytree(K8S, tmp_path / "k8s")
    config = yaml.safe_load((REPO / "serve_config.yaml").read_text(encoding="utf-8"))
    config["applications"][0]["args"]["limits"]["max_documents_per_request"] += 1
    (tmp_path / "serve_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    check = [sys.executable, str(tmp_path / "k8s" / "generate.py"), "--check"]
    result = subprocess.run(check, capture_output=True, text=True)
    assert result.returncode == 1
    for target in TARGETS:  # no layer overrides this limit, so every generated file is stale
        assert f"k8s/{target}/serve-config.generated.yaml" in result.stderr
    subprocess.run([sys.executable, str(tmp_path / "k8s" / "generate.py")], check=True, capture_output=True)
    assert subprocess.run(check, capture_output=True, text=True).returncode == 0


def test_deep_merge_rules() -> None:
    base = {"keep": 1, "drop": 2, "nested": {"a": 1, "b": 2}, "models": [{"x": 1, "y": 1}, {"x": 2}],
            "tags": ["a", "b"]}
    patch = {"drop": None, "nested": {"b": 3}, "models": [{"y": 5}], "tags": ["c"], "new": {"z": 1}}
    assert generate.deep_merge(base, patch) == {
        "keep": 1, "nested": {"a": 1, "b": 3}, "models": [{"x": 1, "y": 5}, {"x": 2}], "tags": ["c"],
        "new": {"z": 1}}
    assert base["nested"] == {"a": 1, "b": 2}  # inputs untouched
    assert generate.deep_merge([{"a": 1}], [{}, {"b": 2}]) == [{"a": 1}, {"b": 2}]
