"""Train the toy LLaVA from scratch and write it to data/toy-model (or --out).

Usage:  python scripts/train_toy.py [--steps 1200] [--mc-phase-steps 400] [--out data/toy-model]
        python scripts/train_toy.py --from-phase-one DIR    # phase 2 only, on a phase-1 checkpoint

Fixed step counts, 2 threads, seeded: on the same machine type the same command writes the
same weights (compare the SHA-256 recorded in the README).  Training has two phases (see
``studylib.toy.training``); a from-scratch run records the SHA-256 of the phase-1
weights too, so a phase-2-only run can show which phase-1 checkpoint it started from.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from studylib.toy import model as toy
from studylib.toy.training import TrainConfig, train


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def phase_one_digest(model, processor) -> str:
    """SHA-256 of the safetensors file the model would be saved as."""
    with tempfile.TemporaryDirectory() as tmp:
        toy.save(model, processor, tmp)
        return sha256(Path(tmp) / "model.safetensors")


def main(argv: list[str] | None = None) -> int:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=defaults.steps, help="phase-1 steps")
    parser.add_argument("--mc-phase-steps", type=int, default=defaults.mc_phase_steps, help="phase-2 steps")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", type=Path, default=Path("data/toy-model"))
    parser.add_argument("--from-phase-one", type=Path, default=None, metavar="DIR",
                        help="skip phase 1: start phase 2 from this phase-1 checkpoint")
    parser.add_argument("--snapshot-every", type=int, default=0,
                        help="also save intermediate checkpoints under OUT/snapshots/ (monitoring only)")
    args = parser.parse_args(argv)
    cfg = TrainConfig(steps=args.steps, mc_phase_steps=args.mc_phase_steps, batch_size=args.batch_size,
                      seed=args.seed)

    def log(line: str) -> None:
        print(line, flush=True)

    if args.from_phase_one is None:
        model, processor = toy.build_untrained(seed=cfg.seed)
    else:
        model, processor = toy.load_for_training(args.from_phase_one)
    callback = None
    if args.snapshot_every:
        def callback(step: int) -> None:
            if step % args.snapshot_every == 0:
                toy.save(model, processor, args.out / "snapshots" / f"step{step}")

    wall = 0.0
    if args.from_phase_one is None:
        wall += train(model, processor, cfg, log=log, on_step=callback, phases=(1,))["wall_seconds"]
        phase_one = {"phase_one_sha256": phase_one_digest(model, processor), "phase_one_seconds": round(wall, 1)}
    else:
        phase_one = {"phase_one_sha256": sha256(args.from_phase_one / "model.safetensors"),
                     "phase_one_from": str(args.from_phase_one)}
    summary = train(model, processor, cfg, log=log, on_step=callback, phases=(2,))
    wall += summary.pop("wall_seconds")
    toy.save(model, processor, args.out)
    record = {"config": asdict(cfg), **phase_one, "wall_seconds": round(wall, 1),
              "final_losses": {k: round(v, 4) for k, v in summary.items()},
              "model_sha256": sha256(args.out / "model.safetensors")}
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
