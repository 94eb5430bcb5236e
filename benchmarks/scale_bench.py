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

Issue 12 item 4 (the scale benchmark table):

* ``gen+score``: in one process (and one engine), the prior and density fits on the Bandai poses,
  then ``augment.streaming.evolve_to_store`` of N new poses and ``scoring.stream.score_dataset``
  over them, both on ``--engine``; poses/s counts generation + scoring (fits and the engine's start
  reported apart), with the driver's own CPU seconds (the serial part; ``getrusage``);
* ``add``: ``posecurator add`` end to end on a ``--add-size`` (default 1.5 million) pose set evolved
  from Bandai (row ``add-input``; the stand-in for Human3.6M), its stage times from summary.json,
  poses/s over the run without lifter training (stated apart); ``stage_peak_mib`` the process
  tree's peak within each of its stages (from the times their stage records were written);
* ``add-distill``: ADD's pipeline without its lifters on the stored N-pose set (``augment`` first,
  in the same command): the context built from the store (split, prior and density fitted chunk by
  chunk), scale distillation streamed to disk with the lifter-error term of ``--reference-lifter``,
  and ``distilled.pcs`` written chunk by chunk; no validation part (nothing trains).

Peak memory: ``peak_mib`` is ``time -v``'s largest single process; ``tree_peak_mib`` the whole
process tree's PSS sampled every 0.25 s (Ray's raylet, GCS and workers included; tables show the
larger). ``--max-tree-gib`` stops a measurement above it. On a shared machine ``--group-nice -10``
(root) gives each measurement's scheduler autogroup the weight of a nice -10 process: with
kernel.sched_autogroup_enabled=1 every session is an equal whatever its nice, so a 2-worker Ray run
next to any other busy session gets one core, not two.

Tables: ``--markdown LABEL...`` (one markdown table), ``--compare LABEL...`` (plain text);
``--project LOCAL RAY1 RAY2`` puts 10^8 poses (``--target``) and a 16-node cluster (``--nodes``,
``--node-cores``, ``--fs-gbs``) on paper from the measured per-pose costs, assumptions printed::

    python benchmarks/scale_bench.py --code /tmp/snap --label L --group-nice -10 --sizes 1e5,1e6,1e7 \
        --stages import,augment,gen+score,load,score-stream,score-cli,check-stream,score-self,export-plausible,select-stream,export-vp3d
    unshare -n sh -c 'ip link set lo up && python benchmarks/scale_bench.py --code /tmp/snap --label R2 --group-nice -10 \
        --stages gen+score --sizes 1e6,1e7 --engine ray --workers 2'
    python benchmarks/scale_bench.py --code /tmp/snap --label A --stages add --sizes "" --timeout 3600 --max-tree-gib 9
    python benchmarks/scale_bench.py --code /tmp/snap --label D --stages augment,add-distill --sizes 1e6,1e7 \
        --reference-lifter bench-out/scale/A/add-1.5e+06/reference --timeout 3600
    python benchmarks/scale_bench.py --markdown L R1 R2 && python benchmarks/scale_bench.py --project L R1 R2

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

