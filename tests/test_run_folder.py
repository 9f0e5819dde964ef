import pytest

from bcemb import run_folder as rf


def test_claim_records_and_accepts_the_same_configuration(tmp_path):
    rf.claim(tmp_path / "run", {"method": "bc-aligner", "lam": 16.0, "seed": 0, "environment": {"a": 1}})
    cfg = rf.read_config(tmp_path / "run")
    assert cfg["run_format"] == rf.RUN_FORMAT and cfg["method"] == "bc-aligner"
    # the environment may change between a run and its resume
    rf.claim(tmp_path / "run", {"method": "bc-aligner", "lam": 16.0, "seed": 0, "environment": {"a": 2}})


def test_claim_refuses_another_configuration(tmp_path):
    rf.claim(tmp_path / "run", {"method": "bc-aligner", "lam": 16.0, "seed": 0})
    with pytest.raises(rf.RunFolderError, match="differs in: lam, method"):
        rf.claim(tmp_path / "run", {"method": "non-bc", "lam": 8.0, "seed": 0})


def test_newer_run_format_fails_loudly(tmp_path):
    rf.claim(tmp_path / "run", {"method": "x"})
    (tmp_path / "run" / rf.CONFIG).write_text('{"run_format": 99}')
    with pytest.raises(rf.RunFolderError, match="run format 99"):
        rf.read_config(tmp_path / "run")


def test_a_second_trainer_cannot_take_the_folder(tmp_path):
    with rf.lock(tmp_path / "run"):
        with pytest.raises(rf.RunFolderError, match="another process"):
            with rf.lock(tmp_path / "run"):
                pass
    with rf.lock(tmp_path / "run"):  # released
        pass


def test_finished_versions_stop_at_the_first_gap(tmp_path):
    for k in (0, 1, 3):
        rf.mark_done(rf.version_dir(tmp_path, k), k)
    assert rf.finished_versions(tmp_path) == [0, 1]
