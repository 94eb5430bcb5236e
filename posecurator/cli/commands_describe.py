"""CLI command `describe`: caption a dataset's clips or samples in words (registered by cli.main)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from posecurator.errors import DataError, PoseCuratorError


def register(sub, add_parser, commands: dict) -> None:
    """Add the ``describe`` subcommand to the ``posecurator`` parser (``add_parser(sub, name, help, examples)``)."""
    s = add_parser(sub, "describe", "Caption a dataset in words: its labels plus a deterministic description of each "
                                    "clip's motion or each sample's pose (the text PoseSyn is conditioned on).",
                   "  posecurator describe hdm05.pcs -o captions/hdm05                 # one caption per clip\n"
                   "  posecurator describe ../shared/data/bandai -o captions/bandai --window 60   # per 2 s window\n"
                   "  posecurator describe hdm05.pcs -o captions/poses --per sample       # one per pose\n"
                   "  posecurator describe mine.pcs -o captions/mine --captions my_captions.csv  # yours first\n"
                   "writes OUT/captions.json (sample_id, text, source, clip, frame_start, frame_stop) and\n"
                   "OUT/summary.json (captions per source, the 20 most common phrases); prints a few examples.\n"
                   "--captions FILE: a JSON object {\"sample_id\": \"text\"} or a CSV with columns sample_id,text;\n"
                   "samples it does not name are described (source recorded per caption). Describing needs 3D:\n"
                   "2D-only data is captioned from an estimator's predictions by `posecurator hard`.\n")
    s.add_argument("dataset", help="dataset folder (or any importable file/folder) with 3D poses")
    s.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    s.add_argument("--captions", metavar="FILE", help="your captions by sample id (JSON or CSV); implies --per sample")
    s.add_argument("--window", type=int, default=None, metavar="N",
                   help="caption windows of N consecutive frames instead of whole clips (per clip only)")
    s.add_argument("--per", choices=["clip", "sample"], default=None,
                   help="caption every clip (default) or every sample (default with --captions)")
    s.add_argument("--examples", type=int, default=5, metavar="K", help="captions to print (default 5)")
    commands["describe"] = cmd_describe


def cmd_describe(args):
    from posecurator.pipelines.splits import load_dataset
    from posecurator.synthesis.captions import caption_clips, caption_samples, caption_summary

    per = args.per or ("sample" if args.captions else "clip")
    if args.captions and per != "sample":
        raise PoseCuratorError("--captions names sample ids: use it with --per sample")
    if args.window is not None and per != "clip":
        raise PoseCuratorError("--window cuts clips into windows: use it with --per clip")
    if args.window is not None and args.window < 2:
        raise PoseCuratorError(f"--window must be at least 2 frames, got {args.window}")
    if args.captions and not Path(args.captions).is_file():
        raise DataError(args.captions, "no such captions file")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder")
    ps = load_dataset(args.dataset, progress=not args.quiet)
    if ps.joints3d is None:
        raise DataError(args.dataset, "has no 3D poses; describing needs 3D (2D-only data is captioned from an "
                                      "estimator's 3D predictions by `posecurator hard`)")
    if ps.layout != "h36m17":
        raise DataError(args.dataset, f"layout {ps.layout}; describing needs h36m17 poses")
    ps.check_finite(args.dataset)
    if per == "clip":
        table = caption_clips(ps, window=args.window)
    else:
        table = caption_samples(ps, captions_file=args.captions)
    summary = caption_summary(table)
    summary["dataset"] = str(args.dataset)
    table.attrs["dataset"] = str(args.dataset)
    out.mkdir(parents=True, exist_ok=True)
    table.to_json(out / "captions.json")
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(out / "summary.json")
    shown = _examples(table, args.examples)
    for i in shown:
        where = f"{table.clip[i]} [{table.frame_start[i]}:{table.frame_stop[i]}]" if table.clip[i] else f"sample {table.sample_id[i]}"
        print(f"  {where}: {table.text[i]}")
    sources = ", ".join(f"{k} {v}" for k, v in summary["sources"].items())
    print(f"described {len(table)} {'windows' if args.window else per + 's'} ({sources}; "
          f"{summary['distinct_captions']} distinct) -> {out / 'captions.json'}, {out / 'summary.json'}",
          file=sys.stdout)


def _examples(table, k: int) -> list[int]:
    """Up to k rows spread evenly over the table (deterministic)."""
    n = len(table)
    if n == 0 or k <= 0:
        return []
    step = max(1, n // k)
    return list(range(0, n, step))[:k]