GEN_SCORE = r"""
import dataclasses, json, resource, sys, time
from posecurator.augment import JointAnglePrior
from posecurator.augment.evolution import DEFAULT_SHARD_SIZE
from posecurator.augment.streaming import evolve_to_store
from posecurator.engine import make_engine
from posecurator.pipelines.add import ADDConfig
from posecurator.poseset import PoseSet
from posecurator.scoring.density import DensityScorer
from posecurator.scoring.stream import score_dataset
base, out, scores, n, chunk, engine_name, workers, shard = sys.argv[1:9]
n, chunk, workers, shard = int(n), int(chunk), int(workers), int(shard)

def cpu():  # this (driver) process's CPU seconds: the serial part, whatever the workers do
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

ps = PoseSet.load(base)
config = ADDConfig().replace(seed=0)
evolution = dataclasses.replace(config.evolution_config(multiple=1 + n / len(ps)), shard_size=shard or DEFAULT_SHARD_SIZE)
t = {}
t0 = time.perf_counter(); prior = JointAnglePrior(**config.prior).fit(ps); t["prior_fit_s"] = time.perf_counter() - t0
t0 = time.perf_counter(); scorer = DensityScorer(seed=0).fit(ps); t["density_fit_s"] = time.perf_counter() - t0
t0 = time.perf_counter()
engine = make_engine(engine_name, workers=workers or None) if engine_name != "local" else None
t["engine_start_s"] = time.perf_counter() - t0
kw = {} if engine is None else {"engine": engine}
c0, t0 = cpu(), time.perf_counter()
written, made, stats = evolve_to_store(ps, out, prior=prior, config=evolution, include_original=False, **kw)
t["gen_s"], t["gen_driver_cpu_s"] = time.perf_counter() - t0, cpu() - c0
c0, t0 = cpu(), time.perf_counter()
ids, sc = score_dataset(scorer, out, chunk_size=chunk, columns=["joints3d"], output=scores, **kw)
t["score_s"], t["score_driver_cpu_s"] = time.perf_counter() - t0, cpu() - c0
if engine is not None:
    engine.close()
print("RESULT", json.dumps({"n": int(written), "made": int(sum(s.made for s in stats)), "generations": len(stats), **t,
                            "gen_score_s": t["gen_s"] + t["score_s"]}))
"""

ADD_DISTILL = r"""
import json, sys, time
from pathlib import Path
from posecurator.pipelines.add import ADDConfig, ADDContext, _distill, load_distilled, write_distilled_set
from posecurator.poseset import PoseStore
data, ref_dir, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
config = ADDConfig(lifter={"val_fraction": 0.0}).replace(seed=0)  # no validation part: nothing trains here
t = {}
t0 = time.perf_counter(); ctx = ADDContext.build(PoseStore(data), config); t["fits_s"] = time.perf_counter() - t0
folder = out / "distill"
folder.mkdir(parents=True, exist_ok=True)
t0 = time.perf_counter()
res = _distill(ctx, ref_dir, {"multiplier": config.multiplier, "keep": config.keep, "w": config.w}, folder, progress=False)
t["distill_s"] = time.perf_counter() - t0
t["generation_s"] = sum(s["generation_seconds"] for s in res["steps"])
t["scoring_s"] = sum(s["scoring_seconds"] for s in res["steps"])
distilled, _ = load_distilled(folder, res, ctx)
t0 = time.perf_counter(); write_distilled_set(out / "distilled.pcs", ctx.original, distilled, attrs={}); t["dataset_s"] = time.perf_counter() - t0
print("RESULT", json.dumps({"n": len(ctx.original), "kept": res["n_augmented"], "dropped": res["n_dropped"],
                            "generations": len(res["steps"]), **t, "add_distill_s": sum(t.values()) - t["generation_s"] - t["scoring_s"]}))
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


def _tree_pss_mib(root: int, cpu: dict | None = None) -> float:
    """Proportional set size (MiB) of ``root`` and every descendant (Ray's raylet, GCS and workers
    included): what the whole process tree holds, shared pages counted once. ``cpu``: filled with
    each process's CPU seconds so far (user + system), by pid."""
    parents: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(d))
    todo, total = [root], 0
    while todo:
        pid = todo.pop()
        todo += parents.get(pid, [])
        if cpu is not None:
            try:
                st = Path(f"/proc/{pid}/stat").read_text()
                f = st[st.rindex(")") + 2:].split()
                cpu[pid] = (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
            except (OSError, ValueError, IndexError):
                pass
        try:
            m = re.search(r"^Pss:\s+(\d+) kB", Path(f"/proc/{pid}/smaps_rollup").read_text(), re.MULTILINE)
            total += int(m.group(1)) if m else 0
        except OSError:
            pass
    return total / 1024


MAX_TREE_MIB = [None]  # --max-tree-gib: a measurement whose process tree holds more is stopped
GROUP_NICE = [None]  # --group-nice: the nice value of each measurement's scheduler autogroup


def _set_group_nice(pid: int) -> None:
    """Each measurement runs in its own session, hence (kernel.sched_autogroup_enabled=1) its own
    scheduler autogroup, which competes with every other session's group as an equal whatever the
    processes' nice values: a 2-worker Ray run next to one busy session gets one core, not two.
    ``--group-nice -10`` weights the measurement's group as a nice -10 process (others untouched)."""
    if GROUP_NICE[0] is None:
        return
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(GROUP_NICE[0]))
    except OSError as e:
        print(f"(cannot set the autogroup's nice: {e})", file=sys.stderr)


