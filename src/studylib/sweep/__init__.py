"""Sweeps: a grid of pruning configurations run over a dataset, one stored row per question.

    grid.py      Config ("pruner_spec@K") and config_grid
    validate.py  parameter checks before any work (validate_parameters)
    identity.py  what a store cell is keyed by (weights, data, images, prompts, options)
    digests.py   content hashes: files (cached), tensors, source code, table checksums
    locks.py     flock locks of store cells
    store.py     the resumable, checksummed parquet result store (one cell per config)
    verify.py    python -m studylib.sweep.verify <results>: ok / stale / damaged / orphaned
    scoring.py   the one scoring path and its row layout
    run.py       plan_sweep / run_sweep (slices of cells, locks, consolidation)
    shard.py     one sweep over torchrun ranks or SLURM array tasks (scripts/sweep.py)
"""

from studylib.sweep.grid import Config, StudyParameterError, config_grid, config_name
from studylib.sweep.identity import model_identity, model_num_tokens
from studylib.sweep.run import SweepPlan, plan_sweep, run_sweep
from studylib.sweep.scoring import CAPTION_COLUMNS, ENCODE_GROUP, SCORED_COLUMNS, kept_token_diagnostics, score_dataset
from studylib.sweep.store import STORE_VERSION, Cell, StoreIntegrityWarning, list_cells
from studylib.sweep.validate import select_questions, validate_parameters

__all__ = ["CAPTION_COLUMNS", "Cell", "Config", "ENCODE_GROUP", "SCORED_COLUMNS", "STORE_VERSION",
           "StudyParameterError", "SweepPlan", "config_grid", "config_name", "kept_token_diagnostics", "list_cells",
           "model_identity", "model_num_tokens", "plan_sweep", "run_sweep", "score_dataset", "select_questions",
           "validate_parameters"]
