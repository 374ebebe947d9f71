"""Small things a new user hit on the command line, each with the behaviour they expected."""

from typer.testing import CliRunner

from trainguard.cli import app

runner = CliRunner()


def test_inspect_takes_a_run_folder_and_shows_its_newest_checkpoint(make_config, tmp_path):
    assert runner.invoke(app, ["run", str(make_config())]).exit_code == 0
    result = runner.invoke(app, ["inspect", str(tmp_path / "runs" / "t")])
    assert result.exit_code == 0, result.output
    assert "step 12" in result.output and "MISMATCH" not in result.output


def test_sandbox_exec_json_reports_a_timeout_with_a_failing_status(tmp_path):
    program = tmp_path / "loop.py"
    program.write_text("while True:\n    pass\n")
    result = runner.invoke(app, ["sandbox", "exec", str(program), "--timeout", "0.5", "--json"])
    assert result.exit_code == 1 and '"status": "timeout"' in result.output


def test_collecting_sft_rows_into_a_pairs_file_is_refused(tmp_path):
    out = tmp_path / "pairs.jsonl"
    collect = ["data", "collect", "--tasks", "sat", "--n", "3", "--out", str(out)]
    assert runner.invoke(app, [*collect, "--pairs"]).exit_code == 0
    result = runner.invoke(app, collect)
    assert result.exit_code == 2 and "holds preference pairs" in result.output
