"""A sweep SIGKILLed in a separate process resumes to exactly the table of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from _sweep_helpers import ForwardCounter, small_adapter

from studylib.sweep import run_sweep

CONFIGS = ["scope(alpha=0)@16", "random(seed=1)@8", "fastv(layer=1)@24"]
SWEEP = dict(dataset_options={"n_images": 6}, limit=2, batch_size=5, progress=False, model_name="small-random")
HELPERS = Path(__file__).resolve().parent
SRC = HELPERS.parents[1] / "src"

SCRIPT = textwrap.dedent("""
    import sys
    from _sweep_helpers import slow_small_adapter
    import studylib.sweep.run
    from studylib.sweep import run_sweep

    studylib.sweep.run.PART_SECONDS = 0.0  # a part per batch, so that the kill lands between parts

    adapter = slow_small_adapter(0.15)  # slow enough that the test can kill it mid-run
    run_sweep(adapter, "toy-pope", {configs!r}, results_dir=sys.argv[1], **{sweep!r})
    print("FINISHED")
""")


def _state(results: Path) -> tuple[int, int]:
    """(finished cells, parts of unfinished cells) currently visible."""
    unfinished = [d for d in results.glob("*.parts") if not (results / f"{d.name[:-len('.parts')]}.parquet").exists()]
    return len(list(results.glob("*.parquet"))), sum(len(list(d.glob("part-*.parquet"))) for d in unfinished)


def test_sigkilled_sweep_resumes_to_the_uninterrupted_table(tmp_path):
    results = tmp_path / "killed"
    script = tmp_path / "sweep.py"
    script.write_text(SCRIPT.format(configs=CONFIGS, sweep=SWEEP))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(HELPERS)])}
    process = subprocess.Popen([sys.executable, str(script), str(results)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        # meanwhile: the uninterrupted reference, in this process
        adapter = small_adapter()
        reference = run_sweep(adapter, "toy-pope", CONFIGS, results_dir=tmp_path / "reference", **SWEEP)

        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            finished, parts = _state(results)
            if finished >= 1 and parts >= 2:  # one cell done, the next one half-way
                process.send_signal(signal.SIGKILL)
                break
            if process.poll() is not None:
                pytest.fail(f"the sweep ended before it could be killed:\n{process.stdout.read().decode()}")
            time.sleep(0.02)
        else:
            pytest.fail("the sweep never reached the kill point")
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    finished, parts = _state(results)
    assert finished >= 1 and parts >= 2
    for parts_dir in results.glob("*.parts"):
        stored = pd.concat([pd.read_parquet(p) for p in parts_dir.glob("part-*.parquet")])
        assert not stored["qid"].duplicated().any()

    counter = ForwardCounter(adapter)
    try:
        resumed = run_sweep(adapter, "toy-pope", CONFIGS, results_dir=results, **SWEEP)
    finally:
        counter.remove()
    statuses = [cell["status"] for cell in resumed.attrs["cells"]]
    assert statuses[0] == "cached" and "resumed" in statuses
    assert counter.calls < 3 * 6  # fewer forwards than 3 cells x 6 batches: stored rows were not recomputed
    pd.testing.assert_frame_equal(resumed, reference, check_exact=True)
    assert not list(results.glob("*.parts")) and not list(results.rglob("*.tmp"))
