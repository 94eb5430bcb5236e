"""Scale benchmark (issue 12, first slice): poses/s and peak memory of import, augmentation, loading
and the streaming scorer at 10^5, 10^6 (and 10^7) poses evolved from the Bandai data.

Every measurement runs in a fresh subprocess under ``/usr/bin/time -v`` (peak memory = its
"Maximum resident set size"), one thread (OMP/BLAS/torch), with ``PYTHONPATH`` pointing at the code
to measure (``--code``; default this checkout). To compare with another version of posecurator,
extract it and point ``--code`` at it, e.g. the last commit (nothing in the checkout changes)::

    mkdir -p /tmp/pc-head && git archive HEAD | tar -x -C /tmp/pc-head
    cp posecurator/scoring/stream.py /tmp/pc-head/posecurator/scoring/   # the streaming scorer
    python benchmarks/scale_bench.py --code /tmp/pc-head --label before
    python benchmarks/scale_bench.py --label after
    python benchmarks/scale_bench.py --compare before after

Stages (N = poses in the measured set):

* ``import``: ``posecurator import`` of ../shared/data/bandai (BVH, 417k poses at 30 fps);
* ``augment``: ``posecurator augment --only-new`` from the imported Bandai set, writing N new poses
  (evolution + plausibility prior + writing the set);
* ``load``: ``PoseSet.load`` of the augmented set (all columns: what the text columns cost in memory);
* ``score-stream``: the density scorer fitted on the original Bandai poses, then
  :func:`posecurator.scoring.stream.score_dataset` over the augmented set (all columns read), writing
  scores.npz; poses/s counts the scoring only (the fit's seconds are reported apart);
* ``score-cli``: ``posecurator score --scorer density --reference bandai.pcs`` (the in-memory path).

Streamed stages over the augmented set (issue 12 item 2; each a CLI command, memory flat in N
beyond the chunk and a few bytes per pose):

* ``check-stream``: the joint-angle prior fitted on bandai.pcs chunk by chunk, then every pose of
  the augmented set checked chunk by chunk (``plausibility.fit_dataset`` / ``check_dataset``);
  poses/s counts the check only;
* ``score-self``: ``posecurator score --scorer density`` with no reference (the set is its own
  reference: fitted on a seeded sample of 50,000 read through ``PoseStore.take``, then one pass);
* ``export-plausible``: ``posecurator export --format pcs --plausible-only --prior-from bandai.pcs``
  (prior fit + check + the plausible rows written, all streamed);
* ``select-stream``: ``posecurator export --format pcs --scores SCORES --keep-lowest 0.8`` (quality
  distillation of one score: the (N,) scores ranked, the kept rows copied block by block);
* ``export-vp3d``: ``posecurator export --format videopose3d`` of the set (not streamed: the format
  is one npz holding every pose; sizes up to ``--cli-max``).

Engines (issue 12, sharded evolution): ``--engine ray --workers N`` runs the augmentation's shards
and the streaming scorer's blocks on a private local Ray cluster of N CPUs (pinned to 127.0.0.1;
run the benchmark inside ``unshare -n`` on shared machines, see tests/test_engine.py);
``--shard-size`` is passed to ``posecurator augment`` (0 = one random stream, as before shards).
Versions without these options are measured without them (leave them out with ``--code``)::

    unshare -n sh -c 'ip link set lo up && python benchmarks/scale_bench.py --label ray2 --engine ray --workers 2 \
        --stages augment,score-stream --sizes 1e6,1e7'

A size whose augmentation would need more than ``--max-gb`` (estimated linearly from the largest
size measured so far) is skipped and reported as such. Outputs go under ``bench-out/scale/LABEL``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "bandai"
OUT = REPO / "bench-out" / "scale"
THREAD_ENV = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}

SCORE_STREAM = r"""
import json, sys, time
from posecurator.poseset import PoseSet
from posecurator.scoring.density import DensityScorer
from posecurator.scoring.stream import score_dataset
ref, data, out, chunk = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
engine = None
if len(sys.argv) > 5 and sys.argv[5] != "local":
    from posecurator.engine import make_engine
    engine = make_engine(sys.argv[5], workers=int(sys.argv[6]) if sys.argv[6] != "0" else None)
t0 = time.perf_counter()
scorer = DensityScorer(seed=0).fit(PoseSet.load(ref, columns=["joints3d"]))
t1 = time.perf_counter()
kw = {} if engine is None else {"engine": engine}
ids, scores = score_dataset(scorer, data, chunk_size=chunk, output=out, **kw)
t2 = time.perf_counter()
if engine is not None:
    engine.close()
