"""Reading the error answers the service sends, for the tests of every layer.

Every route answers the envelope `{"error": {"message", "type", "param", "code"}}`, but the Text
Embeddings Inference routes, which answer TEI's body `{"error": message, "error_type": ...}` with the
envelope's `type`, `param` and `code` beside (deployments/http/errors.py). `error_of` checks whichever
the route must send and returns the same fields for both.
"""

from typing import Any

from deployments.http.errors import error_dialect

ENVELOPE_FIELDS = {"message", "type", "param", "code"}
TEI_ERROR_TYPES = {"Validation", "Overloaded", "Unhealthy", "Backend"}


def error_of(response: Any, status: int, *, prefix: str = "") -> dict[str, Any]:
    """The error's message, type, param and code, after checking its status and its body's shape.
    `prefix`: the Serve route prefix the application is under (the server reads the path within it)."""
    assert response.status_code == status, response.text
    body = response.json()
    path = response.request.url.path
    if prefix and path.startswith(prefix):
        path = path[len(prefix):] or "/"
    if error_dialect(path) == "tei":
        assert set(body) == {"error", "error_type", "type", "param", "code"}, body
        assert isinstance(body["error"], str) and body["error"] and body["error_type"] in TEI_ERROR_TYPES, body
        return {"message": body["error"], "type": body["type"], "param": body["param"], "code": body["code"]}
    assert set(body) == {"error"} and set(body["error"]) == ENVELOPE_FIELDS, body
    assert body["error"]["message"], body
    return dict(body["error"])
