"""The PostgreSQL overlays (k8s/components/postgres, postgres-pooler), checked without a cluster.

Built with `kubectl kustomize`, the CloudNativePG objects are validated strictly against the CRDs
in ../shared/cloudnative-pg/ (unknown fields rejected, as the KubeRay manifests are), and the
wiring is checked: 3 instances with pgvector, the app on the `-rw` / `-ro` services (or the
poolers in front of them) with the operator's `<cluster>-app` secret, no password in plain text,
no index worker group and no index volume, and `index.backend: postgres` in the serveConfigV2.
"""

import copy
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from deployments.index.postgres_config import dsn_has_password

from .test_manifests import (
    INDEX_CLAIM,
    POSTGRES_TARGETS,
    _Loader,
    build,
    env_of,
    objects,
    quantity,
    ray_container,
    ray_groups,
    ray_resources,
    serve_config,
)

CNPG = Path(__file__).resolve().parents[3] / "shared" / "cloudnative-pg"
CRDS = {"Cluster": CNPG / "postgresql.cnpg.io_clusters.yaml", "Pooler": CNPG / "postgresql.cnpg.io_poolers.yaml"}
PIPELINE_RESOURCE = "qwen3_pipeline"
DB_ENV = ("QWEN3_SEARCH_POSTGRES_DSN", "QWEN3_SEARCH_POSTGRES_READ_DSN", "PGUSER", "QWEN3_SEARCH_POSTGRES_PASSWORD")


@cache
def strict_schema(kind: str) -> dict[str, Any]:
    """The CRD's v1 schema with unknown fields rejected (as in test_manifests.strict_rayservice_schema)."""
    path = CRDS[kind]
    if not path.is_file():
        pytest.skip(f"the CloudNativePG CRD is not at {path}: cannot validate against its schema")
    crd = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
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

    validator = Draft7Validator(strict_schema(document["kind"]))
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def cluster(target: str) -> dict[str, Any]:
    (found,) = objects(target, "Cluster")
    return found


def pipeline_groups(target: str) -> list[tuple[str, dict[str, Any]]]:
    """The Ray groups a SearchPipeline replica can be placed on: those offering its custom resource."""
    return [(n, g) for n, g in ray_groups(target) if ray_resources(g).get(PIPELINE_RESOURCE, 0) > 0]


def raw_args(target: str) -> dict[str, Any]:
    (application,) = serve_config(target)["applications"]
    return application["args"]


# ---------------------------------------------------------------- schema


@pytest.mark.parametrize("target", POSTGRES_TARGETS)
def test_cloudnative_pg_objects_match_their_crds(target: str) -> None:
    documents = [d for d in build(target) if d["apiVersion"] == "postgresql.cnpg.io/v1"]
    assert {d["kind"] for d in documents} >= {"Cluster"}
    for document in documents:
        assert schema_errors(document) == [], document["metadata"]["name"]


def test_schema_check_rejects_misspelt_fields() -> None:
    document = copy.deepcopy(cluster(POSTGRES_TARGETS[0]))
    document["spec"]["instance"] = 3  # instances
    document["spec"]["postgresql"]["extensions"][0]["imag"] = {}
    errors = schema_errors(document)
    assert any("'instance'" in e for e in errors) and any("'imag'" in e for e in errors)
    pooler = copy.deepcopy(objects("overlays/gpu-postgres", "Pooler")[0])
    pooler["spec"]["pgbouncer"]["pool_mode"] = "transaction"  # poolMode
    assert any("pool_mode" in e for e in schema_errors(pooler))


# ---------------------------------------------------------------- the database


@pytest.mark.parametrize("target", POSTGRES_TARGETS)
def test_cluster_has_three_instances_pgvector_storage_and_resources(target: str) -> None:
    spec = cluster(target)["spec"]
    assert spec["instances"] == 3
    extension_images = [e["image"]["reference"] for e in spec["postgresql"].get("extensions", [])]
    bootstrap_sql = " ".join(spec["bootstrap"]["initdb"].get("postInitApplicationSQL", []))
    assert any("pgvector" in image for image in extension_images), "no pgvector image volume"
    assert "CREATE EXTENSION IF NOT EXISTS vector" in bootstrap_sql  # pgvector is not trusted: the bootstrap
    for image in [spec["imageName"], *extension_images]:
        name, _, tag = image.rpartition(":")
        assert name and tag and tag != "latest", f"{image}: pin a tag"
    for storage in (spec["storage"], spec["walStorage"]):
        assert storage["storageClass"] and quantity(storage["size"]) > 0
    requests, limits = spec["resources"]["requests"], spec["resources"]["limits"]
    for resource in ("cpu", "memory"):
        assert quantity(requests[resource]) <= quantity(limits[resource])
    assert requests["memory"] == limits["memory"]  # PostgreSQL sizes its caches from a fixed budget
    assert spec["postgresql"]["synchronous"]["number"] >= 1  # an acknowledged COMMIT is on two nodes
    assert spec["affinity"]["enablePodAntiAffinity"] is True
    assert len(f"{cluster(target)['metadata']['name']}-rw") <= 63


