"""The model cards' own transformers code, transcribed as closely as possible.

Qwen/Qwen3-Embedding-0.6B and Qwen/Qwen3-Reranker-0.6B "Transformers Usage" sections. The
only changes: the model path is a parameter, the code is wrapped in functions, and the
Matryoshka step follows the model card's description (slice the pooled vector, then
normalise). The engine is tested against these functions, never against itself.
The Qwen3-Reranker ONNX release's onnxruntime code is transcribed the same way.
"""

import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer


# ---------------- Qwen3-Embedding model card ----------------
def last_token_pool(last_hidden_states: Tensor, attention_mask: Tensor) -> Tensor:
    left_padding = attention_mask[:, -1].sum() == attention_mask.shape[0]
    if left_padding:
        return last_hidden_states[:, -1]
    else:
        sequence_lengths = attention_mask.sum(dim=1) - 1
        batch_size = last_hidden_states.shape[0]
        return last_hidden_states[torch.arange(batch_size, device=last_hidden_states.device), sequence_lengths]


def get_detailed_instruct(task_description: str, query: str) -> str:
    return f"Instruct: {task_description}\nQuery:{query}"


def reference_embed(model_path: str, input_texts: list[str], max_length: int = 8192,
                    dimensions: int | None = None) -> Tensor:
    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    model = AutoModel.from_pretrained(model_path)
    batch_dict = tokenizer(input_texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    batch_dict.to(model.device)
    with torch.no_grad():
        outputs = model(**batch_dict)
    embeddings = last_token_pool(outputs.last_hidden_state, batch_dict["attention_mask"])
    if dimensions is not None:  # Matryoshka: first d components of the pooled vector
        embeddings = embeddings[:, :dimensions]
    embeddings = F.normalize(embeddings, p=2, dim=1)
    return embeddings


# ---------------- Qwen3-Reranker model card ----------------
def format_instruction(instruction, query, doc):
    if instruction is None:
        instruction = "Given a web search query, retrieve relevant passages that answer the query"
    output = f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}"
    return output


class ReferenceReranker:
    def __init__(self, model_path: str, max_length: int = 8192) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
        self.model = AutoModelForCausalLM.from_pretrained(model_path).eval()
        self.token_false_id = self.tokenizer.convert_tokens_to_ids("no")
        self.token_true_id = self.tokenizer.convert_tokens_to_ids("yes")
        self.max_length = max_length
        prefix = (
            "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
            'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
        )
        suffix = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
        self.prefix_tokens = self.tokenizer.encode(prefix, add_special_tokens=False)
        self.suffix_tokens = self.tokenizer.encode(suffix, add_special_tokens=False)

    def process_inputs(self, pairs):
        tokenizer, max_length = self.tokenizer, self.max_length
        inputs = tokenizer(
            pairs, padding=False, truncation="longest_first",
            return_attention_mask=False, max_length=max_length - len(self.prefix_tokens) - len(self.suffix_tokens),
        )
        for i, ele in enumerate(inputs["input_ids"]):
            inputs["input_ids"][i] = self.prefix_tokens + ele + self.suffix_tokens
        inputs = tokenizer.pad(inputs, padding=True, return_tensors="pt", max_length=max_length)
        for key in inputs:
            inputs[key] = inputs[key].to(self.model.device)
        return inputs

    @torch.no_grad()
    def compute_logits(self, inputs, **kwargs):
        batch_scores = self.model(**inputs).logits[:, -1, :]
        true_vector = batch_scores[:, self.token_true_id]
        false_vector = batch_scores[:, self.token_false_id]
        batch_scores = torch.stack([false_vector, true_vector], dim=1)
        batch_scores = torch.nn.functional.log_softmax(batch_scores, dim=1)
        scores = batch_scores[:, 1].exp().tolist()
        return scores

    def score(self, query: str, documents: list[str], instruction: str | None = None) -> list[float]:
        pairs = [format_instruction(instruction, query, doc) for doc in documents]
        return self.compute_logits(self.process_inputs(pairs))


# ---------------- Qwen3-Reranker-0.6B-ONNX model card (onnxruntime) ----------------
CARD_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
CARD_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


class CardOnnxReranker:
    """Left padding, `position_ids = arange(seq)` for every row, `logits[:, -1, :]`, softmax over [no, yes].

    `score` runs `batch_size` documents per call (the card passes all pairs at once). The tests
    score one document per call, so no row is padded and the card's positions are the true ones.
    """

    def __init__(self, model_dir: str, max_length: int = 8192) -> None:
        import onnxruntime as ort

        self.tokenizer = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        self.session = ort.InferenceSession(os.path.join(model_dir, "model.onnx"), providers=["CPUExecutionProvider"])
        self.token_false_id = self.tokenizer.convert_tokens_to_ids("no")
        self.token_true_id = self.tokenizer.convert_tokens_to_ids("yes")
        self.max_length = max_length
        self.prefix_tokens = self.tokenizer.encode(CARD_PREFIX, add_special_tokens=False)
        self.suffix_tokens = self.tokenizer.encode(CARD_SUFFIX, add_special_tokens=False)

    def process_inputs(self, pairs: list[str]) -> dict[str, np.ndarray]:
        inputs = self.tokenizer(
            pairs, padding=False, truncation="longest_first", return_attention_mask=False,
            max_length=self.max_length - len(self.prefix_tokens) - len(self.suffix_tokens),
        )
        for i, ele in enumerate(inputs["input_ids"]):
            inputs["input_ids"][i] = self.prefix_tokens + ele + self.suffix_tokens
        return dict(self.tokenizer.pad(inputs, padding=True, return_tensors="np", max_length=self.max_length))

    def compute_scores(self, inputs: dict[str, np.ndarray]) -> list[float]:
        input_ids = inputs["input_ids"].astype(np.int64)
        attention_mask = inputs["attention_mask"].astype(np.int64)
        position_ids = np.arange(input_ids.shape[1], dtype=np.int64)[None, :].repeat(input_ids.shape[0], axis=0)
        logits = self.session.run(["logits"], {"input_ids": input_ids, "attention_mask": attention_mask,
                                               "position_ids": position_ids})[0][:, -1, :]
        pair = np.stack([logits[:, self.token_false_id], logits[:, self.token_true_id]], axis=1).astype(np.float64)
        pair = np.exp(pair - pair.max(axis=1, keepdims=True))
        return (pair / pair.sum(axis=1, keepdims=True))[:, 1].tolist()

    def score(self, query: str, documents: list[str], instruction: str | None = None, batch_size: int = 1
              ) -> list[float]:
        pairs = [format_instruction(instruction, query, doc) for doc in documents]
        return [score for start in range(0, len(pairs), batch_size)
                for score in self.compute_scores(self.process_inputs(pairs[start : start + batch_size]))]
