"""Starting the real Serve application on a local Ray for a benchmark, and stopping it."""

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_app(args: dict[str, Any], *, num_cpus: float, env: dict[str, str] | None = None,
              name: str = "bench") -> Iterator[str]:
    """Serve `build_app(args)` as application `name` on 127.0.0.1 and yield its base URL once /health
    answers 200; `env` is added to every Ray process's environment. Always shuts Ray down."""
    import ray
    from ray import serve

    from deployments.app import build_app

    port = free_port()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error", **(env or {})}})
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(args), name=name, route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while httpx.get(f"{url}/health", timeout=30).status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the application did not become healthy")
            time.sleep(1)
        yield url
    finally:
        serve.shutdown()
        ray.shutdown()


os.environ.setdefault("HF_HUB_OFFLINE", "1")
