"""Verbalizer token ids against the published LLaVA-1.5 (Llama-2 SentencePiece) ids.

The real tokenizer cannot be downloaded here, so the main test builds one offline: a 32,000-piece
Unigram vocabulary with byte fallback in which the pieces of ``evaluation.md`` §7.1 sit at
their published ids, wrapped like the ``llava-hf`` tokenizer (Llama metaspace pre-tokenizer
with ``prepend_scheme="first"`` = ``legacy: false``, BOS prepended, ``<image>`` = 32000 and
``<pad>`` = 32001 added).  It checks that :class:`LlavaAdapter` resolves every verbalizer word
to the word-initial piece ("Yes" -> ▁Yes 3869, not Yes 8241) and scores with those ids.
Where the real checkpoint's tokenizer is in the local Hugging Face cache, it is checked too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlavaProcessor, PreTrainedTokenizerFast

from studylib.data.records import Question
from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter
from studylib.models.loading import tiny_random_llava, tiny_random_processor

VOCAB_SIZE = 32_000
#: Word-initial ("▁") and non-initial pieces with their Llama-2 ids (evaluation.md §7.1).
PUBLISHED = {
    "▁Yes": 3869, "▁yes": 4874, "▁YES": 22483, "▁No": 1939, "▁no": 694, "▁NO": 11698,
    "Yes": 8241, "yes": 3582, "YES": 21143, "No": 3782, "no": 1217, "NO": 6632,
    "▁A": 319, "▁B": 350, "▁C": 315, "▁D": 360, "▁E": 382,
    "A": 29909, "B": 29933, "C": 29907, "D": 29928, "E": 29923, "▁": 29871,
}
EXPECTED_VERBALIZER_IDS = {
    "yesno": [[3869, 4874], [1939, 694]],
    "mc": [[319], [350], [315], [360], [382]],
}


def llama_like_tokenizer() -> PreTrainedTokenizerFast:
    """Unigram model: <unk> <s> </s>, the 256 byte pieces at 3..258, the published pieces at their
    ids, "." and filler pieces elsewhere; whole pieces score higher than their parts."""
    pieces: list[tuple[str, float] | None] = [None] * VOCAB_SIZE
    pieces[:3] = [("<unk>", 0.0), ("<s>", 0.0), ("</s>", 0.0)]
    for byte in range(256):
        pieces[3 + byte] = (f"<0x{byte:02X}>", 0.0)
    for piece, index in PUBLISHED.items():
        pieces[index] = (piece, -1.0 if len(piece) > 1 else -5.0)
    free = (i for i, p in enumerate(pieces) if p is None)
    pieces[next(free)] = (".", -2.0)
    for index in free:
        pieces[index] = (f"▁filler{index}", -20.0)
    core = Tokenizer(models.Unigram(pieces, unk_id=0, byte_fallback=True))
    core.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    core.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                      decoders.Strip(" ", 1, 0)])
    core.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                        special_tokens=[("<s>", 1)])
    core.add_special_tokens(["<unk>", "<s>", "</s>", prompts.IMAGE_PLACEHOLDER, "<pad>"])
    return PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<pad>", padding_side="left",
                                   extra_special_tokens={"image_token": prompts.IMAGE_PLACEHOLDER})


@pytest.fixture(scope="module")
def tokenizer():
    return llama_like_tokenizer()


@pytest.fixture(scope="module")
def adapter(tokenizer):
    processor = LlavaProcessor(image_processor=tiny_random_processor().image_processor, tokenizer=tokenizer,
                               patch_size=14, vision_feature_select_strategy="default",
                               num_additional_image_tokens=1)
    return LlavaAdapter(tiny_random_llava(tokenizer), processor)


def _question(task: str) -> Question:
    if task == "yesno":
        return Question("q", "img", "yesno", "Is there a dog in the image?", answer="yes")
    return Question("q", "img", "mc", "Which animal?", answer="A", choices=("cat", "dog", "cow", "fox", "owl"))


def test_tokenizer_matches_llava_hf_layout(tokenizer):
    assert len(tokenizer) == VOCAB_SIZE + 2
    assert tokenizer.convert_tokens_to_ids([prompts.IMAGE_PLACEHOLDER, "<pad>"]) == [32000, 32001]
    assert (tokenizer.unk_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert tokenizer.convert_tokens_to_ids(list(PUBLISHED)) == list(PUBLISHED.values())


@pytest.mark.parametrize("text, pieces", [
    ("Yes", ["▁Yes"]), ("no", ["▁no"]), ("B", ["▁B"]), ("Yes.", ["▁Yes", "."]), ("B.", ["▁B", "."]),
    ("\nYes", ["▁", "<0x0A>", "Yes"]), ("Yes no", ["▁Yes", "▁no"]),
])
def test_encodings_follow_llama(tokenizer, text, pieces):
    """The §7.1 encoding checks: a newline before the answer changes its first piece.  (§7.1's
    " Yes" -> [▁, ▁Yes] is SentencePiece's dummy prefix; the metaspace "first" scheme does not
    add a second "▁" before a leading space, so that case is not asserted here.)"""
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.convert_ids_to_tokens(ids) == pieces


def test_bos_is_prepended(tokenizer):
    assert tokenizer("Yes").input_ids == [1, 3869]


@pytest.mark.parametrize("word, expected", [
    ("Yes", 3869), ("No", 1939), ("yes", 4874), ("no", 694), ("YES", 22483), ("NO", 11698),
    ("A", 319), ("B", 350), ("C", 315), ("D", 360), ("E", 382),
])
def test_adapter_resolves_published_ids(adapter, word, expected):
    assert adapter._single_token_id(word) == expected


@pytest.mark.parametrize("task", ["yesno", "mc"])
def test_verbalizer_ids(adapter, task):
    assert adapter.verbalizer_ids(prompts.verbalizer(_question(task))) == EXPECTED_VERBALIZER_IDS[task]


def test_scores_read_the_published_ids(adapter):
    """First-token scores equal the log-sum-exp of the full-vocabulary log-probabilities at the
    published ids (one prefill forward of the tiny random model)."""
    question = _question("yesno")
    image = np.full((336, 336, 3), 128, dtype=np.uint8)
    from PIL import Image

    tokens = adapter.encode([Image.fromarray(image)], ["grey"])
    prompt = prompts.build_prompt(question)
    scores = adapter.score([prompt], tokens, None, prompts.verbalizer(question))
    logits, _ = adapter._last_logits([prompt], tokens, None, None, None)
    log_probs = logits[0].log_softmax(-1)
    expected = [log_probs[[3869, 4874]].logsumexp(0).item(), log_probs[[1939, 694]].logsumexp(0).item()]
    assert np.allclose(scores.logits[0], expected, atol=1e-5)
    assert np.isclose(scores.probs[0].sum(), 1.0)


def test_real_llava_tokenizer_if_cached():
    """The real ``llava-hf/llava-1.5-7b-hf`` tokenizer, only if it is already in the local cache."""
    from transformers import AutoTokenizer

    try:
        real = AutoTokenizer.from_pretrained("llava-hf/llava-1.5-7b-hf", local_files_only=True)
    except (OSError, ValueError) as error:
        pytest.skip(f"llava-hf/llava-1.5-7b-hf tokenizer not in the local cache and no network here "
                    f"({type(error).__name__}); the offline Llama-like tokenizer above covers the ids")
    assert real.convert_tokens_to_ids(list(PUBLISHED)) == list(PUBLISHED.values())
    for word, expected in (("Yes", 3869), ("No", 1939), ("yes", 4874), ("no", 694), ("A", 319), ("D", 360)):
        assert real(word, add_special_tokens=False).input_ids == [expected]
    assert torch.tensor(real.convert_tokens_to_ids([prompts.IMAGE_PLACEHOLDER])).item() == 32000
