"""A bounded schema fuzz run over `/openapi.json`, in-process (`local_stack.py`: the production code
from the middleware down to SQLite and the tiny models, Ray's transport replaced by a pickling handle).

Every operation, examples that fit the schema and examples that do not, collections included (a
collection with documents exists first, so uploads, fetches and searches get past the 404), and each
JSON body once more with a hostile mutation (`fuzzing.MUTATIONS`): no answer is a 5xx, and every 4xx
is the error envelope. The long run is `python bench/fuzz.py`.
"""

import pytest

from deployments.config import LimitsConfig
from tests.conftest import default_tokenizer_source
from tests.http.fuzzing import fuzz
from tests.http.local_stack import build_local_stack

EXAMPLES = 40  # per operation, mode and path variant: about 2,700 requests with the mutated ones
COLLECTION = "fuzz"


@pytest.fixture(scope="module")
def fuzz_stack(model_factory, tmp_path_factory):
    tokenizer = default_tokenizer_source()
    return build_local_stack(
        embedder_dir=model_factory("embedding", tokenizer), reranker_dir=model_factory("reranker", tokenizer),
        storage=tmp_path_factory.mktemp("fuzz-index"), max_length=512,
        limits=LimitsConfig(max_inputs_per_request=64, max_documents_per_request=50, max_request_bytes=1 << 20,
                            max_documents_per_upsert=64, max_top_k=200, max_top_n=50))


def test_no_generated_request_is_a_server_error(fuzz_stack):
    import schemathesis
    from schemathesis.python import asgi

    with asgi.get_client(fuzz_stack.app) as client:
        def ensure_collection() -> None:
            client.put(f"/v1/collections/{COLLECTION}", json={})
            client.post(f"/v1/collections/{COLLECTION}/documents", json={"documents": [
                {"id": "a", "text": "the capital of China is Beijing", "metadata": {"k": 1}},
                {"id": "b", "text": "bananas are rich in potassium", "metadata": {"k": 2}}]})

        def after(case) -> None:
            if case.method.upper() == "DELETE" and case.path == "/v1/collections/{name}":
                ensure_collection()

        ensure_collection()
        schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_stack.app)
        def send(method: str, path: str, query: dict, content: bytes):
            return client.request(method, path, params=query, data=content,
                                  headers={"content-type": "application/json"})

        report = fuzz(schema, lambda case: case.call(session=client), examples=EXAMPLES, collection=COLLECTION,
                      after=after, send=send)
    print(report.summary(), *report.not_generated, sep="\n")
    assert report.server_errors == [], "\n".join(report.server_errors[:20])
    assert report.bad_envelopes == [], "\n".join(report.bad_envelopes[:20])
    assert len(report.per_operation) >= 19 and report.requests > 300, report.summary()
