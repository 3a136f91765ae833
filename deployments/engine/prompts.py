"""The prompt formats of the Qwen3 retrieval models, kept in exactly one place.

Strings are copied from the model cards (see REFERENCE.md sections 1 and 2). Two copies of
the reranker prompt in circulation are wrong (a stray quote before the first `<|im_end|>`,
or a missing `<think>` block); tests pin these literals.
"""

import re

__all__ = [
    "DEFAULT_INSTRUCTION",
    "END_OF_TEXT",
    "embedding_query_prompt",
    "instruction_from_query_prompt",
    "RERANK_PREFIX",
    "RERANK_SUFFIX",
    "rerank_body_head",
    "rerank_body_tail",
]

DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"
"""The retrieval instruction both model cards use when none is given."""

END_OF_TEXT = "<|endoftext|>"
"""Qwen3-Embedding pools the hidden state of this token, which ends every input exactly once."""


def embedding_query_prompt(instruction: str) -> str:
    """Text put before a query: `Instruct: {instruction}\\nQuery:` (no space after the colon)."""
    return f"Instruct: {instruction}\nQuery:"


_QUERY_PROMPT = re.compile(r"^Instruct: (?P<instruction>.*)\nQuery:$", re.DOTALL)


def instruction_from_query_prompt(prompt: str) -> str | None:
    """The instruction inside a Qwen3-style query prompt, or None for any other prompt."""
    match = _QUERY_PROMPT.match(prompt)
    return match.group("instruction") if match else None


RERANK_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


# The model card formats the body as one string:
#     f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {document}"
# We tokenise it in two parts, split between "<Document>:" and " {document}". Qwen3's
# pre-tokeniser always splits before that space (the colon run ends at whitespace and the
# regex has no look-behind), so the two token lists concatenate to exactly the tokens of the
# whole body, and the head (shared by every document of a query) can be computed once.
def rerank_body_head(query: str, instruction: str) -> str:
    """The part of the reranker body shared by every document of one query."""
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>:"


def rerank_body_tail(document: str) -> str:
    """The part of the reranker body that belongs to one document."""
    return f" {document}"
