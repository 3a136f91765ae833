"""The serving layer: Ray Serve deployments and admission.

`ingress` (the HTTP entry point), `replicas` (Embedder, Reranker), `batcher` (token-budget
batching and admission), `pipeline` (SearchPipeline) and `sharded_index` (the embedded index
over IndexShard handles). Import the modules you need; nothing is imported here.
"""
