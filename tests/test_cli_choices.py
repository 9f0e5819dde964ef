"""The CLI lists its fixed sets without importing the library; they must match the registries."""

import subprocess
import sys

from typer.testing import CliRunner

from bcemb import cli
from bcemb.cli import app

runner = CliRunner()


def test_choices_match_the_registries():
    from bcemb.data import DATASETS
    from bcemb.methods import METHODS

    assert set(cli.DATASET_CHOICES) == set(DATASETS.names())
    assert set(cli.METHOD_CHOICES) == set(METHODS.names())


def test_help_lists_the_choices_and_version_prints():
    res = runner.invoke(app, ["train", "--help"])
    assert res.exit_code == 0
    for name in ("ml-100k", "synthetic", "quick", "paper", "bc-aligner", "cuda:N"):
        assert name in res.output
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("bcemb ")


def test_help_does_not_import_torch():
    code = "import sys, bcemb.cli; print('torch' in sys.modules, 'fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_bad_values_name_their_option(tmp_path):
    cases = [
        (["train", "--device", "tpu"], "--device"),
        (["train", "--dataset", "foo"], "--dataset"),
        (["train", "--method", "bc-align"], "--method"),
        (["train", "--dataset", "synthetic", "--synthetic", "num_users=abc"], "--synthetic"),
        (["benchmark", "--lams", "1,x"], "--lams"),
        (["store", "ls", "--store", str(tmp_path / "f")], "--store"),
    ]
    (tmp_path / "f").write_text("not a store")
    for args, option in cases:
        res = runner.invoke(app, [*args, "--out", str(tmp_path / "o")] if args[0] in ("train", "benchmark") else args)
        assert res.exit_code == 2, (args, res.output)
        assert option in res.output, (args, res.output)
    assert not (tmp_path / "o").exists()  # nothing written for a rejected command


def test_negative_lam_is_refused_before_anything_is_written(tmp_path):
    res = runner.invoke(app, ["train", "--lam", "-1", "--dataset", "synthetic", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "--lam" in res.output  # a usage error
    assert not (tmp_path / "o").exists()


def test_help_lists_lazy_commands_without_importing_them():
    """Issue 12: ``bcemb --help`` imported torch through ``adapt`` (20 s on a loaded machine)."""
    code = (
        "import sys\nfrom bcemb.cli import main\nsys.argv = ['bcemb', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('MODULES', 'torch' in sys.modules, 'fastapi' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("MODULES")[1].split() == ["False", "False", "False"]
    for name in ("adapt", "store", "serve", "train"):
        assert name in out
    for name, shown in (("adapt", "--old"), ("store", "publish"), ("serve", "--port")):
        res = runner.invoke(app, [name, "--help"])
        assert res.exit_code == 0 and f" {name} " in res.output and shown in res.output, res.output


def test_library_errors_end_in_one_line_with_status_1(tmp_path, monkeypatch):
    import bcemb.evaluation.report as report
    from bcemb.store.errors import StoreError

    def boom(*args, **kwargs):
        raise StoreError(f"{tmp_path} is broken")

    monkeypatch.setattr(report, "write_report", boom)
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 1 and res.output.strip() == f"error: {tmp_path} is broken"