def timed(cmd: list[str], code: Path, timeout: float, *, trace: list | None = None) -> dict:
    """Run ``cmd`` under /usr/bin/time -v; wall seconds, peak RSS (MiB; the largest single process,
    as ``time -v`` reports it), the peak of the whole process tree's PSS (``tree_peak_mib``, sampled
    every 0.25 s: a Ray engine's raylet and workers included), and a RESULT json line if printed.
    ``trace``: a list that gets ``(epoch seconds, tree MiB)`` of every sample."""
    import threading

    env = {**os.environ, **THREAD_ENV, "PYTHONPATH": str(code)}
    t0 = time.perf_counter()
    p = subprocess.Popen(["/usr/bin/time", "-v", *cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=str(code), start_new_session=True)
    _set_group_nice(p.pid)
    peak = [0.0]
    cpu: dict = {}  # pid -> CPU seconds at its last sample (a process's last < 0.25 s is missed)
    over = []
    done = threading.Event()

    def sample():
        while not done.wait(0.25):
            now = _tree_pss_mib(p.pid, cpu)
            peak[0] = max(peak[0], now)
            if trace is not None:
                trace.append((time.time(), now))
            if MAX_TREE_MIB[0] and now > MAX_TREE_MIB[0] and not over:
                over.append(f"stopped: process tree at {now:.0f} MiB > {MAX_TREE_MIB[0]:.0f} MiB after "
                            f"{time.perf_counter() - t0:.0f} s")
                os.killpg(p.pid, 9)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        stdout, stderr = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        p.communicate()
        done.set()
        return {"ok": False, "why": f"timed out after {timeout:.0f} s", "tree_peak_mib": peak[0]}
    finally:
        done.set()
        th.join()
    wall = time.perf_counter() - t0
    if over:
        return {"ok": False, "why": over[0], "wall_s": wall, "tree_peak_mib": peak[0], "stdout_tail": stdout[-3000:]}
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    out = {"ok": p.returncode == 0, "wall_s": wall, "peak_mib": int(rss.group(1)) / 1024 if rss else None,
           "tree_peak_mib": peak[0] or None, "tree_cpu_s": sum(cpu.values()), "group_nice": GROUP_NICE[0],
           "loadavg_after": os.getloadavg()[0]}
    if p.returncode != 0:
        out["why"] = (stderr.strip().splitlines() or ["?"])[-25:]
    for line in stdout.splitlines():
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
            secs = r.get("add_distill_s", r.get("gen_score_s", r.get("without_training_s", r.get("score_s", r.get("load_s", r["wall_s"])))))
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
        if "gen+score" in args.stages:
            gs = out / f"gs-{n:.0e}.pcs"
            r = timed([py, "-c", GEN_SCORE, str(base), str(gs), str(out / f"scores-gs-{n:.0e}.npz"), str(n), str(args.chunk),
                       args.engine, str(args.workers or 0), str(args.shard_size or 0)], code, args.timeout)
            if r.get("ok"):
                r["poses_per_s_gen"] = r["n"] / r["gen_s"]
                r["poses_per_s_score"] = r["n"] / r["score_s"]
            note = (f"gen {r.get('gen_s', 0):.1f} s + score {r.get('score_s', 0):.1f} s; driver CPU "
                    f"{r.get('gen_driver_cpu_s', 0) + r.get('score_driver_cpu_s', 0):.1f} s; fits "
                    f"{r.get('prior_fit_s', 0) + r.get('density_fit_s', 0):.1f} s, engine start {r.get('engine_start_s', 0):.1f} s"
                    f"{engine_note(args)}") if r.get("ok") else ""
            record("gen+score", r.get("n", n), r, note)
            shutil.rmtree(gs, ignore_errors=True)
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
    if "add" in args.stages:
        run_add_stage(args, code, py, record, base, out, n0)
    return rows


def run_add_stage(args, code: Path, py: str, record, base: Path, out: Path, n0: int) -> None:
    """Stage ``add``: ``posecurator add`` end to end on a ``--add-size``-pose training set evolved
    from Bandai (the stand-in for Human3.6M's 1.5 million; made first, as row ``add-input``, and
    kept for reruns); its stage times from the run's summary.json, lifter training apart."""
    size = int(args.add_size)
    standin = out / f"standin-{size:.1e}.pcs"
    if not standin.exists():
        mult = size / n0
        r = timed([py, "-m", "posecurator", "augment", str(base), "-o", str(standin), "--multiplier", repr(mult),
                   "--seed", "0", "-q", *engine_args(args, shards=True)], code, args.timeout)
        record("add-input", _count(standin) if r["ok"] else size, r, f"Bandai {n0} + evolved, x{mult:.4g}{engine_note(args)}")
        if not r["ok"]:
            return
    n = _count(standin)
    run_dir = out / f"add-{size:.1e}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run, no stage cache
    cmd = [py, "-m", "posecurator", "add", str(standin), "-o", str(run_dir), "-q", *engine_args(args, shards=True)]
    if args.add_config:
        cmd += ["--config", str(Path(args.add_config).resolve())]
    trace: list = []
    r = timed(cmd, code, args.timeout, trace=trace)
    r["stage_peak_mib"] = stage_peaks(run_dir, trace)
    summ = run_dir / "summary.json"
    note = ""
    if summ.exists():
        doc = json.loads(summ.read_text())
        times = doc["times"]
        train = times.get("reference_training", 0) + times.get("final_training", 0)
        r["add_times"] = times
        r["add_sizes"] = doc["sizes"]
        r["training_s"] = train
        r["without_training_s"] = r["wall_s"] - train
        note = (f"wall {r['wall_s'] / 60:.1f} min, lifter training {train / 60:.1f} min, rest {r['without_training_s'] / 60:.1f} "
                f"min; " + ", ".join(f"{k} {v:.0f} s" for k, v in times.items() if isinstance(v, (int, float))))
    record("add", n, r, note)  # poses/s: over the run without lifter training


def stage_peaks(run_dir: Path, trace: list) -> dict:
    """Peak tree MiB of each stage of an ADD run, from a memory trace and the times its stage
    records were written (``stages/NAME.json``: the end of stage NAME); "reference" includes
    loading the set and the fits before it."""
    ends = sorted((f.stat().st_mtime, f.stem) for f in (run_dir / "stages").glob("*.json"))
    out, start = {}, 0.0
    for end, name in ends:
        inside = [m for t, m in trace if start <= t <= end]
        out[name] = round(max(inside), 1) if inside else None
        start = end
    rest = [m for t, m in trace if t > start]
    if rest:
        out["after"] = round(max(rest), 1)
    return out


def run_stream_stages(args, code: Path, py: str, record, base: Path, aug: Path, out: Path, n: int, n_aug: int) -> None:
    """The streamed stages of issue 12 item 2 (module docstring) on the augmented set ``aug``."""
    if "add-distill" in args.stages:
        if not args.reference_lifter:
            raise SystemExit("--stages add-distill needs --reference-lifter RUN_DIR (a lifter trained on h36m17 poses)")
        work = out / f"add-distill-{n:.0e}"
        shutil.rmtree(work, ignore_errors=True)
        r = timed([py, "-c", ADD_DISTILL, str(aug), str(Path(args.reference_lifter).resolve()), str(work)], code, args.timeout)
        note = (f"fits {r['fits_s']:.0f} s, generation {r['generation_s']:.0f} s, scoring + writing {r['scoring_s']:.0f} s, "
                f"distilled.pcs {r['dataset_s']:.0f} s; kept {r['kept']}, dropped {r['dropped']} in {r['generations']} "
                f"generations" if r.get("ok") else "")
        record("add-distill", n_aug, r, note)
        shutil.rmtree(work, ignore_errors=True)
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


def _stage_keys(docs: list[dict]) -> list[tuple[str, int]]:
    """The distinct (stage, N) rows of saved results, in first-seen order."""
    keys = []
    for d in docs:
        for r in d["rows"]:
            if (r["stage"], r["n"]) not in keys and r["n"]:
                keys.append((r["stage"], r["n"]))
    return keys


def _stage_rank(stage: str) -> int:
    return STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER)