@pytest.mark.parametrize("target", POSTGRES_TARGETS)
def test_embedded_index_group_and_volume_are_gone(target: str) -> None:
    assert "index" not in [name for name, _ in ray_groups(target)]
    assert INDEX_CLAIM not in {p["metadata"]["name"] for p in objects(target, "PersistentVolumeClaim")}
    for name, group in ray_groups(target):
        assert "QWEN3_SEARCH_DATA_DIR" not in env_of(ray_container(group)), name
        assert "qwen3_index" not in ray_resources(group), name
    args = raw_args(target)
    assert args["index"]["backend"] == "postgres"
    assert "resources" not in args["index"].get("deployment", {}).get("ray_actor_options", {})


# ---------------------------------------------------------------- the app's connection


def _services(target: str) -> tuple[str, str]:
    """The hosts the app should write to and search on."""
    name = cluster(target)["metadata"]["name"]
    poolers = {p["spec"]["type"]: p for p in objects(target, "Pooler")}
    for pooler in poolers.values():
        assert pooler["spec"]["cluster"]["name"] == name
        assert pooler["spec"]["pgbouncer"]["poolMode"] == "transaction"
    rw = poolers["rw"]["metadata"]["name"] if "rw" in poolers else f"{name}-rw"
    ro = poolers["ro"]["metadata"]["name"] if "ro" in poolers else f"{name}-ro"
    return rw, ro


@pytest.mark.parametrize("target", POSTGRES_TARGETS)
def test_pipeline_pods_reach_rw_and_ro_with_the_operator_secret(target: str) -> None:
    pipeline = raw_args(target)["pipeline"]
    assert pipeline["ray_actor_options"]["resources"] == {PIPELINE_RESOURCE: 1}
    assert pipeline.get("autoscaling_config"), "the stateless pipeline should scale with search load"
    groups = pipeline_groups(target)
    assert [name for name, _ in groups] == ["cpu-workers"]
    secret = f"{cluster(target)['metadata']['name']}-app"
    rw, ro = _services(target)
    for name, group in groups:
        env = {e["name"]: e for e in ray_container(group)["env"]}
        assert set(DB_ENV) <= set(env), name
        dsn, read_dsn = env["QWEN3_SEARCH_POSTGRES_DSN"]["value"], env["QWEN3_SEARCH_POSTGRES_READ_DSN"]["value"]
        assert urlsplit(dsn).hostname == rw and urlsplit(read_dsn).hostname == ro
        database = cluster(target)["spec"]["bootstrap"]["initdb"]["database"]
        assert urlsplit(dsn).path == urlsplit(read_dsn).path == f"/{database}"
        assert not dsn_has_password(dsn) and not dsn_has_password(read_dsn)
        assert "sslmode=require" in dsn
        for variable, key in (("PGUSER", "username"), ("QWEN3_SEARCH_POSTGRES_PASSWORD", "password")):
            assert "value" not in env[variable], f"{name}: {variable} in plain text"
            assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}


@pytest.mark.parametrize("target", POSTGRES_TARGETS)
def test_only_pipeline_pods_get_database_credentials(target: str) -> None:
    allowed = {name for name, _ in pipeline_groups(target)}
    for name, group in ray_groups(target):
        if name not in allowed:
            assert not set(DB_ENV) & set(env_of(ray_container(group))), f"{name} holds database credentials"
    for job in objects(target, "Job"):
        assert not set(DB_ENV) & set(env_of(job["spec"]["template"]["spec"]["containers"][0]))


def test_pooler_overlay_keeps_prepared_statements_and_resources() -> None:
    for pooler in objects("overlays/gpu-postgres", "Pooler"):
        assert int(pooler["spec"]["pgbouncer"]["parameters"]["max_prepared_statements"]) > 0
        (container,) = pooler["spec"]["template"]["spec"]["containers"]
        for resource in ("cpu", "memory"):
            assert quantity(container["resources"]["requests"][resource]) <= quantity(
                container["resources"]["limits"][resource])
