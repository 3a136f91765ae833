"""The package is typed: `mypy --strict clients` is clean, and the signatures type a caller's code."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_mypy_strict_is_clean_on_clients():
    result = mypy("clients")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_a_callers_code_is_typed_by_the_signatures(tmp_path):
    caller = tmp_path / "caller.py"
    caller.write_text(textwrap.dedent("""
        from typing import assert_type

        import numpy as np
        import numpy.typing as npt

        from clients import AsyncClient, Client, EmbedResult
        from clients.types import RerankResponse, SearchResult

        def sync(client: Client) -> None:
            result = client.embed(["a", "b"], dimensions=32)
            assert_type(result, EmbedResult)
            assert_type(result.embeddings, npt.NDArray[np.float32])
            assert_type(client.rerank("q", ["d"], top_n=1), RerankResponse)
            assert_type(client.search("docs", "q"), SearchResult)
            assert_type(client.search("docs", ["q1", "q2"]), list[SearchResult])
            assert_type(client.upsert("docs", [{"text": "t"}]), list[str])
            assert_type(client.count("docs"), int)

        async def asynchronous(client: AsyncClient) -> None:
            assert_type(await client.search("docs", "q"), SearchResult)
            assert_type(await client.search("docs", ["q"]), list[SearchResult])

        def wrong(client: Client) -> None:
            client.embed(["a"], 32)  # options are keyword-only
            client.rerank("q", ["d"], top_n="3")
    """))
    result = mypy(str(caller))
    errors = [line.split(":", 2)[1:] for line in result.stdout.splitlines() if ": error:" in line]
    lines = {int(number) for number, _ in errors}
    # Only the two deliberate mistakes at the end are reported, nothing in the typed calls above them.
    assert lines == {25, 26}, result.stdout
    assert any("Too many positional arguments" in message for number, message in errors if number == "25")
    assert any('Argument "top_n"' in message and "int | None" in message for number, message in errors
               if number == "26")
