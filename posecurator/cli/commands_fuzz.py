"""CLI command `fuzz`: import mutated copies of real files of every format (registered by cli.main)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from posecurator.errors import PoseCuratorError


def register(sub, add_parser, commands: dict) -> None:
    """Add the ``fuzz`` subcommand to the ``posecurator`` parser (``add_parser(sub, name, help, examples)``)."""
    from posecurator.io.fuzz import FORMATS

    s = add_parser(sub, "fuzz", "Fuzz the readers: import mutated copies of real files of every format; each must give a "
                                "sane pose set or one clean error line (exit 2 when a case crashed or left output behind).",
                   "  posecurator fuzz                                   # 10,000 cases, seed 0, ../shared/data\n"
                   "  posecurator fuzz --cases 500 --seed 3 -o fuzz-out   # writes fuzz-out/fuzz-report.json\n"
                   "  posecurator fuzz --formats coco mmpose --cases 2000\n"
                   "  posecurator fuzz --seed 0 --case 4711 --json        # rerun one case of a report\n"
                   "outcomes: valid (a sane pose set), clean_error (one line naming the file), crash (a traceback,\n"
                   "a warning, a bad message or an insane set), half_written (a failed `posecurator import` left\n"
                   "files behind); OUT/crash-inputs/ keeps the mutated inputs of the first crashing cases\n")
    s.add_argument("--data", help="data root laid out as ../shared/data (default ../shared/data or $POSECURATOR_DATA)")
    s.add_argument("--cases", type=int, default=10000, help="number of cases (default 10000)")
    s.add_argument("--seed", type=int, default=0, help="seed: the same seed gives the same cases (default 0)")
    s.add_argument("-o", "--output", metavar="OUT", help="folder for fuzz-report.json and crash-inputs/")
    s.add_argument("--formats", nargs="+", choices=FORMATS, metavar="FORMAT",
                   help=f"formats to fuzz (default all whose data exist): {', '.join(FORMATS)}")
    s.add_argument("--case", type=int, nargs="+", metavar="N", help="run only these case numbers (to rerun a reported case)")
    s.add_argument("--json", action="store_true", help="print the report as one JSON object")
    commands["fuzz"] = cmd_fuzz


def cmd_fuzz(args):
    from posecurator.cli.main import main as cli_main
    from posecurator.io.fuzz import format_table, run_fuzz
    from posecurator.pipelines.splits import default_data_root

    if args.cases < 0:
        raise PoseCuratorError(f"--cases must be >= 0, got {args.cases}")
    root = Path(args.data) if args.data else default_data_root()
    report = run_fuzz(root, cases=args.cases, seed=args.seed, out_dir=args.output, formats=args.formats,
                      progress=not args.quiet, cli_main=cli_main, case_ids=args.case)
    if args.json:
        print(json.dumps(report))
    else:
        _print_summary(report, format_table(report), args.output)
    bad = report["outcomes"]["crash"], report["outcomes"]["half_written"]
    if any(bad):
        where = f"; see {Path(args.output) / 'fuzz-report.json'}" if args.output else ""
        raise PoseCuratorError(f"{bad[0]} crash(es) and {bad[1]} half-written case(s) in {report['cases']} cases{where}")


def _print_summary(report: dict, table: str, out) -> None:
    print(table)
    print(f"{report['cases']} cases ({report['cli_cases']} through `posecurator import`), seed {report['seed']}, "
          f"{report['wall_s']:.1f} s ({report['cases_per_s']} cases/s)")
    for kind in ("crashes", "half_written"):
        for c in report[kind][:10]:
            print(f"  {kind.replace('_', '-')}: {c['description']}\n    {c['problem']}: {c['error']}", file=sys.stderr)
    if out:
        print(f"report: {Path(out) / 'fuzz-report.json'}")
