"""An in-memory double of the HTTP API, served through `httpx.MockTransport`.

It exists for what the real server cannot be made to do on demand: answer 429 or 503 to one
particular request, drop a connection, time out, advertise tiny limits. It speaks the same wire
types as the server (it builds its answers with `clients.types`), answers deterministically
(vectors and scores are hashes of the texts, so a test can compute the expected values), and
records every request it receives.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from clients.types import Limits

DIMENSIONS = 8


def fake_vector(text: str, dimensions: int = DIMENSIONS) -> np.ndarray:
    """The unit vector the fake server answers for `text`."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    vector = np.random.default_rng(seed).standard_normal(dimensions).astype(np.float32)
    return vector / np.linalg.norm(vector)


def fake_score(query: str, document: str) -> float:
    """The relevance score the fake reranker answers: a float32 value in [0, 1), like P(yes)."""
    digest = hashlib.sha256(f"{query}\x00{document}".encode()).digest()
    return float(np.float32(int.from_bytes(digest[:4], "little") / 2**32))


@dataclass
class Seen:
    method: str
    path: str
    body: Any
    headers: httpx.Headers


@dataclass
class FakeServer:
    limits: Limits = field(default_factory=lambda: Limits(max_inputs_per_request=64, max_documents_per_request=50,
                                                          max_request_bytes=1 << 20, auto_truncate=True))
    api_key: str | None = None
    seen: list[Seen] = field(default_factory=list)
    collections: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    _script: deque[tuple[str | None, Any]] = field(default_factory=deque)

    # ------------------------------------------------------------ scripting
    def then(self, action: Any, *, path: str | None = None) -> FakeServer:
        """Queue what the next request (to `path`, or any) gets instead of its answer.

        An action is an `httpx.Response`, an exception class from httpx (raised as the transport
        would), or the string "pass" (answer normally).
        """
        self._script.append((path, action))
        return self

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # ------------------------------------------------------------ the routes
    def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else None
        self.seen.append(Seen(request.method, request.url.path, body, request.headers))
        if self._script and self._script[0][0] in (None, request.url.path):
            _, action = self._script.popleft()
            if isinstance(action, httpx.Response):
                return action
            if isinstance(action, type) and issubclass(action, httpx.TransportError):
                raise action("scripted failure", request=request)
        if self.api_key and request.url.path != "/health" and \
                request.headers.get("authorization") != f"Bearer {self.api_key}":
            return error(401, "authentication_error", "missing or invalid API key", code="invalid_api_key")
        path = request.url.path
        if path == "/info":
            return answer({"version": "0.0.0-fake", "models": [], "limits": self.limits.model_dump()})
        if path == "/health":
            return answer({"status": "ok", "deployments": {"Embedder": "ok", "Reranker": "ok"}})
        if path == "/v1/embeddings":
            return self._embeddings(body)
        if path == "/v1/rerank":
            return self._rerank(body)
        if path == "/score":
            return self._score(body)
        if path.startswith("/v1/collections"):
            return self._collections(request.method, request.url.raw_path.decode().split("?")[0], body)
        return error(404, "not_found_error", f"no route {request.method} {path}")

    def _embeddings(self, body: dict[str, Any]) -> httpx.Response:
        texts = [body["input"]] if isinstance(body["input"], str) else body["input"]
        if len(texts) > self.limits.max_inputs_per_request:
            return error(413, "invalid_request_error", f"{len(texts)} inputs in one request", param="input",
                         code="request_too_large")
        if not texts:
            return error(422, "invalid_request_error", "input: give at least one input", param="input",
                         code="invalid_request")
        vectors = [fake_vector(t, body.get("dimensions") or DIMENSIONS) for t in texts]
        encoded: list[Any] = ([base64.b64encode(v.astype("<f4").tobytes()).decode() for v in vectors]
                              if body.get("encoding_format") == "base64" else [v.tolist() for v in vectors])
        tokens = sum(len(t.split()) for t in texts)
        return answer({"object": "list", "model": body.get("model") or "fake-embedder",
                       "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(encoded)],
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _rerank(self, body: dict[str, Any]) -> httpx.Response:
        documents = body["documents"]
        if len(documents) > self.limits.max_documents_per_request:
            return error(413, "invalid_request_error", f"{len(documents)} documents in one request",
                         param="documents", code="request_too_large")
        scores = np.array([fake_score(body["query"], d) for d in documents], dtype=np.float32)
        order = np.argsort(-scores, kind="stable").tolist()[: body.get("top_n")]
        keep = body.get("return_documents", True)
        results = [{"index": i, "relevance_score": float(scores[i]),
                    **({"document": {"text": documents[i]}} if keep else {})} for i in order]
        tokens = sum(len(d.split()) + 1 for d in documents)
        return answer({"id": uuid.uuid4().hex, "model": body.get("model") or "fake-reranker",
                       "usage": {"total_tokens": tokens, "prompt_tokens": tokens}, "results": results})

    def _score(self, body: dict[str, Any]) -> httpx.Response:
        queries, documents = body["queries"], body["documents"]
        queries = [queries] * len(documents) if isinstance(queries, str) else queries
        if len(queries) == 1:
            queries = queries * len(documents)
        if len(queries) != len(documents):  # checked first, as the server's request model does
            return error(422, "invalid_request_error", "give one query, or as many as documents")
        if len(documents) > self.limits.max_documents_per_request:
            return error(413, "invalid_request_error", "too many documents", param="documents")
        data = [{"index": i, "object": "score", "score": fake_score(q, d)}
                for i, (q, d) in enumerate(zip(queries, documents, strict=True))]
        return answer({"id": uuid.uuid4().hex, "object": "list", "created": 0, "model": "fake-reranker",
                       "data": data, "usage": {"prompt_tokens": len(data), "total_tokens": len(data)}})

    def _collections(self, method: str, raw_path: str, body: Any) -> httpx.Response:
        from urllib.parse import unquote

        parts = [unquote(p) for p in raw_path.split("/")[3:]]  # after /v1/collections
        if not parts:
            return answer({"collections": [self._record(n) for n in sorted(self.collections)]})
        name, rest = parts[0], parts[1:]
        if method == "PUT" and not rest:
            created = name not in self.collections
            self.collections.setdefault(name, {})
            return answer(self._record(name), status=201 if created else 200)
        if name not in self.collections:
            return error(404, "not_found_error", f"collection {name!r} not found", code="collection_not_found")
        store = self.collections[name]
        if method == "DELETE" and not rest:
            del self.collections[name]
            return answer({"name": name, "deleted": True})
        if method == "GET" and not rest:
            return answer(self._record(name))
        if rest == ["count"]:
            return answer({"collection": name, "count": len(store)})
        if rest == ["documents"] and method == "POST":
            documents = body["documents"]
            if len(documents) > self.limits.max_documents_per_upsert:
                return error(413, "invalid_request_error", f"{len(documents)} documents in one upload",
                             param="documents", code="request_too_large")
            ids = []
            for doc in documents:
                doc_id = doc.get("id") or uuid.uuid4().hex
                store[doc_id] = {"id": doc_id, "text": doc["text"], "metadata": doc.get("metadata")}
                ids.append(doc_id)
            return answer({"ids": ids, "count": len(ids)})
        if rest[:1] == ["documents"] and len(rest) == 2:
            doc_id = rest[1]
            if doc_id not in store:
                return error(404, "not_found_error", f"document {doc_id!r} not found", code="document_not_found")
            if method == "DELETE":
                del store[doc_id]
                return answer({"id": doc_id, "deleted": True})
            return answer(store[doc_id])
        if rest == ["search"]:
            queries = [body["query"]] if isinstance(body["query"], str) else body["query"]
            if len(queries) > self.limits.max_queries_per_search:
                return error(413, "invalid_request_error", "too many queries", param="query")
            answers = []
            for query in queries:
                hits = sorted(store.values(), key=lambda d: -fake_score(query, d["text"]))[: body.get("top_n", 10)]
                mode = body.get("mode", "dense")
                found_by = {"dense": {"dense": 1}, "lexical": {"lexical": 1}, "hybrid": {"dense": 2, "lexical": 1}}
                answers.append({"results": [{**h, "score": fake_score(query, h["text"]),
                                             "embedding_score": None if mode == "lexical" else 0.5,
                                             "lexical_score": None if mode == "dense" else 3.0,
                                             "retrievers": found_by[mode]}
                                            for h in hits], "timings": {"total_ms": 1.0}})
            return answer(answers[0] if isinstance(body["query"], str) else answers)
        return error(404, "not_found_error", "no route")

    def _record(self, name: str) -> dict[str, Any]:
        return {"name": name, "model": "fake-embedder", "dimensions": DIMENSIONS, "index": "auto",
                "count": len(self.collections[name]), "created_at": 1.0}


def answer(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx.Response:
    request_id = uuid.uuid4().hex
    return httpx.Response(status, json=payload, headers={"x-request-id": request_id, **(headers or {})})


def error(status: int, type_: str, message: str, *, param: str | None = None, code: str | None = None,
          headers: dict[str, str] | None = None, request_id: str | None = None) -> httpx.Response:
    """An error answer in the server's envelope."""
    body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    return httpx.Response(status, json=body, headers={"x-request-id": request_id or uuid.uuid4().hex,
                                                      **(headers or {})})
