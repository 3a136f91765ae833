"""serve_config.yaml: what `serve run` / `serve deploy` and the application builder accept."""

from pathlib import Path

import pytest
import yaml
from ray.serve.config import AutoscalingConfig
from ray.serve.schema import ServeDeploySchema

from deployments.config import AppArgs, DeploymentOptions

CONFIG = Path(__file__).resolve().parents[1] / "serve_config.yaml"


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def test_ray_accepts_the_config_and_the_builder_accepts_its_args(config):
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.import_path == "deployments.app:build_app" and app.route_prefix == "/"
    args = AppArgs.model_validate(app.args)
    assert args.embedding_models[0].model == "Qwen/Qwen3-Embedding-0.6B"
    assert args.reranker_models[0].model == "Qwen/Qwen3-Reranker-0.6B"
    for options in [m.deployment for m in args.embedding_models + args.reranker_models] + [args.ingress]:
        if options.autoscaling_config is not None:
            autoscaling = AutoscalingConfig.model_validate(options.autoscaling_config)
            assert autoscaling.target_ongoing_requests < 1e6  # ray.serve.llm's 1e9 default never scales up


def test_the_default_config_fits_a_two_core_machine(config):
    args = AppArgs.model_validate(config["applications"][0]["args"])
    models = args.embedding_models + args.reranker_models
    deployments: list[DeploymentOptions] = ([m.deployment for m in models] + [args.ingress, args.pipeline]
                                            + [args.index.deployment] * args.index.shards)
    at_start = sum(d.ray_actor_options.get("num_cpus", 1) * (d.num_replicas or (d.autoscaling_config or {}).get(
        "min_replicas", 1)) for d in deployments)
    at_most = sum(d.ray_actor_options.get("num_cpus", 1) * (d.num_replicas or (d.autoscaling_config or {}).get(
        "max_replicas", 1)) for d in deployments)
    assert at_start <= 2 and at_most <= 2, (at_start, at_most)
    assert all(d.ray_actor_options.get("num_gpus", 0) == 0 for d in deployments)


def test_environment_overrides_the_default_models(config):
    args = AppArgs.model_validate(config["applications"][0]["args"])
    updated = args.with_environment({"EMBEDDER_MODEL": "/models/emb", "RERANKER_MODEL": "/models/rr"})
    assert updated.embedding_models[0].model == "/models/emb" and updated.reranker_models[0].model == "/models/rr"
    assert args.with_environment({}).embedding_models[0].model == "Qwen/Qwen3-Embedding-0.6B"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"embedding_models": [{"deployment": {"autoscaling_config": {"min_replica": 1}}}]}, "min_replica"),
        ({"embedding_models": [{"deployment": {"num_replicas": 2, "autoscaling_config": {"max_replicas": 2}}}]},
         "not both"),
        ({"reranker_models": [{"deployment": {"ray_actor_options": {"num_cpu": 1}}}]}, "num_cpu"),
        ({"embedding_models": [{"deployment": {"autoscaling_config": {"min_replicas": 3, "max_replicas": 1}}}]},
         "max_replicas"),
        ({"index": {"deployment": {"num_replicas": 2}}}, "exactly one replica"),
        ({"embedding_models": [{"model": "a", "name": "x"}, {"model": "b", "name": "x"}]}, "unique"),
        ({"embeding_models": []}, "embeding_models"),
    ],
)
def test_config_mistakes_fail_at_build_time(change, message):
    with pytest.raises(ValueError, match=message):
        AppArgs.model_validate(change)


def test_environment_picks_backends_without_editing_the_config():
    from deployments.config import AppArgs

    args = AppArgs().with_environment({"EMBEDDER_BACKEND": "vllm", "RERANKER_BACKEND": "onnx",
                                       "QWEN3_SEARCH_INDEX_BACKEND": "postgres", "RERANKER_MODEL": "/m/r"})
    assert args.embedding_models[0].backend == "vllm" and args.reranker_models[0].backend == "onnx"
    assert args.index.backend == "postgres" and args.reranker_models[0].model == "/m/r"
    with pytest.raises(ValueError, match="backend"):
        AppArgs().with_environment({"QWEN3_SEARCH_INDEX_BACKEND": "mongo"})
