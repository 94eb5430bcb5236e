"""The CLI's promise: bad input is one line naming the problem (exit 2); a bug of posecurator is one
line pointing to a log with the traceback (exit 3); warnings never come before an error line."""

from __future__ import annotations

import warnings

from posecurator.cli import main as cli
from posecurator.errors import DataError


def _run(monkeypatch, capsys, tmp_path, fn):
    monkeypatch.setenv("POSECURATOR_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setitem(cli.COMMANDS, "info", fn)
    code = cli.main(["info", "whatever"])
    return code, capsys.readouterr().err


def test_internal_error_is_one_line_with_a_log(monkeypatch, capsys, tmp_path):
    def boom(args):
        {}["missing"]  # a bug, not bad input

    code, err = _run(monkeypatch, capsys, tmp_path, boom)
    assert code == cli.EXIT_INTERNAL_ERROR == 3
    assert len(err.strip().splitlines()) == 1 and "internal error (KeyError" in err and "Traceback" not in err
    logs = list((tmp_path / "logs").iterdir())
    assert len(logs) == 1 and "Traceback" in logs[0].read_text() and str(logs[0]) in err


def test_bad_input_is_one_short_line_and_warnings_do_not_precede_it(monkeypatch, capsys, tmp_path):
    def bad(args):
        warnings.warn("overflow encountered in multiply", RuntimeWarning)
        raise DataError("data.npz", "fps must be > 0, got " + "9" * 5000 + "\nsecond line")

    code, err = _run(monkeypatch, capsys, tmp_path, bad)
    assert code == cli.EXIT_BAD_INPUT == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("posecurator info: error: data.npz: fps must be > 0")
    assert len(lines[0]) <= cli.MAX_MESSAGE + 40 and "overflow" not in err


def test_warnings_of_a_successful_command_come_after(monkeypatch, capsys, tmp_path):
    def ok(args):
        warnings.warn("one clip only: the validation part is the last frames of that clip", UserWarning)
        print("done")

    code, err = _run(monkeypatch, capsys, tmp_path, ok)
    assert code == 0 and err.strip() == "posecurator info: warning: one clip only: the validation part is the last frames of that clip"



def test_a_reader_that_stops_early_is_not_an_error(monkeypatch, capsys):
    """`posecurator info X | head -1`: the reader closed the pipe; the command ends quietly (exit 0)
    instead of reporting an internal error."""
    def writes_into_a_closed_pipe(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setitem(cli.COMMANDS, "info", writes_into_a_closed_pipe)
    assert cli.main(["info", "x.pcs"]) == 0
    assert "internal error" not in capsys.readouterr().err
