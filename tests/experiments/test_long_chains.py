import numpy as np

from bcemb.experiments.long_chains import chain_frame
from bcemb.store._testing import write_fake_run


def test_chain_frame_has_every_pair_of_a_run(tmp_path):
    # A real (random-weight) run: every pair j < k appears once, on the run's own graph.
    run = write_fake_run(tmp_path / "run", dims=(4, 6, 8), seed=1)
    frame = chain_frame([run])
    assert sorted(zip(frame["j"], frame["k"])) == [(0, 1), (0, 2), (1, 2)]
    assert (frame["method"] == "bc-aligner").all() and (frame["seed"] == 1).all()
    assert np.isfinite(frame["error"]).all() and (frame["error"] > 0).all()
