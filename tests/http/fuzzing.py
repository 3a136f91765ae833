"""A bounded schema fuzz run: every operation of `/openapi.json`, examples that fit the schema and
examples that do not (schemathesis + hypothesis), each answer checked: never a 5xx, and every 4xx
in the error envelope. Used by tests/http/test_fuzz.py (in-process, a few dozen examples per
operation) and bench/fuzz.py (the long run, in-process or against a running server).

Schema-driven generation alone never writes what broke this service before (hypothesis writes no
lone surrogates, small numbers, shallow values, distinct ids), so each generated JSON body is also
sent once more with one hostile mutation in a random place (`MUTATIONS`): a lone surrogate in a
string or a key, an integer beyond 64 bits, NaN, a value nested hundreds of levels deep, a body
nested 100k levels deep, a document repeated in its own upload.
"""

import json
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from deployments.http.errors import error_dialect

__all__ = ["FuzzReport", "fuzz"]

_ENVELOPE = {"message", "type", "param", "code"}


@dataclass
class FuzzReport:
    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    """`METHOD path -> status: body` of every 5xx, with the request that caused it."""
    bad_envelopes: list[str] = field(default_factory=list)
    """4xx answers that are not `{"error": {"message", "type", "param", "code"}}`."""
    not_generated: list[str] = field(default_factory=list)
    """(operation, mode) pairs hypothesis could not generate examples for."""
    seconds: float = 0.0
    per_operation: dict[str, int] = field(default_factory=dict)
    mutated: int = 0
    """Requests sent with one of MUTATIONS applied (counted in `requests` too)."""

    def summary(self) -> str:
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (f"{self.requests} requests ({self.mutated} mutated) over {len(self.per_operation)} operations in "
                f"{self.seconds:.0f} s; "
                f"{len(self.server_errors)} server errors, {len(self.bad_envelopes)} answers outside the envelope; "
                f"statuses {by_status}")


def _describe(case: Any) -> str:
    body = getattr(case, "body", None)
    text = repr(body)
    return f"path={case.formatted_path} query={case.query} body={text[:300]}"


def _places(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every value inside a JSON value (the value itself included)."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _places(item, (*path, index))
    return found


def _replace(value: Any, path: tuple, new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], new)
    return copy


def _surrogate(body: Any, rng: random.Random) -> bytes | None:
    strings = [p for p in _places(body) if isinstance(_get(body, p), str)]
    if not strings:
        return None
    path = rng.choice(strings)
    text = _get(body, path)
    at = rng.randint(0, len(text))
    return json.dumps(_replace(body, path, text[:at] + rng.choice(["\ud800", "\udfff", "\udbff"]) + text[at:])
                      ).encode()


def _surrogate_key(body: Any, rng: random.Random) -> bytes | None:
    objects = [p for p in _places(body) if isinstance(_get(body, p), dict) and p]
    if not objects:
        return None
    path = rng.choice(objects)
    return json.dumps(_replace(body, path, {**_get(body, path), "k\ud800": 1})).encode()


def _huge_number(body: Any, rng: random.Random) -> bytes | None:
    places = [p for p in _places(body) if p and not isinstance(_get(body, p), dict | list)]
    if not places:
        return None
    return json.dumps(_replace(body, rng.choice(places), rng.choice([2**64, -(2**63) - 1, 10**40]))).encode()


def _not_a_number(body: Any, rng: random.Random) -> bytes | None:
    places = [p for p in _places(body) if p and not isinstance(_get(body, p), dict | list)]
    if not places:
        return None
    return json.dumps(_replace(body, rng.choice(places), rng.choice([float("nan"), float("inf")]))).encode()


def _deep_value(body: Any, rng: random.Random) -> bytes | None:
    places = [p for p in _places(body) if p]
    if not places:
        return None
    deep: Any = 1
    for _ in range(rng.choice([20, 200, 600])):
        deep = [deep] if rng.random() < 0.5 else {"d": deep}
    return json.dumps(_replace(body, rng.choice(places), deep)).encode()


def _deep_body(body: Any, rng: random.Random) -> bytes | None:
    depth = 100_000
    return (b"[" * depth + b"]" * depth) if rng.random() < 0.5 else (b'{"a":' * depth + b"1" + b"}" * depth)


