"""Train the toy LLaVA from scratch and write it to data/toy-model (or --out).

Usage:  python scripts/train_toy.py [--steps 1200] [--out data/toy-model]

Fixed step count, 2 threads, seeded: on the same machine type the same command writes the
same weights (compare the SHA-256 recorded in the README).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict
from pathlib import Path

from studylib.models import toy
from studylib.models.toy_training import TrainConfig, train


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", type=Path, default=Path("data/toy-model"))
    parser.add_argument("--snapshot-every", type=int, default=0,
                        help="also save intermediate checkpoints under OUT/snapshots/ (monitoring only)")
    args = parser.parse_args(argv)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    model, processor = toy.build_untrained(seed=cfg.seed)

    def log(line: str) -> None:
        print(line, flush=True)

    callback = None
    if args.snapshot_every:
        def callback(step: int) -> None:
            if step % args.snapshot_every == 0:
                toy.save(model, processor, args.out / "snapshots" / f"step{step}")

    summary = train(model, processor, cfg, log=log, on_step=callback)
    toy.save(model, processor, args.out)
    digest = sha256(args.out / "model.safetensors")
    record = {"config": asdict(cfg), "wall_seconds": round(summary["wall_seconds"], 1),
              "final_losses": {k: round(v, 4) for k, v in summary.items() if k != "wall_seconds"},
              "model_sha256": digest}
    (args.out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
