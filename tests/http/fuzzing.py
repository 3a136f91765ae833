"""A bounded schema fuzz run: every operation of `/openapi.json`, examples that fit the schema and
examples that do not (schemathesis + hypothesis), each answer checked: never a 5xx, and every 4xx
in the error envelope. Used by tests/http/test_fuzz.py (in-process, a few dozen examples per
operation) and bench/fuzz.py (the long run, in-process or against a running server).
"""

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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

    def summary(self) -> str:
        by_status = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (f"{self.requests} requests over {len(self.per_operation)} operations in {self.seconds:.0f} s; "
                f"{len(self.server_errors)} server errors, {len(self.bad_envelopes)} answers outside the envelope; "
                f"statuses {by_status}")


def _describe(case: Any) -> str:
    body = getattr(case, "body", None)
    text = repr(body)
    return f"path={case.formatted_path} query={case.query} body={text[:300]}"


def fuzz(schema: Any, call: Callable[[Any], Any], *, examples: int, collection: str,
         after: Callable[[Any], None] | None = None, seconds: float | None = None) -> FuzzReport:
    """Fuzz every operation of `schema` (a schemathesis OpenAPI schema) through `call(case) -> response`.

    Operations with a `{name}` path parameter run twice per mode: once with generated names, once on
    `collection` (created by the caller, so documents and searches get past the 404). `after(case)`
    runs after each call (e.g. to create `collection` again after a DELETE of it). `seconds` bounds
    the whole run (operations not reached are left out of the report's `per_operation`).
    """
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
                    _record(report, case.operation.method.upper() + " " + case.operation.path, case, call(case))
                    if after is not None:
                        after(case)

                try:
                    run()
                except Exception as exc:  # noqa: BLE001 - hypothesis could not generate (Unsatisfiable, ...)
                    report.not_generated.append(f"{label} {mode.value} {fixed or ''}: {type(exc).__name__}: "
                                                f"{str(exc)[:200]}")
    report.seconds = time.monotonic() - started
    return report


def _record(report: FuzzReport, label: str, case: Any, response: Any) -> None:
    report.requests += 1
    report.per_operation[label] = report.per_operation.get(label, 0) + 1
    report.statuses[response.status_code] += 1
    if response.status_code >= 500:
        report.server_errors.append(f"{label} -> {response.status_code}: {response.text[:300]} ({_describe(case)})")
    elif response.status_code >= 400 and not _is_envelope(response.content):
        report.bad_envelopes.append(f"{label} -> {response.status_code}: {response.text[:300]} ({_describe(case)})")


def _is_envelope(content: bytes) -> bool:
    try:
        body = json.loads(content)
    except ValueError:
        return False
    return isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], dict) and set(
        body["error"]) == _ENVELOPE
