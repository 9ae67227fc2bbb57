"""Training recipe of the toy LLaVA (run by ``scripts/train_toy.py``).

Plain LLaVA-style training from scratch does not learn within a CPU budget and leaves the
[CLS] attention untrained (``../shared/reference/toy-probe.md``).  Two auxiliary vision losses
stand in for CLIP's pre-training and are discarded after training:

* a multi-label presence head on the pooled CLS output (``pooler_output``), weight 0.5;
* a per-patch class head (16 categories + background) on the penultimate patch features, weight 1.0.

The language loss is the cross-entropy of the assistant's answer tokens (answer + ``</s>``)
in multi-turn vicuna_v1 conversations about one image (yes/no existence questions, a
four-option question, sometimes a caption); each turn's tokens are averaged so that a long
caption weighs as much as a one-word answer.  Evaluation prompts are single-turn, exactly
the first turn's format.

Curriculum: the first ``yesno_only_steps`` steps use yes/no questions only.  Whether an
object is present depends on the question *and* the image jointly (neither alone tells the
answer), and with captions and four-option questions mixed in from step 0 the language model
settled on the answer prior ("No", "B") and never learned to bind the question to the image
(a 1,000-step mixed run stayed at chance on both tasks while its captions were fine); trained
on yes/no alone it leaves chance after ~150 steps.  Earlier recipes also let later turns copy
earlier ones (a repeated question, a caption before the questions); the model then learned to
copy instead of looking, so :func:`training_turns` rules that out.

Determinism: the model is initialised under ``torch.manual_seed(seed)``; every training
image and question is a function of ``(seed, step, position)``; with the same thread count
the same machine reproduces the same weights bit for bit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from studylib.data import toy_world as tw
from studylib.data.records import LETTERS, Question
from studylib.models import prompts
from studylib.models.toy import PATCH


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 1200
    batch_size: int = 32
    turns: int = 4
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    min_lr_fraction: float = 0.05
    grad_clip: float = 1.0
    cls_aux_weight: float = 0.5
    patch_aux_weight: float = 1.0
    readout_aux_weight: float = 0.5
    caption_probability: float = 0.35
    mc_turns: int = 1
    yesno_only_steps: int = 300
    seed: int = 0
    threads: int = 2


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_fraction`` of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    floor = cfg.min_lr_fraction
    return cfg.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


# ------------------------------------------------------------------ training conversations


def _training_negative(scene: tw.ToyScene, rng: np.random.Generator, allowed: list[str]) -> str | None:
    """An absent category from ``allowed``: random, same colour as an object in the image
    (adversarial-like) or a frequent shape (popular-like); ``None`` when none is left."""
    absent = [c for c in allowed if c not in scene.categories]
    if not absent:
        return None
    kind = rng.integers(3)
    if kind == 1:
        colours = {o.colour for o in scene.objects}
        pool = [c for c in absent if c.split()[0] in colours]
    elif kind == 2:
        pool = [c for c in absent if c.split()[1] in tw.SHAPES[:2]]
    else:
        pool = absent
    pool = pool or absent
    return pool[int(rng.integers(len(pool)))]


def _revealed_by(question: Question) -> set[str]:
    """Categories whose presence a four-option question's answer gives away."""
    truth = question.choices["ABCD".index(question.answer)]
    if question.split == "colour":  # "What color is the <shape>?" -> truth is a colour
        return {f"{truth} {question.text.split()[-1].rstrip('?')}"}
    if question.split == "shape":  # "What shape is the <colour> object?"
        return {f"{question.text.split()[4]} {truth}"}
    return set()


def training_questions(scene: tw.ToyScene, rng: np.random.Generator, cfg: TrainConfig,
                       step: int = 0) -> list[Question]:
    """The questions of one training conversation about ``scene``, in turn order.

    No turn can be answered by copying from an earlier one: the yes/no questions ask about
    distinct categories, a four-option question (if any) comes first and later yes/no
    questions avoid the category its answer reveals, and a caption (if any) comes last.
    During the first ``cfg.yesno_only_steps`` steps every turn is a yes/no question."""
    mixed = step >= cfg.yesno_only_steps
    questions: list[Question] = []
    if mixed:
        questions += [tw.multiple_choice_question(scene, rng, f"mc{i}") for i in range(cfg.mc_turns)]
    with_caption = mixed and rng.random() < cfg.caption_probability
    asked = set().union(*(_revealed_by(q) for q in questions))
    for i in range(cfg.turns - len(questions) - int(with_caption)):
        allowed = [c for c in tw.CATEGORIES if c not in asked]
        present = [c for c in allowed if c in scene.categories]
        negative = _training_negative(scene, rng, allowed)
        if present and (negative is None or rng.random() < 0.5):
            category, answer = present[int(rng.integers(len(present)))], "yes"
        elif negative is not None:
            category, answer = negative, "no"
        else:
            break
        asked.add(category)
        questions.append(Question(f"t{i}", scene.key, "yesno", tw.existence_question(category), answer))
    if with_caption:
        questions.append(Question("cap", scene.key, "caption", tw.CAPTION_PROMPT, tw.caption_of(scene, rng)))
    return questions