def _repeated_document(body: Any, rng: random.Random) -> bytes | None:
    documents = body.get("documents") if isinstance(body, dict) else None
    if not isinstance(documents, list) or not documents or not isinstance(documents[0], dict):
        return None
    first = {**documents[0], "id": str(documents[0].get("id") or "twice")}
    return json.dumps({**body, "documents": [first, *documents[1:], dict(first)]}).encode()


def _get(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


MUTATIONS: dict[str, Callable[[Any, random.Random], bytes | None]] = {
    "lone surrogate": _surrogate, "lone surrogate in a key": _surrogate_key, "integer beyond 64 bits": _huge_number,
    "NaN or Infinity": _not_a_number, "value nested deep": _deep_value, "body nested 100k deep": _deep_body,
    "document repeated": _repeated_document,
}


def fuzz(schema: Any, call: Callable[[Any], Any], *, examples: int, collection: str,
         after: Callable[[Any], None] | None = None, seconds: float | None = None,
         send: Callable[[str, str, dict, bytes], Any] | None = None, seed: int = 0) -> FuzzReport:
    """Fuzz every operation of `schema` (a schemathesis OpenAPI schema) through `call(case) -> response`.

    Operations with a `{name}` path parameter run twice per mode: once with generated names, once on
    `collection` (created by the caller, so documents and searches get past the 404). `after(case)`
    runs after each call (e.g. to create `collection` again after a DELETE of it). `seconds` bounds
    the whole run (operations not reached are left out of the report's `per_operation`).
    `send(method, path, query, content)` sends raw JSON: with it, each JSON body is sent once more
    with one of `MUTATIONS` applied.
    """
    rng = random.Random(seed)
    import hypothesis
    from hypothesis import HealthCheck, Phase, settings
    from schemathesis import GenerationMode

    report = FuzzReport()
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        variants: list[dict[str, Any]] = [{}]
        if "{name}" in operation.path:
            variants.append({"name": collection})
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for fixed in variants:
                if seconds is not None and time.monotonic() - started > seconds:
                    report.seconds = time.monotonic() - started
                    return report
                strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed or None)

                @settings(max_examples=examples, deadline=None, database=None, derandomize=True,
                          phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
                @hypothesis.given(case=strategy)
                def run(case: Any) -> None:
                    label = case.operation.method.upper() + " " + case.operation.path
                    _record(report, label, case, call(case))
                    if after is not None:
                        after(case)
                    body = getattr(case, "body", None)
                    if send is None or not isinstance(body, dict | list):
                        return
                    name = rng.choice(sorted(MUTATIONS))
                    content = MUTATIONS[name](body, rng)
                    if content is not None:
                        _record(report, f"{label} [{name}]", case,
                                send(case.method.upper(), case.formatted_path, dict(case.query or {}), content),
                                content=content)
                        if after is not None:
                            after(case)

                try:
                    run()
                except Exception as exc:  # noqa: BLE001 - hypothesis could not generate (Unsatisfiable, ...)
                    report.not_generated.append(f"{label} {mode.value} {fixed or ''}: {type(exc).__name__}: "
                                                f"{str(exc)[:200]}")
    report.seconds = time.monotonic() - started
    return report


def _record(report: FuzzReport, label: str, case: Any, response: Any, content: bytes | None = None) -> None:
    report.requests += 1
    operation = label.split(" [")[0]
    report.per_operation[operation] = report.per_operation.get(operation, 0) + 1
    if "[" in label:
        report.mutated += 1
    report.statuses[response.status_code] += 1
    sent = _describe(case) if content is None else f"path={case.formatted_path} body={content[:300]!r}"
    if response.status_code >= 500:
        report.server_errors.append(f"{label} -> {response.status_code}: {response.text[:300]} ({sent})")
    elif response.status_code >= 400 and not _is_envelope(response.content, tei=error_dialect(
            case.formatted_path) == "tei"):
        report.bad_envelopes.append(f"{label} -> {response.status_code}: {response.text[:300]} ({sent})")


def _is_envelope(content: bytes, *, tei: bool = False) -> bool:
    """The error envelope, or on a TEI route TEI's error body (`{"error": str, "error_type": str}` and the
    envelope's type, param and code)."""
    try:
        body = json.loads(content)
    except ValueError:
        return False
    if tei:
        return (isinstance(body, dict) and set(body) == {"error", "error_type", "type", "param", "code"}
                and isinstance(body["error"], str)
                and body["error_type"] in {"Validation", "Overloaded", "Unhealthy", "Backend"})
    return isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], dict) and set(
        body["error"]) == _ENVELOPE
