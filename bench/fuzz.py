"""The long schema fuzz run: every operation of /openapi.json, many examples each, no 5xx allowed.

The test suite runs the same check briefly (tests/http/test_fuzz.py); this is the long run, against a
running server or in-process (the production code from the middleware down to SQLite and tiny random
models, Ray's transport replaced by a pickling handle: tests/http/local_stack.py).

    python bench/fuzz.py --examples 200                                  # in-process
    python bench/fuzz.py --url http://127.0.0.1:8000 --api-key KEY       # a running server (serve run ...)

Exit status 1 when any answer was a 5xx or a 4xx outside the error envelope; `--out` writes the report.
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.http.fuzzing import FuzzReport, fuzz  # noqa: E402

COLLECTION = "fuzz"
DOCUMENTS = [{"id": "a", "text": "the capital of China is Beijing", "metadata": {"k": 1, "tags": ["x"]}},
             {"id": "b", "text": "bananas are rich in potassium", "metadata": {"k": 2}}]


def _in_process(examples: int, seconds: float | None) -> FuzzReport:
    import schemathesis
    from schemathesis.python import asgi

    from deployments.config import LimitsConfig
    from deployments.engine.random_model import (
        build_fallback_tokenizer,
        find_qwen3_tokenizer,
        load_qwen3_tokenizer,
        write_random_model,
    )
    from tests.http.local_stack import build_local_stack

    work = Path(tempfile.mkdtemp(prefix="qwen3-search-fuzz-"))
    tokenizer = load_qwen3_tokenizer() if find_qwen3_tokenizer() else build_fallback_tokenizer()
    stack = build_local_stack(
        embedder_dir=write_random_model(work / "embedding", kind="embedding", tokenizer=tokenizer),
        reranker_dir=write_random_model(work / "reranker", kind="reranker", tokenizer=tokenizer),
        storage=work / "index", max_length=512,
        limits=LimitsConfig(max_inputs_per_request=64, max_documents_per_request=50, max_request_bytes=1 << 20,
                            max_documents_per_upsert=64, max_top_k=200, max_top_n=50))
    with asgi.get_client(stack.app) as client:
        return _run(schemathesis.openapi.from_asgi("/openapi.json", stack.app), client, {}, examples, seconds)


def _remote(url: str, api_key: str | None, examples: int, seconds: float | None) -> FuzzReport:
    import requests
    import schemathesis

    session = requests.Session()
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    session.headers.update(headers)
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=headers)
    return _run(schema, session, {"base_url": url}, examples, seconds, prefix=url)


def _run(schema: Any, client: Any, call_options: dict[str, Any], examples: int, seconds: float | None,
         prefix: str = "") -> FuzzReport:
    def ensure_collection() -> None:
        client.put(f"{prefix}/v1/collections/{COLLECTION}", json={})
        client.post(f"{prefix}/v1/collections/{COLLECTION}/documents", json={"documents": DOCUMENTS})

    def after(case: Any) -> None:
        if case.method.upper() == "DELETE" and case.path == "/v1/collections/{name}":
            ensure_collection()

    def send(method: str, path: str, query: dict, content: bytes) -> Any:
        return client.request(method, prefix + path, params=query, data=content,
                              headers={"content-type": "application/json"})

    ensure_collection()
    return fuzz(schema, lambda case: case.call(session=client, **call_options), examples=examples,
                collection=COLLECTION, after=after, seconds=seconds, send=send)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a running server; in-process when omitted")
    parser.add_argument("--api-key", help="the server's API key, if it has any")
    parser.add_argument("--examples", type=int, default=200, help="examples per operation, mode and path variant")
    parser.add_argument("--seconds", type=float, help="stop after this long")
    parser.add_argument("--out", type=Path, help="write the report as JSON here")
    args = parser.parse_args()
    report = (_remote(args.url, args.api_key, args.examples, args.seconds) if args.url
              else _in_process(args.examples, args.seconds))
    print(report.summary())
    for line in report.server_errors[:50] + report.bad_envelopes[:50] + report.not_generated:
        print("  ", line)
    if args.out:
        args.out.write_text(json.dumps({**report.__dict__, "statuses": dict(report.statuses)}, indent=2))
    return 1 if report.server_errors or report.bad_envelopes else 0


if __name__ == "__main__":
    sys.exit(main())