def training_turns(questions: list[Question]) -> list[tuple[str, str]]:
    """(user message, answer) turns; the first turn carries the image."""
    return [(prompts.user_message(q, with_image=i == 0), prompts.reference_answer(q))
            for i, q in enumerate(questions)]


def queried_category(question: Question) -> str:
    """The category a yes/no existence question asks about."""
    return question.text.split(" ", 3)[3].removesuffix(" in the image?")


def encode_conversation(tokenizer, turns: list[tuple[str, str]], n_image_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids and per-token turn index of answer tokens (-1 where no loss is taken).

    The toy tokenizer is word-level, so encoding the conversation piece by piece gives the
    same ids as encoding the whole rendered string."""
    image = prompts.IMAGE_PLACEHOLDER
    ids = tokenizer(prompts.SYSTEM).input_ids  # with BOS
    owner = [-1] * len(ids)
    for t, (message, answer) in enumerate(turns):
        user = tokenizer(f"USER: {message.replace(image, image * n_image_tokens)} ASSISTANT:",
                         add_special_tokens=False).input_ids
        reply = tokenizer(f"{answer}{prompts.TURN_END}", add_special_tokens=False).input_ids
        ids += user + reply
        owner += [-1] * len(user) + [t] * len(reply)
    return ids, owner


@dataclass
class Batch:
    pixel_values: torch.Tensor  # (B, 3, H, W)
    input_ids: torch.Tensor  # (B, L), right-padded
    attention_mask: torch.Tensor
    owner: torch.Tensor  # (B, L) turn index of each answer token, -1 elsewhere
    presence: torch.Tensor  # (B, C) multi-hot categories
    patch_classes: torch.Tensor  # (B, N)
    readout: torch.Tensor  # (Q, 3) rows of (sample, position before the answer, queried category)


def make_batch(step: int, processor, cfg: TrainConfig) -> Batch:
    tokenizer = processor.tokenizer
    n_tokens = (tw.IMAGE_SIZE // PATCH) ** 2
    images, sequences, owners, presence, patch_classes, readout = [], [], [], [], [], []
    for i in range(cfg.batch_size):
        scene = tw.sample_scene(tw.TRAIN_SEED_BASE + cfg.seed * 10_000_000 + step * cfg.batch_size + i)
        image, label_map = tw.render_scene(scene)
        rng = np.random.default_rng([cfg.seed, step, i, 7])
        questions = training_questions(scene, rng, cfg, step)
        ids, owner = encode_conversation(tokenizer, training_turns(questions), n_tokens)
        for t, q in enumerate(questions):
            if q.task == "yesno":
                readout.append((i, owner.index(t) - 1, tw.CATEGORIES.index(queried_category(q))))
        images.append(image)
        sequences.append(ids)
        owners.append(owner)
        presence.append([c in scene.categories for c in tw.CATEGORIES])
        patch_classes.append(tw.patch_labels(label_map, PATCH))
    length = max(map(len, sequences))
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([s + [pad] * (length - len(s)) for s in sequences])
    mask = torch.tensor([[1] * len(s) + [0] * (length - len(s)) for s in sequences])
    owner = torch.tensor([o + [-1] * (length - len(o)) for o in owners])
    pixels = processor.image_processor(images, return_tensors="pt").pixel_values
    return Batch(pixels, input_ids, mask, owner, torch.tensor(presence, dtype=torch.float32),
                 torch.tensor(np.stack(patch_classes)), torch.tensor(readout, dtype=torch.long).view(-1, 3))


# ------------------------------------------------------------------ losses and loop


class AuxiliaryHeads(nn.Module):
    """Training-only heads, discarded after training.

    Vision (stand-ins for CLIP pre-training): ``presence`` on the pooled CLS output and
    ``patch`` on the penultimate patch features.  Language (stand-ins for a pre-trained LLM
    that already reads its prompt): at the position that predicts a yes/no answer, ``query``
    names the category the question asks about (text only) and ``lm_presence`` lists the
    image's categories (image only).  Each is learnable from one source, so the last position
    learns to read both the question and the image; the answer is then a simple function of
    the two, which breaks the plateau of the yes/no task, whose answer depends on neither
    source alone."""

    def __init__(self, width: int, lm_width: int, n_categories: int):
        super().__init__()
        self.presence = nn.Linear(width, n_categories)
        self.patch = nn.Linear(width, n_categories + 1)
        self.query = nn.Linear(lm_width, n_categories)
        self.lm_presence = nn.Linear(lm_width, n_categories)


def answer_loss(logits: torch.Tensor, input_ids: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of answer tokens, averaged within each turn, then over all turns."""
    target_owner = owner[:, 1:]
    token_loss = F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
    turn_ids = target_owner.clamp(min=0) + (target_owner.max() + 1) * torch.arange(
        owner.shape[0]).unsqueeze(1)
    valid = target_owner >= 0
    sums = torch.zeros(int(turn_ids.max()) + 1).index_add(0, turn_ids[valid], token_loss[valid])
    counts = torch.zeros_like(sums).index_add(0, turn_ids[valid], torch.ones_like(token_loss[valid]))
    present = counts > 0
    return (sums[present] / counts[present]).mean()


def training_losses(model, heads: AuxiliaryHeads, batch: Batch, cfg: TrainConfig) -> dict[str, torch.Tensor]:
    vision = model.model.vision_tower(batch.pixel_values, output_hidden_states=True)
    features = vision.hidden_states[-2][:, 1:]
    embeddings = model.model.multi_modal_projector(features)
    inputs = model.get_input_embeddings()(batch.input_ids)
    image_mask = (batch.input_ids == model.config.image_token_index).unsqueeze(-1)
    inputs = inputs.masked_scatter(image_mask, embeddings.to(inputs.dtype))
    out = model(inputs_embeds=inputs, attention_mask=batch.attention_mask, output_hidden_states=True)
    lm = answer_loss(out.logits, batch.input_ids, batch.owner)
    rows, positions, categories = batch.readout.unbind(1)
    state = out.hidden_states[-1][rows, positions]
    readout = (F.cross_entropy(heads.query(state), categories)
               + F.binary_cross_entropy_with_logits(heads.lm_presence(state), batch.presence[rows]))
    cls = F.binary_cross_entropy_with_logits(heads.presence(vision.pooler_output), batch.presence)
    patch = F.cross_entropy(heads.patch(features).flatten(0, 1), batch.patch_classes.flatten())
    total = lm + cfg.cls_aux_weight * cls + cfg.patch_aux_weight * patch + cfg.readout_aux_weight * readout
    return {"loss": total, "lm": lm, "cls_aux": cls, "patch_aux": patch, "readout_aux": readout}


def train(model, processor, cfg: TrainConfig, log=print, log_every: int = 50, on_step=None) -> dict[str, float]:
    """Train ``model`` in place for ``cfg.steps`` steps; returns wall time and final losses.

    ``on_step(step)`` is called after each optimiser step (1-based), e.g. to save snapshots."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed + 1)
    heads = AuxiliaryHeads(model.config.vision_config.hidden_size, model.config.text_config.hidden_size,
                           len(tw.CATEGORIES))
    parameters = list(model.parameters()) + list(heads.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    model.train()
    start = time.perf_counter()
    running: dict[str, float] = {}
    for step in range(cfg.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        losses = training_losses(model, heads, make_batch(step, processor, cfg), cfg)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(parameters, cfg.grad_clip)
        optimizer.step()
        for name, value in losses.items():
            running[name] = 0.98 * running.get(name, value.item()) + 0.02 * value.item()
        if on_step is not None:
            on_step(step + 1)
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            elapsed = time.perf_counter() - start
            log(f"step {step + 1}/{cfg.steps}  {elapsed:7.0f}s  "
                + "  ".join(f"{k} {v:.4f}" for k, v in running.items()))
    model.eval()
    return {"wall_seconds": time.perf_counter() - start, **running}