def compare(labels: list[str], out: Path) -> None:
    docs = [json.loads((out / lab / "results.json").read_text()) for lab in labels]
    keys = _stage_keys(docs)
    keys.sort(key=lambda k: (k[1] if k[0] != "import" else 0, _stage_rank(k[0])))
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


STAGE_ORDER = ["import", "augment", "gen+score", "load", "score-stream", "score-cli", "check-stream", "score-self",
               "export-plausible", "select-stream", "export-vp3d", "add-distill", "add-input", "add"]


def _peak(r: dict) -> float | None:
    """Peak memory of a row (MiB): the larger of the biggest process's RSS and the whole tree's PSS."""
    vals = [v for v in (r.get("peak_mib"), r.get("tree_peak_mib")) if v]
    return max(vals) if vals else None


def markdown(labels: list[str], out: Path) -> None:
    """One markdown table over LABELs: per (stage, N) each label's poses/s and peak memory."""
    docs = [json.loads((out / lab / "results.json").read_text()) for lab in labels]
    keys = _stage_keys(docs)
    keys.sort(key=lambda k: (_stage_rank(k[0]), k[1]))
    notes = len(labels) == 1  # one label: its notes too
    print("| stage | N | " + " | ".join(f"{lab} poses/s | {lab} peak MiB | {lab} wall s" for lab in labels)
          + (" | note |" if notes else " |"))
    print("|---|---:|" + "---:|---:|---:|" * len(labels) + ("---|" if notes else ""))
    for stage, n in keys:
        cells = []
        for d in docs:
            r = next((x for x in d["rows"] if x["stage"] == stage and x["n"] == n), None)
            if r is None:
                cells += ["", "", ""]
            elif not r.get("ok"):
                why = r.get("why")
                why = (why[-1] if isinstance(why, list) else str(why))[:60]
                cells += [f"failed: {why}", "", ""]
            else:
                cells += [f"{r.get('poses_per_s') or 0:,.0f}", f"{_peak(r) or 0:,.0f}", f"{r['wall_s']:.1f}"]
        if notes:
            r = next((x for x in docs[0]["rows"] if x["stage"] == stage and x["n"] == n), {})
            cells.append(str(r.get("note", "")).replace("|", "/"))
        print(f"| {stage} | {n:,} | " + " | ".join(cells) + " |")


