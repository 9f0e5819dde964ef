from typer.testing import CliRunner

from bcemb.cli import app

runner = CliRunner()


def test_ctrl_c_says_how_to_resume(tmp_path, monkeypatch):
    import bcemb.experiments.training_run as tr

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(tr, "train_method", interrupted)
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), "--dataset", "synthetic"])
    assert res.exit_code == 130
    assert "run the same command again to resume" in res.output


def test_set_lam_reaches_the_configuration(tmp_path, monkeypatch):
    import bcemb.experiments.training_run as tr

    seen = {}

    def record(data, method, config, out, **kwargs):
        seen["lam"], seen["method_lam"] = config.lam, method.lam
        return []

    monkeypatch.setattr(tr, "train_method", record)
    res = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), "--dataset", "synthetic", "--set", "lam=8"])
    assert res.exit_code == 0, res.output
    assert seen == {"lam": 8.0, "method_lam": 8.0}
