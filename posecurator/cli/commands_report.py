"""CLI command `report` (one self-contained HTML report of a run folder) and the helpers every
run-producing command uses: :func:`record_command` (``RUN_DIR/command.json``: the command line
and the posecurator version, written before the work starts) and :func:`write_run_report` (the
report, written when the work is done). Registered by :mod:`posecurator.cli.main`.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Iterator

from posecurator.errors import PoseCuratorError

COMMAND_FILE = "command.json"  # = posecurator.report.html.COMMAND_FILE (not imported here: --help stays light)
# options that change how a command talks, not what it computes: left out of the reconstructed command
_QUIET_DESTS = {"quiet", "help", "version"}


def register(sub, add_parser, commands: dict) -> None:
    """Add ``report`` to the ``posecurator`` parser (``add_parser(sub, name, help, examples)``)."""
    s = add_parser(sub, "report", "Write one self-contained HTML report of a run folder (images embedded; opens offline).",
                   "  posecurator report runs/add                       # an ADD run -> runs/add/report.html\n"
                   "  posecurator report diff-bandai                    # a difficulty run\n"
                   "  posecurator report hard-coco                      # the output of posecurator hard\n"
                   "  posecurator report bench-out/hdm05-xsub           # a bench or vae-bench output\n"
                   "  posecurator report runs/base --test cmu.pcs       # a lifter run, with per-activity / per-joint errors on a test set\n"
                   "  posecurator report demo-out -o /tmp/demo.html     # the demo (links the reports of its parts)\n"
                   "the kind of run is told by its files: ADD (summary.json + add_config.json), difficulty\n"
                   "(summary.json + bins.json), hard (summary.json with a selection), bench / vae-bench (results.json\n"
                   "+ table.md), lifter run (config.json + history.json), demo (demo.json)\n")
    s.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by add, difficulty, hard, bench, vae-bench, train or demo")
    s.add_argument("-o", "--output", metavar="FILE", help="HTML file to write (default RUN_DIR/report.html)")
    s.add_argument("--kind", choices=["add", "difficulty", "hard", "bench", "vae-bench", "lifter", "demo"],
                   help="the kind of run (default: told by its files)")
    s.add_argument("--test", metavar="DATASET", help="a 3D test set (dataset folder or any importable file/folder): the "
                                                     "per-activity and per-joint errors of the run's lifters are measured on it "
                                                     "(default: the run's own validation clips where it has them)")
    s.add_argument("--redraw", action="store_true", help="draw the run's plots again from their plot data first")
    commands["report"] = cmd_report


def cmd_report(args) -> None:
    from posecurator.report.html import write_report

    run_dir = Path(args.run_dir)
    if not run_dir.is_dir():
        raise PoseCuratorError(f"{run_dir}: not a folder")
    path = write_report(run_dir, kind=args.kind, output=args.output, test=args.test, redraw=args.redraw,
                        log=(lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr)))
    print(f"report -> {path}")


# ------------------------------------------------------------------------------ command.json
def canonical_command(args) -> list[str] | None:
    """The parsed options of ``args`` written back as a ``posecurator`` command line (every option
    that differs from its default, positionals in order), or None when the parser cannot say."""
    try:
        from posecurator.cli.main import build_parser

        parser = build_parser()
        sub_action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        sub = sub_action.choices[args.command]
    except Exception:  # noqa: BLE001 - a best effort; the raw argv is recorded as well
        return None
    out = ["posecurator", args.command]
    positionals, options = [], []
    for action in sub._actions:
        dest = action.dest
        if dest in _QUIET_DESTS or dest == "command" or not hasattr(args, dest):
            continue
        value = getattr(args, dest)
        if not action.option_strings:
            positionals += [str(v) for v in value] if isinstance(value, list) else [str(value)]
            continue
        if value is None or value == action.default:
            continue
        flag = max(action.option_strings, key=len)  # the long form reads better in a report
        if action.nargs == 0:  # store_true / store_false
            options.append(flag)
        elif isinstance(value, (list, tuple)):
            options += [flag, *map(str, value)]
        else:
            options += [flag, str(value)]
    return out + positionals + options


def _json_safe(obj):
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


def command_record(args, *, argv: list[str] | None = None) -> dict:
    """What :func:`record_command` writes: ``argv`` (sys.argv as the process got it), ``typed``
    (the command line as typed, when sys.argv is this command: not when the CLI was called from
    Python), ``canonical`` (the parsed options written back as a command line), ``options``, the
    working directory, the posecurator and Python versions and the start time (UTC)."""
    import posecurator

    argv = list(sys.argv if argv is None else argv)
    typed = None
    if len(argv) > 1 and argv[1] == getattr(args, "command", None):
        typed = "posecurator " + shlex.join(argv[1:])
    canonical = canonical_command(args)
    return {"format": "posecurator-command", "version": 1, "posecurator_version": posecurator.__version__,
            "command": getattr(args, "command", None), "argv": argv, "typed": typed,
            "canonical": None if canonical is None else shlex.join(canonical), "options": _json_safe(vars(args)),
            "cwd": os.getcwd(), "python": platform.python_version(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def record_command(out_dir, args, *, record: dict | None = None) -> Path:
    """Write ``out_dir/command.json`` (atomically; ``out_dir`` is made if missing) with
    :func:`command_record` (or ``record``, made earlier: `hard` replaces its whole folder at the
    end, so it records the command it took at the start once the folder is in place)."""
    from posecurator.fileio import atomic_write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # a unique temporary name and fsync (fileio): two commands recording at once never share a temp file
    return atomic_write_json(out / COMMAND_FILE, command_record(args) if record is None else record, indent=1)


@contextlib.contextmanager
def recorded_command(out_dir, args) -> Iterator[Path]:
    """Record the command in ``out_dir/command.json`` before the work in the ``with`` block; when
    the work fails (e.g. the folder holds another run that must not be overwritten), the
    ``command.json`` that was there before is put back (or the new one removed, with the folder
    if this made it). ``bench --table-only`` keeps the command that made the runs."""
    path = Path(out_dir) / COMMAND_FILE
    if getattr(args, "table_only", False) and path.is_file():  # tabulating again does not make the runs: keep their command
        yield path
        return
    existed = Path(out_dir).exists()
    try:
        before = path.read_bytes() if path.is_file() else None
    except OSError:
        before = None
    record_command(out_dir, args)
    try:
        yield path
    except BaseException:
        try:
            if before is None:
                path.unlink(missing_ok=True)
                if not existed and not any(Path(out_dir).iterdir()):
                    Path(out_dir).rmdir()  # no half-written output: the folder this made goes again
            else:
                tmp = path.with_name(f".{COMMAND_FILE}.tmp")
                tmp.write_bytes(before)
                os.replace(tmp, path)
        except OSError:
            pass
        raise


def write_run_report(out_dir, args, **kwargs) -> Path | None:
    """The HTML report of a run a command has just made (``out_dir/report.html``); prints where
    it went. A report that cannot be written is said on stderr and does not fail the command: the
    run itself is complete (``posecurator report OUT`` retries)."""
    from posecurator.report.html import write_report

    try:
        path = write_report(out_dir, **kwargs)
    except Exception as e:  # noqa: BLE001 - the run is complete; a report problem must not fail the command
        print(f"posecurator {args.command}: warning: no report written ({type(e).__name__}: {e}); retry with "
              f"`posecurator report {out_dir}`", file=sys.stderr)
        return None
    print(f"report: {path}")
    return path


def write_demo_reports(out_dir, args) -> Path | None:
    """The reports of the demo's parts (ADD, difficulty, hard samples), then the demo's own
    report, which links them and embeds their key figures."""
    out = Path(out_dir)
    doc = json.loads((out / "demo.json").read_text())
    demo = command_record(args)
    parts, commands = doc.get("parts") or {}, doc.get("commands") or {}
    for part in ("add", "difficulty", "hard", "baseline", "vae_hard33"):
        folder = out / parts.get(part, part)
        if not folder.is_dir():
            continue
        if part in commands:  # each part's command.json: the command that makes it alone, and the demo it came from
            words = shlex.split(commands[part])
            record_command(folder, args, record={**demo, "command": words[1], "typed": None, "canonical": commands[part],
                                                 "options": {"dataset": words[2]},
                                                 "part_of": demo.get("typed") or demo.get("canonical")})
        if part in ("add", "difficulty", "hard"):  # the lifter runs are drawn in the demo's own report
            write_run_report(folder, args, test=out / "test.pcs" if part == "add" else None)
    return write_run_report(out, args, kind="demo")
