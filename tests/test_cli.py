import json

from typer.testing import CliRunner

from bcemb.cli import app

runner = CliRunner()
SYNTH = ["--dataset", "synthetic", "--synthetic", "num_users=150", "--synthetic", "num_items=120",
         "--synthetic", "num_edges=4000", "--synthetic", "seed=7"]
TINY = ["--set", "sizes=1x8,1x12,1x12,2x16,2x16", "--set", "train.epochs=2", "--set", "train.eval_every=1",
        "--set", "train.warmup_epochs=0", "--set", "train.batch_size=1024", "--set", "train.ks=10,20,50",
        "--quiet"]


def test_train_writes_a_resumable_run(tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "--method", "bc-aligner", "--lam", "4", "--out", str(out), *SYNTH, *TINY])
    assert res.exit_code == 0, res.output
    assert "run written to" in res.output and res.output.count("Recall@50") == 5
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "bc-aligner" and cfg["lam"] == 4.0 and cfg["train"]["epochs"] == 2
    assert "torch" in cfg["environment"]
    for k in range(5):
        assert (out / f"version_{k}" / "done.json").is_file()
        assert (out / f"version_{k}" / "embeddings.safetensors").is_file()
    assert (out / "version_3" / "transform.safetensors").is_file()
    stamp = (out / "version_4" / "done.json").read_text()
    again = runner.invoke(app, ["train", "--method", "bc-aligner", "--lam", "4", "--out", str(out), *SYNTH, *TINY])
    assert again.exit_code == 0 and (out / "version_4" / "done.json").read_text() == stamp


def test_bad_requests_exit_nonzero_with_a_message(tmp_path):
    res = runner.invoke(app, ["train", "--method", "bc-align", "--out", str(tmp_path / "x"), *SYNTH, *TINY])
    assert res.exit_code != 0 and "valid names" in res.output
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--set", "train.nope=1", *SYNTH])
    assert res.exit_code != 0 and "unknown setting" in res.output
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code != 0 and "no results" in res.output
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "x"), "--profile", "fast", *SYNTH])
    assert res.exit_code == 2 and "is not one of quick, paper" in res.output