def _rows(out: Path, label: str) -> list[dict]:
    f = out / label / "results.json"
    return json.loads(f.read_text())["rows"] if f.exists() else []


def _linear(rows: list[dict], stage: str, secs_key=None) -> dict | None:
    """Fixed + per-pose cost of ``stage`` from its two largest measured sizes (wall seconds and
    peak memory, each as a + b N)."""
    ok = sorted((r for r in rows if r["stage"] == stage and r.get("ok") and r.get("n")), key=lambda r: r["n"])
    if not ok:
        return None
    hi = ok[-1]
    lo = ok[-2] if len(ok) > 1 else None
    secs = (lambda r: r[secs_key] if secs_key and r.get(secs_key) is not None else r["wall_s"])
    if lo is None or hi["n"] == lo["n"]:
        b, a = secs(hi) / hi["n"], 0.0
        mb, ma = 0.0, _peak(hi)
    else:
        b = (secs(hi) - secs(lo)) / (hi["n"] - lo["n"])
        a = max(0.0, secs(hi) - b * hi["n"])
        mb = max(0.0, (_peak(hi) - _peak(lo)) / (hi["n"] - lo["n"]))
        ma = _peak(hi) - mb * hi["n"]
    return {"a": a, "b": b, "ma": ma, "mb": mb, "n_max": hi["n"], "n_min": lo["n"] if lo else hi["n"]}


