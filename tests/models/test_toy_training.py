"""The toy training recipe is deterministic and its losses are wired correctly."""

from __future__ import annotations

import torch

from studylib.models import toy
from studylib.models.toy_training import TrainConfig, answer_loss, lr_at, make_batch, train


def _train_briefly():
    model, processor = toy.build_untrained(seed=0)
    train(model, processor, TrainConfig(steps=3, batch_size=3, warmup=1), log=lambda line: None)
    return model.state_dict()


def test_same_seed_same_weights():
    first, second = _train_briefly(), _train_briefly()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_batches_are_a_function_of_step():
    _, processor = toy.build_untrained()
    cfg = TrainConfig(batch_size=2)
    a, b, c = make_batch(5, processor, cfg), make_batch(5, processor, cfg), make_batch(6, processor, cfg)
    assert torch.equal(a.input_ids, b.input_ids) and torch.equal(a.pixel_values, b.pixel_values)
    assert not torch.equal(a.pixel_values, c.pixel_values)


def test_answer_loss_averages_each_turn_then_turns():
    vocab = 5
    ids = torch.tensor([[0, 1, 2, 3, 4]])
    owner = torch.tensor([[-1, 0, -1, 1, 1]])  # targets 1 (turn 0) and 3, 4 (turn 1)
    logits = torch.zeros(1, 5, vocab)
    logits[0, 0, 1] = 10.0  # predicts turn 0's token confidently
    loss = answer_loss(logits, ids, owner)
    uniform = torch.log(torch.tensor(float(vocab)))
    turn0 = torch.nn.functional.cross_entropy(logits[0, 0:1], ids[0, 1:2])
    assert torch.isclose(loss, (turn0 + uniform) / 2)


def test_learning_rate_warms_up_then_decays_to_the_floor():
    cfg = TrainConfig(steps=100, warmup=10, lr=1e-3, min_lr_fraction=0.05)
    assert lr_at(0, cfg) < lr_at(9, cfg) == cfg.lr
    assert abs(lr_at(99, cfg) - 0.05e-3) < 1e-6
