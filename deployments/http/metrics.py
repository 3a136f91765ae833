"""Prometheus metrics of the HTTP API, served at GET /metrics.

The ingress counts what it sees (requests, latency, tokens per model) and what the model
replicas report with each answer (their batch sizes and queue depth), so /metrics shows
the batching at work without a separate scrape of every replica. Ray's own metrics (port
8080 on each node, `ray_serve_*`) cover replica counts and Serve internals.
"""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..jobs import ReplicaReport

__all__ = ["APIMetrics", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class APIMetrics:
    """One registry per ingress replica (not the global one, which Ray's workers share)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("qwen3_search_requests", "HTTP requests answered, by route and status.",
                                ["route", "status"], registry=r)
        self.latency = Histogram("qwen3_search_request_duration_seconds", "Time to answer, by route.", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.model_requests = Counter("qwen3_search_model_requests", "Requests sent to each model.",
                                      ["model", "kind"], registry=r)
        self.inputs = Counter("qwen3_search_inputs", "Texts or documents processed, per model.", ["model"],
                              registry=r)
        self.tokens = Counter("qwen3_search_tokens", "Tokens processed by the model, per model.", ["model"],
                              registry=r)
        self.queue_time = Histogram("qwen3_search_queue_seconds", "Time a request waited in the replica's queue.",
                                    ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.inference_time = Histogram("qwen3_search_inference_seconds", "Compute time of a request's batches.",
                                        ["model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("qwen3_search_batch_size", "Inputs per forward pass, as reported by replicas.",
                                    ["model"], buckets=_BATCH_BUCKETS, registry=r)
        self.in_flight = Gauge("qwen3_search_in_flight_requests", "Requests this ingress is waiting on, per model.",
                               ["model"], registry=r)
        self.replica_queue_tokens = Gauge("qwen3_search_replica_queued_tokens",
                                          "Tokens queued in a model replica at its latest answer.",
                                          ["model", "replica"], registry=r)
        self.replica_queue_requests = Gauge("qwen3_search_replica_queued_requests",
                                            "Requests queued in a model replica at its latest answer.",
                                            ["model", "replica"], registry=r)

    def record_model_call(self, model: str, kind: str, inputs: int, tokens: int, queue_s: float,
                          inference_s: float, report: ReplicaReport) -> None:
        self.model_requests.labels(model, kind).inc()
        self.inputs.labels(model).inc(inputs)
        self.tokens.labels(model).inc(tokens)
        self.queue_time.labels(model).observe(queue_s)
        self.inference_time.labels(model).observe(inference_s)
        self.record_replica_report(model, report)

    def record_replica_report(self, model: str, report: ReplicaReport) -> None:
        """A replica's batches and queue, also from calls that went through the search pipeline."""
        for size in report.batch_sizes:
            self.batch_size.labels(model).observe(size)
        self.replica_queue_tokens.labels(model, report.replica).set(report.queued_tokens)
        self.replica_queue_requests.labels(model, report.replica).set(report.queued_requests)

    def render(self) -> bytes:
        return generate_latest(self.registry)
