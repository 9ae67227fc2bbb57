"""Verbalizer token ids of the LLaVA-NeXT (Vicuna-7B) and Qwen2.5-VL tokenizers.

No tokenizer can be downloaded here, so each family is checked with a stand-in built offline
from the same family's tokenizer design, its verbalizer pieces placed at their real ids:

* LLaVA-NeXT-7B (``llava-hf/llava-v1.6-vicuna-7b-hf``) uses the Llama-2 SentencePiece vocabulary
  of LLaVA-1.5: the Llama stand-in of ``test_llama_token_ids`` (published ids, evaluation.md
  §7.1) behind a LLaVA-NeXT processor; the answer follows "ASSISTANT:", so the word-initial
  pieces count (▁Yes 3869, ▁No 1939, ▁A 319 ...);
* Qwen2.5-VL uses Qwen2's byte-level BPE (151,643 pieces, the GPT-2 byte alphabet first, so
  "A".."D" are 32..35; "Yes" 9454, "No" 2753, "yes" 9693, "no" 2152 as listed in public Qwen
  scoring code); the answer follows "<|im_start|>assistant\\n", so the pieces *without* a
  leading space (Ġ) count.  The stand-in is a byte-level BPE with Qwen2's split pattern,
  those pieces at those ids and Qwen2.5-VL's special-token ids.
Where a real tokenizer is in the local Hugging Face cache, it is checked too.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from test_llama_token_ids import EXPECTED_VERBALIZER_IDS, llama_like_tokenizer
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from studylib.data.records import Question
from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter
from studylib.models.tiny import tiny_random_llava_next, tiny_random_qwen2_5_vl

QWEN_VOCAB = 151_643
QWEN_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
              r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN_PIECES = {"Yes": 9454, "No": 2753, "yes": 9693, "no": 2152, "YES": 14004, "NO": 8996}
QWEN_SPECIALS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|vision_start|>": 151652,
                 "<|vision_end|>": 151653, "<|image_pad|>": 151655, "<|video_pad|>": 151656}
QWEN_EXPECTED = {"yesno": [[9454, 9693], [2753, 2152]], "mc": [[32], [33], [34], [35], [36]]}


def byte_alphabet() -> list[str]:
    """GPT-2's byte -> printable character table, in vocabulary order (printable bytes first)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def qwen_like_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level BPE: the byte alphabet at 0..255, the verbalizer pieces (and a space-prefixed
    variant of each) built by merges, fillers up to 151,643, Qwen2.5-VL's special tokens."""
    vocab = {c: i for i, c in enumerate(byte_alphabet())}
    merges = []
    for word, index in QWEN_PIECES.items():
        for piece in (word[:2], f"Ġ{word}"):
            if piece not in vocab:
                vocab[piece] = len(vocab) + 300
        merges += [(word[0], word[1])] + ([(word[:2], word[2])] if len(word) == 3 else []) + [("Ġ", word)]
        vocab[word] = index
    vocab.update(QWEN_SPECIALS)
    used = set(vocab.values())
    vocab.update({f"<filler{i}>": i for i in range(256, max(QWEN_SPECIALS.values()) + 1) if i not in used})
    core = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(QWEN_SPECIALS))
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   padding_side="left",
                                   extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})


def _question(task: str) -> Question:
    if task == "yesno":
        return Question("q", "img", "yesno", "Is there a dog in the image?", answer="yes")
    return Question("q", "img", "mc", "Which animal?", answer="A", choices=("cat", "dog", "cow", "fox", "owl"))


@pytest.fixture(scope="module")
def qwen_adapter():
    return LlavaAdapter(*tiny_random_qwen2_5_vl(tokenizer=qwen_like_tokenizer()))


@pytest.fixture(scope="module")
def next_adapter():
    return LlavaAdapter(*tiny_random_llava_next(tokenizer=llama_like_tokenizer()))


def test_qwen_stand_in_layout():
    tokenizer = qwen_like_tokenizer()
    assert tokenizer.convert_tokens_to_ids(list(QWEN_SPECIALS)) == list(QWEN_SPECIALS.values())
    assert tokenizer("Yes", add_special_tokens=False).input_ids == [9454]
    assert tokenizer.convert_ids_to_tokens(tokenizer(" Yes", add_special_tokens=False).input_ids) == ["ĠYes"]
    assert tokenizer("A", add_special_tokens=False).input_ids == [32]


@pytest.mark.parametrize("task", ["yesno", "mc"])
def test_verbalizer_ids(qwen_adapter, next_adapter, task):
    question = _question(task)
    assert qwen_adapter.verbalizer_ids(prompts.verbalizer(question)) == QWEN_EXPECTED[task]
    assert next_adapter.verbalizer_ids(prompts.verbalizer(question)) == EXPECTED_VERBALIZER_IDS[task]


@pytest.mark.parametrize("name", ["qwen_adapter", "next_adapter"])
def test_scores_read_the_verbalizer_ids(name, request):
    """The prompt ends where the answer's first token starts, and the scores are the
    log-sum-exp of the full-vocabulary log-probabilities at the verbalizer ids."""
    adapter = request.getfixturevalue(name)
    question = _question("yesno")
    tokens = adapter.encode([Image.new("RGB", (120, 90), (128, 100, 60))], ["grey"])
    prompt = adapter.build_prompt(question)
    assert prompt.endswith("<|im_start|>assistant\n" if name == "qwen_adapter" else "ASSISTANT:")
    scores = adapter.score([prompt], tokens, None, prompts.verbalizer(question))
    logits, _ = adapter._last_logits([prompt], tokens, None, None, None)
    log_probs = logits[0].log_softmax(-1)
    ids = adapter.verbalizer_ids(prompts.verbalizer(question))
    np.testing.assert_allclose(scores.logits[0], [log_probs[row].logsumexp(0).item() for row in ids], atol=1e-5)


@pytest.mark.parametrize("repo, expected", [
    ("Qwen/Qwen2.5-VL-7B-Instruct", {"Yes": 9454, "No": 2753, "yes": 9693, "no": 2152, "A": 32, "D": 35}),
    ("llava-hf/llava-v1.6-vicuna-7b-hf", {"Yes": 3869, "No": 1939, "yes": 4874, "no": 694, "A": 319, "D": 360}),
])
def test_real_tokenizer_if_cached(repo, expected):
    try:
        real = AutoTokenizer.from_pretrained(repo, local_files_only=True)
    except (OSError, ValueError) as error:
        pytest.skip(f"{repo} tokenizer not in the local cache and no network here ({type(error).__name__}); "
                    f"the offline stand-ins above cover the ids")
    for word, index in expected.items():
        assert real(word, add_special_tokens=False).input_ids == [index]