print("RESULT", json.dumps({"n": len(ids), "fit_s": t1 - t0, "score_s": t2 - t1}))
"""

CHECK_STREAM = r"""
import json, sys, time
from posecurator.augment.plausibility import JointAnglePrior, check_dataset, fit_dataset
ref, data = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
prior = fit_dataset(JointAnglePrior(), ref)
t1 = time.perf_counter()
ok = check_dataset(prior, data)
t2 = time.perf_counter()
print("RESULT", json.dumps({"n": len(ok), "fit_s": t1 - t0, "score_s": t2 - t1, "plausible": int(ok.sum())}))
"""

LOAD = r"""
import json, sys, time
from posecurator.poseset import PoseSet
t0 = time.perf_counter()
ps = PoseSet.load(sys.argv[1])
t1 = time.perf_counter()
text = sum(getattr(ps, k).nbytes for k in ("source", "subject", "activity", "clip", "operator"))
print("RESULT", json.dumps({"n": len(ps), "load_s": t1 - t0, "text_bytes": int(text),
                            "text_dtypes": [str(getattr(ps, k).dtype) for k in ("source", "subject", "activity", "clip", "operator")]}))
"""


def timed(cmd: list[str], code: Path, timeout: float) -> dict:
    """Run ``cmd`` under /usr/bin/time -v; wall seconds, peak RSS (MiB), and a RESULT json line if printed."""
    env = {**os.environ, **THREAD_ENV, "PYTHONPATH": str(code)}
    t0 = time.perf_counter()
    try:
        p = subprocess.run(["/usr/bin/time", "-v", *cmd], env=env, capture_output=True, text=True, timeout=timeout,
                           cwd=str(code))
    except subprocess.TimeoutExpired:
        return {"ok": False, "why": f"timed out after {timeout:.0f} s"}
    wall = time.perf_counter() - t0
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    out = {"ok": p.returncode == 0, "wall_s": wall, "peak_mib": int(rss.group(1)) / 1024 if rss else None}
    if p.returncode != 0:
        out["why"] = (p.stderr.strip().splitlines() or ["?"])[-25:]
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            out.update(json.loads(line[len("RESULT "):]))
    return out


def run(args) -> list[dict]:
    code = Path(args.code).resolve()
    out = Path(args.out) / args.label
    shared = Path(args.out) / "shared"
    out.mkdir(parents=True, exist_ok=True)
    shared.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    saved = out / "results.json"
    # rows of an earlier run of this label are kept unless measured again (e.g. --stages score-stream)
    rows: list[dict] = json.loads(saved.read_text())["rows"] if saved.exists() else []

    def record(stage, n, r, extra=""):
        row = {"stage": stage, "n": n, **r, "note": extra}
        if r.get("ok") and n and r.get("wall_s"):
            secs = r.get("score_s", r.get("load_s", r["wall_s"]))
            row["poses_per_s"] = n / secs if secs else None
        rows[:] = [x for x in rows if (x["stage"], x["n"]) != (stage, n)] + [row]
        print(format_row(row), flush=True)
        (out / "results.json").write_text(json.dumps({"label": args.label, "code": str(code), "rows": rows}, indent=1))

    print(header(), flush=True)
    bandai = out / "bandai.pcs"
    if "import" in args.stages or not (shared / "bandai.pcs").exists():
        r = timed([py, "-m", "posecurator", "import", str(args.data), "-o", str(bandai), "-q"], code, args.timeout)
        n0 = _count(bandai) if r["ok"] else None
        record("import", n0, r)
        if r["ok"] and not (shared / "bandai.pcs").exists():
            shutil.copytree(bandai, shared / "bandai.pcs")
    base = shared / "bandai.pcs"
    n0 = _count(base)
    est_gib_per_m = None
    for n in args.sizes:
        aug = out / f"aug-{n:.0e}.pcs"
        if est_gib_per_m is not None and est_gib_per_m * n / 1e6 > args.max_gb:
            for stage in ("augment", "load", "score-stream", "score-cli"):
                record(stage, n, {"ok": False, "why": f"skipped: est. {est_gib_per_m * n / 1e6:.1f} GiB > {args.max_gb} GiB"})
            continue
        if "augment" in args.stages:
            mult = 1 + n / n0
            r = timed([py, "-m", "posecurator", "augment", str(base), "-o", str(aug), "--only-new", "--multiplier",
                       repr(mult), "--seed", "0", "-q", *engine_args(args, shards=True)], code, args.timeout)
            note = f"from {n0} Bandai poses, x{mult:.4g}{engine_note(args)}"
            st = aug / "augment_stats.json"
            if r["ok"] and st.exists():
                doc = json.loads(st.read_text())
                note += f"; evolution {doc['generation_s']:.1f} s = {doc['poses_per_s']:.0f} poses/s made"
            record("augment", _count(aug) if r["ok"] else n, r, note)
            if r["ok"] and r.get("peak_mib"):
                est_gib_per_m = r["peak_mib"] / 1024 / (n / 1e6)  # linear from the largest size measured
        if not aug.exists():
            continue
        n_aug = _count(aug)
        if "load" in args.stages:
            r = timed([py, "-c", LOAD, str(aug)], code, args.timeout)
            record("load", n_aug, r, f"text {r.get('text_bytes', 0) / n_aug:.0f} B/pose" if r.get("ok") else "")
        if "score-stream" in args.stages:
            extra = [args.engine, str(args.workers or 0)] if args.engine != "local" else []
            r = timed([py, "-c", SCORE_STREAM, str(base), str(aug), str(out / f"scores-{n:.0e}.npz"), str(args.chunk), *extra],
                      code, args.timeout)
            record("score-stream", n_aug, r, f"fit {r.get('fit_s', 0):.1f} s, chunk {args.chunk}{engine_note(args)}"
                   if r.get("ok") else "")
        if "score-cli" in args.stages and n <= args.cli_max:
            r = timed([py, "-m", "posecurator", "score", str(aug), "--scorer", "density", "--reference", str(base),
                       "-o", str(out / f"scores-cli-{n:.0e}.npz"), "-q"], code, args.timeout)
            record("score-cli", n_aug, r, "in memory, incl. fit")
        run_stream_stages(args, code, py, record, base, aug, out, n, n_aug)
        if not args.keep and n >= 10 ** 7:
            shutil.rmtree(aug, ignore_errors=True)
    return rows


def run_stream_stages(args, code: Path, py: str, record, base: Path, aug: Path, out: Path, n: int, n_aug: int) -> None:
    """The streamed stages of issue 12 item 2 (module docstring) on the augmented set ``aug``."""
    if "check-stream" in args.stages:
        r = timed([py, "-c", CHECK_STREAM, str(base), str(aug)], code, args.timeout)
        record("check-stream", n_aug, r, f"prior fit {r.get('fit_s', 0):.1f} s (streamed), {r.get('plausible', 0)} plausible"
               if r.get("ok") else "")
    scores = out / f"scores-self-{n:.0e}.npz"
    if "score-self" in args.stages:
        r = timed([py, "-m", "posecurator", "score", str(aug), "--scorer", "density", "-o", str(scores), "-q"],
                  code, args.timeout)
        record("score-self", n_aug, r, "density fitted on the set itself (seeded 50k sample), streamed, incl. fit")
    if "export-plausible" in args.stages:
        dest = out / f"plausible-{n:.0e}.pcs"
        r = timed([py, "-m", "posecurator", "export", str(aug), "--format", "pcs", "-o", str(dest), "--plausible-only",
                   "--prior-from", str(base), "-q"], code, args.timeout)
        record("export-plausible", n_aug, r, "prior fit + check + write, streamed")
        shutil.rmtree(dest, ignore_errors=True)
    if "select-stream" in args.stages and scores.exists():
        dest = out / f"kept-{n:.0e}.pcs"
        r = timed([py, "-m", "posecurator", "export", str(aug), "--format", "pcs", "-o", str(dest), "--scores", str(scores),
                   "--keep-lowest", "0.8", "-q"], code, args.timeout)
        record("select-stream", n_aug, r, "keep the lowest 80 % of score-self's scores, rows copied block by block")
        shutil.rmtree(dest, ignore_errors=True)
    if "export-vp3d" in args.stages and n <= args.cli_max:
        dest = out / f"vp3d-{n:.0e}.npz"
        r = timed([py, "-m", "posecurator", "export", str(aug), "--format", "videopose3d", "-o", str(dest), "-q"],
                  code, args.timeout)
        record("export-vp3d", n_aug, r, "in memory (one npz holds every pose)")
        dest.unlink(missing_ok=True)


def engine_args(args, *, shards: bool = False) -> list[str]:
    """The engine (and shard) options of ``posecurator augment``; none by default, so that versions
    without them can be measured."""
    out = [] if args.engine == "local" else ["--engine", args.engine]
    if args.workers:
        out += ["--workers", str(args.workers)]
    if shards and args.shard_size is not None:
        out += ["--shard-size", str(args.shard_size)]
    return out


def engine_note(args) -> str:
    note = "" if args.engine == "local" else f"; {args.engine} x{args.workers or 'all'}"
    return note + ("" if args.shard_size is None else f"; shards {args.shard_size}")


def _count(path: Path) -> int:
    return int(json.loads((Path(path) / "posecurator.json").read_text())["n"])


def header() -> str:
    return f"{'stage':<16} {'N':>10} {'wall s':>8} {'poses/s':>10} {'peak MiB':>9} {'MiB/1M':>8}  note"


def format_row(r: dict) -> str:
    n = r.get("n")
    if not r.get("ok"):
        why = r.get("why")
        why = why[-1] if isinstance(why, list) else why
        return f"{r['stage']:<16} {n or 0:>10} {'-':>8} {'-':>10} {'-':>9} {'-':>8}  {why}"
    pps = r.get("poses_per_s")
    per_m = r["peak_mib"] / (n / 1e6) if n and r.get("peak_mib") else None
    return (f"{r['stage']:<16} {n:>10} {r['wall_s']:>8.1f} {pps or 0:>10.0f} {r['peak_mib'] or 0:>9.0f} "
            f"{per_m or 0:>8.0f}  {r.get('note', '')}")


def compare(labels: list[str], out: Path) -> None:
    docs = [json.loads((out / lab / "results.json").read_text()) for lab in labels]
    keys = []
    for d in docs:
        for r in d["rows"]:
            if (r["stage"], r["n"]) not in keys and r["n"]:
                keys.append((r["stage"], r["n"]))
    order = ["import", "augment", "load", "score-stream", "score-cli", "check-stream", "score-self", "export-plausible",
             "select-stream", "export-vp3d"]
    keys.sort(key=lambda k: (k[1] if k[0] != "import" else 0, order.index(k[0]) if k[0] in order else 99))
    cols = "".join(f" | {lab + ' poses/s':>16} | {lab + ' peak MiB':>15}" for lab in labels)
    print(f"{'stage':<13} | {'N':>9}{cols}")
    for stage, n in keys:
        line = f"{stage:<13} | {n:>9}"
        for d in docs:
            r = next((x for x in d["rows"] if x["stage"] == stage and x["n"] == n), None)
            if r is None or not r.get("ok"):
                why = "n/a" if r is None else "skipped" if "skipped" in str(r.get("why")) else "failed"
                line += f" | {why:>16} | {why:>15}"
            else:
                line += f" | {r.get('poses_per_s') or 0:>16.0f} | {r['peak_mib']:>15.0f}"
        print(line)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--code", default=str(REPO), help="root of the posecurator code to measure (default this checkout)")
    p.add_argument("--label", default="current")
    p.add_argument("--data", default=str(DATA))
    p.add_argument("--out", default=str(OUT))
    p.add_argument("--sizes", default="1e5,1e6,1e7", help="comma-separated set sizes (default 1e5,1e6,1e7)")
    p.add_argument("--stages", default="import,augment,load,score-stream,score-cli")
    p.add_argument("--chunk", type=int, default=262_144, help="rows per block of the streaming scorer")
    p.add_argument("--cli-max", type=float, default=1e6, help="largest N for the in-memory `posecurator score` row")
    p.add_argument("--max-gb", type=float, default=20.0, help="skip a size whose estimated peak is above this")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    p.add_argument("--keep", action="store_true", help="keep the 10^7 set (2.5 GB) after measuring it")
    p.add_argument("--engine", default="local", choices=["local", "ray"], help="engine of augment and score-stream")
    p.add_argument("--workers", type=int, default=None, help="--engine ray: workers (a local cluster of that many CPUs)")
    p.add_argument("--shard-size", type=int, default=None, help="posecurator augment --shard-size (default: not passed)")
    p.add_argument("--compare", nargs="+", metavar="LABEL", help="print the saved tables of LABELs side by side")
    args = p.parse_args(argv)
    if args.compare:
        compare(args.compare, Path(args.out))
        return
    args.sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    args.stages = set(args.stages.split(","))
    run(args)


if __name__ == "__main__":
    main()