def _set_bytes_per_pose(out: Path, labels: list[str]) -> float | None:
    for lab in labels:
        for f in sorted((out / lab).glob("aug-*.pcs"), key=lambda f: -_count(f)):
            size = sum(x.stat().st_size for x in f.rglob("*") if x.is_file())
            return size / _count(f)
    return None


def projection(args) -> None:
    """On paper: ``--target`` poses on this machine and on a ``--nodes``-node cluster, from the
    measured per-pose costs (see the printed assumptions)."""
    out = Path(args.out)
    local, ray1, ray2 = ([r for lab in labs.split(",") for r in _rows(out, lab)] for labs in args.project)
    N = float(args.target)
    bpp = _set_bytes_per_pose(out, [lab for labs in args.project for lab in labs.split(",")]) or 256.0
    print(f"# Projection to N = {N:.0e} poses (from {', '.join(args.project)})\n")
    print("Assumptions: every stage costs a + b N (fixed + per pose; a, b from its two largest measured sizes, wall "
          "seconds on this 2-core machine, one core per local process); peak memory likewise (ma + mb N); a node's "
          f"throughput = this machine's per-core figure x {args.node_cores} cores; the shared file system moves "
          f"{args.fs_gbs:g} GB/s in all; a stored set takes {bpp:.0f} B/pose on disk (measured); the engine's driver "
          "(one process: it orders the shards, names their chunks and collects every score; the workers write the "
          "children) is serial, its CPU seconds per pose measured on the Ray runs.\n")
    print("| stage | per pose (us) | fixed s | peak MiB + B/pose | this machine, 1 core: time | peak GiB at N |")
    print("|---|---:|---:|---:|---:|---:|")
    single = {}
    for stage in STAGE_ORDER:
        key = {"gen+score": "gen_score_s", "score-stream": "score_s", "check-stream": "score_s"}.get(stage)
        f = _linear(local, stage, key)
        if f is None or stage in ("import", "add", "add-input", "score-cli", "export-vp3d", "load"):
            continue
        t = f["a"] + f["b"] * N
        single[stage] = (f, t)
        print(f"| {stage} | {f['b'] * 1e6:.2f} | {f['a']:.1f} | {f['ma']:.0f} + {f['mb'] * 2**20:.1f} | "
              f"{t / 3600:.2f} h | {(f['ma'] + f['mb'] * N) / 1024:.2f} |")
    gs = [r for r in ray1 if r["stage"] == "gen+score" and r.get("ok")]
    gs2 = [r for r in ray2 if r["stage"] == "gen+score" and r.get("ok")]
    if not gs or "gen+score" not in single:
        print("\n(no gen+score rows for the cluster projection)")
        return
    r1 = max(gs, key=lambda r: r["n"])
    drv = (r1["gen_driver_cpu_s"] + r1["score_driver_cpu_s"]) / r1["n"]
    per_core = 1 / single["gen+score"][0]["b"]
    eff = None
    if gs2:
        r2 = next((r for r in gs2 if r["n"] == r1["n"]), max(gs2, key=lambda r: r["n"]))
        eff = (r2["n"] / r2["gen_score_s"]) / (2 * r1["n"] / r1["gen_score_s"])  # speed-up of 2 workers / 2
    # fixed: the prior and density fits (on the 417k Bandai reference) and the engine's start, once
    fixed = r1.get("prior_fit_s", 0) + r1.get("density_fit_s", 0) + r1.get("engine_start_s", 0)
    # bytes moved per pose: the set written once and read once by the scorer, the population file
    # (17 x 3 float32 + an int64 root) written and read, a scratch shard file (the same + parent,
    # partner, code) written and read
    io = 2 * bpp + 2 * 212 + 2 * 229
    caps = {"compute": args.nodes * args.node_cores * per_core, "driver": 1 / drv if drv else float("inf"),
            "file system": args.fs_gbs * 1e9 / io}
    bound = min(caps, key=caps.get)
    t = fixed + N / caps[bound]
    print(f"\nGeneration + scoring of {N:.0e} poses on {args.nodes} nodes x {args.node_cores} cores: per-core "
          f"{per_core:,.0f} poses/s (local engine, one process) -> compute {caps['compute']:,.0f} poses/s; the driver's "
          f"serial part {drv * 1e6:.2f} us/pose (Ray 1 worker, N = {r1['n']:,}) -> at most {caps['driver']:,.0f} poses/s; "
          f"the file system at {args.fs_gbs:g} GB/s and {io:.0f} B/pose -> {caps['file system']:,.0f} poses/s. "
          f"Bound by the {bound}: {t / 60:.1f} min (fixed {fixed:.0f} s)"
          + (f"; 2-worker parallel efficiency measured here {eff:.2f}" if eff else "") + ".")
    if gs2:
        tp2 = r2["n"] / r2["gen_score_s"]
        print(f"This machine with Ray x2 ({tp2:,.0f} poses/s measured at N = {r2['n']:,}): {(fixed + N / tp2) / 60:.1f} min "
              f"for generation + scoring of {N:.0e}; one core, local engine: {(fixed + N * single['gen+score'][0]['b']) / 60:.1f} min.")
    if bound == "driver":
        t_c = fixed + N / min(caps["compute"], caps["file system"])
        print(f"Without the serial driver it would be {t_c / 60:.1f} min.")
    rest = [st for st in single if st not in ("gen+score", "augment", "score-stream")]
    if not rest:
        print(f"Disk: the set at {N:.0e} poses takes {N * bpp / 1e9:.0f} GB.")
        return
    tot = sum(single[st][1] for st in rest)
    print(f"Stages not on the engine ({', '.join(rest)}) stay one process each: {tot / 3600:.2f} h on one core "
          f"at {N:.0e} (run side by side on separate nodes: {max(single[st][1] for st in rest) / 3600:.2f} h).")
    print(f"Disk: the set at {N:.0e} poses takes {N * bpp / 1e9:.0f} GB.")


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
    p.add_argument("--reference-lifter", default=None,
                   help="--stages add-distill: the reference lifter's run folder (e.g. the add stage's OUT/reference)")
    p.add_argument("--compare", nargs="+", metavar="LABEL", help="print the saved tables of LABELs side by side")
    p.add_argument("--markdown", nargs="+", metavar="LABEL", help="print one markdown table over LABELs")
    p.add_argument("--project", nargs=3, metavar=("LOCAL", "RAY1", "RAY2"),
                   help="on paper: --target poses here and on a cluster, from these labels' rows (LOCAL may be A,B: rows of both)")
    p.add_argument("--target", type=float, default=1e8, help="--project: poses (default 1e8)")
    p.add_argument("--nodes", type=int, default=16, help="--project: nodes (default 16)")
    p.add_argument("--node-cores", type=int, default=32, help="--project: cores per node (default 32)")
    p.add_argument("--fs-gbs", type=float, default=1.0, help="--project: shared file system, GB/s in all (default 1)")
    p.add_argument("--add-size", type=float, default=1.5e6,
                   help="stage add: poses of the stand-in training set evolved from Bandai (default 1.5e6)")
    p.add_argument("--add-config", default=None, help="stage add: JSON file of ADDConfig fields (default: defaults)")
    p.add_argument("--group-nice", type=int, default=None,
                   help="nice value of each measurement's scheduler autogroup (e.g. -10 on a shared machine; root)")
    p.add_argument("--max-tree-gib", type=float, default=None, help="stop a measurement whose process tree holds more")
    args = p.parse_args(argv)
    if args.compare:
        compare(args.compare, Path(args.out))
        return
    if args.markdown:
        markdown(args.markdown, Path(args.out))
        return
    if args.project:
        projection(args)
        return
    MAX_TREE_MIB[0] = args.max_tree_gib * 1024 if args.max_tree_gib else None
    GROUP_NICE[0] = args.group_nice
    args.sizes = [int(float(s)) for s in args.sizes.split(",") if s]
    args.stages = set(args.stages.split(","))
    run(args)


if __name__ == "__main__":
    main()
