"""CLI commands of AugData Distillation: `add`, `augment`, `score` (registered by cli.main)."""

from __future__ import annotations

import sys
from pathlib import Path

from posecurator.cli.common import add_val_cut_argument, load_add_config
from posecurator.errors import DataError, PoseCuratorError

SCORER_NAMES = ("density", "lifter_error", "vae_recon", "target_coverage", "target_novelty")
TARGET_SCORERS = ("target_coverage", "target_novelty")


def register(sub, add_parser, commands: dict) -> None:
    """Add the ADD subcommands to the ``posecurator`` parser (``add_parser(sub, name, help, examples)``)."""
    s = add_parser(sub, "add", "AugData Distillation: augment, distil (quality + scale) and retrain the lifter.",
                   "  posecurator add hdm05_train.pcs -o runs/add\n"
                   "  posecurator add hdm05_train.pcs -o runs/add --multiplier 1.6 --keep 0.8 --seed 1\n"
                   "  posecurator add hdm05_train.pcs -o runs/add-bayes --search bayes --n-trials 10\n"
                   "  posecurator add hdm05_train.pcs -o runs/add-shift --search bayes --val-cut neighbourhood\n"
                   "  posecurator add ../shared/data/hdm05 -o runs/add --config add.json   # add.json: ADDConfig fields\n"
                   "  posecurator add big.pcs -o runs/add-ray --shard-size 65536 --search bayes --search-batch 2 --engine ray --workers 2\n"
                   "  posecurator evaluate runs/add test.pcs --json                        # the final lifter\n"
                   "  posecurator add bandai.pcs -o runs/add-target --target my_2d.json    # keep the children your 2D shows\n"
                   "  posecurator add ../shared/data/bandai -o runs/add-uda --target bandai-to-hdm05-uda --target-score coverage\n"
                   "writes RUN_DIR/distilled.pcs, lifter/ (also RUN_DIR itself is evaluable), reference/,\n"
                   "summary.json, add_config.json and plots/*.png. A dataset folder (X.pcs) stays on disk (read\n"
                   "chunk by chunk: 0.9 GB for 1.5 M poses); anything else is imported into memory, so for large\n"
                   "data run `posecurator import DATA -o X.pcs` first\n")
    s.add_argument("dataset", metavar="TRAIN_DATASET", help="training dataset folder, read lazily (or any importable "
                   "file/folder, imported into memory)")
    s.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="output folder")
    s.add_argument("--config", help="JSON file of ADDConfig fields (options below override it)")
    s.add_argument("--multiplier", type=float, help="total training size as a multiple of the original (default 1.6)")
    s.add_argument("--keep", type=float, help="fraction kept by quality distillation per generation (default 0.8)")
    s.add_argument("--w", type=float, help="weight of the diversity term 1 - prob (default 0.5)")
    s.add_argument("--target", metavar="TARGET_2D", help="unlabeled 2D of the domain the lifter is for (a 2D file or "
                   "folder, e.g. COCO keypoints, or a split with an unlabeled target): quality distillation's diversity "
                   "term becomes a target-aware score (--target-score), so it keeps the children the target needs")
    s.add_argument("--target-score", choices=["novelty", "coverage"], help="with --target: target_novelty (default: "
                   "poses the target shows and the source lacks) or target_coverage (poses nearest the target's 2D)")
    s.add_argument("--seed", type=int, help="seed of everything (default 0)")
    s.add_argument("--search", choices=["none", "multiscale", "bayes"], help="search of the multiplier (multiscale) "
                   "or of keep, multiplier and w (bayes, Optuna) on a validation split (default none)")
    s.add_argument("--n-trials", type=int, help="Optuna trials for --search bayes (default 8)")
    s.add_argument("--search-batch", type=int, metavar="B", help="--search bayes: trials asked at once and run side by "
                   "side on the engine (default 1 = one after the other; B changes the search, the engine never does)")
    s.add_argument("--shard-size", type=int, metavar="N", help="children per independently seeded shard of a generation "
                   "(default: the config's evolution.shard_size, else one random stream; --engine ray needs shards; "
                   "0 = one random stream)")
    s.add_argument("--retrain", choices=["finetune", "scratch"], help="final lifter: fine-tune the reference (default) or from scratch")
    s.add_argument("--preset", help="lifter training preset: fast | default | large (default fast)")
    s.add_argument("--noise-px", type=float, help="2D noise (px) while training and scoring (default 0)")
    add_val_cut_argument(s, judged="the searches and the best epoch")
    _add_engine_arguments(s, what="the shards of each generation and the --search bayes trials")
    commands["add"] = cmd_add

    s = add_parser(sub, "augment", "Evolutionary augmentation only (TAG-Net operators + the learned plausibility prior).",
                   "  posecurator augment hdm05.pcs -o hdm05_aug.pcs                  # 5 x the original\n"
                   "  posecurator augment hdm05.pcs -o hdm05_aug.pcs --multiplier 2 --seed 3\n"
                   "  posecurator augment hdm05.pcs -o new_only.pcs --only-new --config add.json\n"
                   "  posecurator augment bandai.pcs -o big.pcs --multiplier 25 --engine ray --workers 2\n"
                   "writes the dataset (original + generated poses with lineage) and OUT/augment_stats.json,\n"
                   "shard by shard: memory does not grow with the output's size\n")
    s.add_argument("dataset", help="dataset folder (or any importable file/folder) with 3D poses")
    s.add_argument("-o", "--output", required=True, help="dataset folder to write")
    s.add_argument("--multiplier", type=float, default=None, help="original + generated = T x original (default 5)")
    s.add_argument("--seed", type=int, default=None, help="seed (default 0)")
    s.add_argument("--config", help="JSON file of ADDConfig fields (uses evolution, prior, full_multiple, seed)")
    s.add_argument("--only-new", action="store_true", help="write only the generated poses (lineage then points outside the set)")
    s.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="children per independently seeded shard (default: the config's evolution.shard_size, else "
                        "65536); the output depends on the seed and N only, never on the engine or workers. "
                        "0 = one random stream, as versions before shards (one process)")
    _add_engine_arguments(s)
    commands["augment"] = cmd_augment

    s = add_parser(sub, "score", "Score every pose of a dataset with any scorer "
                   "(density | lifter_error | vae_recon | target_coverage | target_novelty).",
                   "  posecurator score aug.pcs --scorer density --reference hdm05.pcs -o density.npz\n"
                   "  posecurator score aug.pcs --scorer lifter_error --run runs/base -o err.json\n"
                   "  posecurator score bandai.pcs --scorer vae_recon --run vae_run/ -o difficulty.npz\n"
                   "  posecurator score hdm05.pcs --scorer target_coverage --target ../shared/data/coco/"
                   "person_keypoints_train2017_subset2155.json -o cov.npz\n"
                   "  posecurator score aug.pcs --scorer target_novelty --target bandai-to-hdm05-uda --reference bandai.pcs -o nov.npz\n"
                   "  posecurator score big.pcs --scorer density --reference bandai.pcs -o d.npz --engine ray --workers 2\n"
                   "scores are keyed by sample_id (.npz or .json); higher = more unusual / harder / worse\n")
    s.add_argument("dataset", help="dataset folder (or any importable file/folder) to score")
    s.add_argument("--scorer", required=True, choices=SCORER_NAMES)
    s.add_argument("--reference", help="dataset the scorer is fitted on (density, vae_recon; default: DATASET itself); "
                   "target_novelty: the source 3D poses (default: DATASET itself)")
    s.add_argument("--target", metavar="TARGET_2D", help="target_coverage / target_novelty (required): the target's unlabeled "
                   "2D poses, a file or folder with joints2d (e.g. a COCO keypoints JSON), or the name of a split with an "
                   "unlabeled target (bandai-to-hdm05-uda, hdm05-to-coco; data root ../shared/data or $POSECURATOR_DATA)")
    s.add_argument("--k", type=int, default=None, help="target_coverage / target_novelty: nearest target poses averaged (default 5)")
    s.add_argument("--run", help="run folder: the lifter (lifter_error, required) or a trained VAE (vae_recon)")
    s.add_argument("-o", "--output", required=True, metavar="SCORES", help="score file to write (.npz or .json)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--noise-px", type=float, default=None, help="lifter_error: 2D noise (default: the run's training noise)")
    s.add_argument("--views", type=int, default=None, help="lifter_error: random cameras per pose (default 1); "
                   "target_coverage / target_novelty: virtual cameras per 3D pose (default 8)")
    s.add_argument("--fit-sample", type=int, default=None, metavar="N",
                   help="density fitted on DATASET itself: poses of a seeded sample the mixture is fitted on (default "
                        "50000); a stored set is then streamed (the sample read alone, every pose scored against the set, "
                        "in sample, as in memory)")
    _add_engine_arguments(s, what="the blocks of a stored set scored by a scorer fitted elsewhere (--reference, --run; "
                                  "lifter_error keeps one random stream and runs here)")
    commands["score"] = cmd_score


def _add_engine_arguments(s, what: str = "the shards of each generation") -> None:
    s.add_argument("--engine", choices=["local", "ray"], default="local",
                   help=f"where {what} run: local (this process) or ray (a local 127.0.0.1 cluster, or --address); "
                        "results are identical")
    s.add_argument("--address", default=None, metavar="ADDR",
                   help="--engine ray: HOST:PORT of a running cluster (ray start --head), or auto")
    s.add_argument("--workers", type=int, default=None, metavar="N",
                   help="--engine ray: tasks at once (default: the cluster's CPUs)")


def _engine(args):
    from posecurator.engine import make_engine

    return make_engine(args.engine, address=args.address, workers=args.workers)


def _log(args):
    return (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))


def _add_config(args):
    from posecurator.pipelines.add import ADDConfig

    config = load_add_config(args.config) if getattr(args, "config", None) else ADDConfig()
    changes = {}
    for arg, key in (("multiplier", "multiplier"), ("keep", "keep"), ("w", "w"), ("seed", "seed"), ("search", "search"),
                     ("n_trials", "n_trials"), ("search_batch", "search_batch"), ("retrain", "retrain"),
                     ("preset", "lifter_preset"), ("noise_px", "noise_px")):
        value = getattr(args, arg, None)
        if value is not None:
            changes[key] = value
    if getattr(args, "val_cut", None) is not None:
        changes["lifter"] = {**config.lifter, "val_cut": args.val_cut}
    if getattr(args, "target_score", None) is not None:
        if not getattr(args, "target", None):
            raise PoseCuratorError("--target-score goes with --target TARGET_2D (the target's unlabeled 2D)")
        changes["target_score"] = args.target_score
    elif getattr(args, "target", None) and config.target_score is None:
        changes["target_score"] = "novelty"
    shard_size = getattr(args, "shard_size", None)
    if shard_size is not None:
        if shard_size < 0:
            raise PoseCuratorError(f"--shard-size must be >= 0 (0 = one random stream), got {shard_size}")
        import dataclasses

        changes["evolution"] = dataclasses.replace(config.evolution, shard_size=shard_size or None)
    return config.replace(**changes) if changes else config


def _load(path, args):
    from posecurator.pipelines.splits import load_dataset

    return load_dataset(path, progress=not args.quiet)


def _is_stored_set(path) -> bool:
    """A pose-set folder written by posecurator (``posecurator.json`` beside its chunks)."""
    from posecurator.poseset import META_FILE

    return (Path(path) / META_FILE).is_file()


def _peek(path):
    """The first chunk of a stored pose set (its layout and columns, without loading the rest)."""
    from posecurator.poseset import iter_chunks

    for chunk in iter_chunks(path):
        return chunk
    raise DataError(path, "the pose set holds no poses")


def _require_3d(ps, path) -> None:
    if ps.joints3d is None:
        raise DataError(path, "has no 3D poses; this command needs joints3d")
    if ps.layout != "h36m17":
        raise DataError(path, f"layout {ps.layout}; this command needs h36m17 poses")


def cmd_add(args):
    from posecurator.pipelines.add import run_add

    config = _add_config(args)
    if config.search == "bayes":
        try:
            import optuna  # noqa: F401
        except ImportError:
            raise PoseCuratorError("--search bayes needs Optuna: pip install optuna") from None
    if args.engine != "local" and config.evolution.shard_size is None:
        raise PoseCuratorError(f"--engine {args.engine} breeds each generation in independently seeded shards: give "
                               "--shard-size N (or evolution.shard_size in --config); one random stream runs here")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder")
    if _is_stored_set(args.dataset):  # read lazily: the train part stays on disk (ADDContext)
        from posecurator.poseset import PoseSet

        _require_3d(_peek(args.dataset), args.dataset)
        train = PoseSet.open(args.dataset)
    else:
        train = _load(args.dataset, args)
        _require_3d(train, args.dataset)
        train.check_finite(args.dataset)  # here, where the file's name is known
    if config.target_score is not None and not args.target:
        raise PoseCuratorError(f"the ADD config's target_score is {config.target_score!r}: give --target TARGET_2D")
    target = _target_2d(args) if args.target else None
    from posecurator.cli.commands_report import recorded_command, write_run_report
    from posecurator.report.plots import render_add_plots

    with recorded_command(out, args), _engine(args) as engine:
        if engine.parallel and config.search == "bayes" and config.search_batch == 1:
            _log(args)(f"[add] the {config.n_trials} search trials run one after the other (--search-batch B runs B "
                       "side by side; it changes the search, the engine never does)")
        summary = run_add(train, out, config, progress=not args.quiet, log=_log(args), render=render_add_plots,
                          engine=engine, target=target)
    s, lf = summary["sizes"], summary["lifters"]
    ref, fin = lf["reference"]["best_val_mpjpe"], lf["final"]["best_val_mpjpe"]
    print(f"ADD: {s['train_part']} original + {s['distilled']} distilled poses (x{s['multiplier_achieved']:.2f}); "
          f"validation MPJPE reference {_mm(ref)} -> final {_mm(fin)}; lifter -> {out} "
          f"(posecurator evaluate {out} TEST_DATASET)")
    write_run_report(out, args, kind="add")


def _mm(v) -> str:
    return "-" if v is None else f"{v:.1f} mm"


def cmd_augment(args):
    import dataclasses
    import time

    from posecurator.augment import JointAnglePrior
    from posecurator.augment.evolution import DEFAULT_SHARD_SIZE
    from posecurator.augment.streaming import evolve_to_store
    from posecurator.fileio import atomic_write_json
    from posecurator.pipelines.add import ADDConfig

    config = load_add_config(args.config) if args.config else ADDConfig()
    if args.seed is not None:
        config = config.replace(seed=args.seed)
    multiple = config.full_multiple if args.multiplier is None else args.multiplier
    if multiple < 1:
        raise PoseCuratorError(f"--multiplier must be >= 1 (the original counts), got {multiple}")
    if args.shard_size is not None and args.shard_size < 0:
        raise PoseCuratorError(f"--shard-size must be >= 0 (0 = one random stream), got {args.shard_size}")
    # shards unless asked otherwise: the output is then the same on every engine
    shard_size = (config.evolution.shard_size or DEFAULT_SHARD_SIZE) if args.shard_size is None else (args.shard_size or None)
    if shard_size is None and args.engine != "local":
        raise PoseCuratorError("--shard-size 0 (one random stream) runs in one process; use --engine local or a shard size")
    evolution = dataclasses.replace(config.evolution_config(multiple=multiple), shard_size=shard_size)
    ps = _load(args.dataset, args)
    _require_3d(ps, args.dataset)
    ps.check_finite(args.dataset)
    t0 = time.perf_counter()
    prior = JointAnglePrior(**config.prior).fit(ps)
    fit_s = time.perf_counter() - t0
    out = Path(args.output)
    t0 = time.perf_counter()
    with _engine(args) as engine:
        engine_s = time.perf_counter() - t0  # starting a local Ray cluster takes seconds: reported apart
        t0 = time.perf_counter()
        try:
            written, generated, stats = evolve_to_store(ps, out, prior=prior, config=evolution, engine=engine,
                                                        include_original=not args.only_new, progress=not args.quiet)
        except ValueError as e:
            raise DataError(args.dataset, str(e)) from None
        gen_s = time.perf_counter() - t0
        where = engine.describe()
    # generation_s: evolution + plausibility + writing the set (children go to disk as they come)
    doc = {"input": str(args.dataset), "original": len(ps), "generated": generated, "written": written,
           "multiplier": multiple, "seed": config.seed, "prior_fit_s": fit_s, "engine_start_s": engine_s, "generation_s": gen_s,
           "poses_per_s": (sum(s.made for s in stats) / gen_s) if gen_s > 0 else None, **where,
           "generations": [s.to_dict() for s in stats], "evolution": evolution.to_dict(), "prior": config.prior}
    atomic_write_json(out / "augment_stats.json", doc, indent=1)
    rates = ", ".join(f"g{s.generation}: {100 * s.rejection_rate:.0f}%" for s in stats)
    print(f"augmented {len(ps)} -> +{generated} poses in {len(stats)} generations ({gen_s:.1f} s; rejected by the prior {rates}) "
          f"-> {out}")


def cmd_score(args):
    import numpy as np

    from posecurator.selection.bins import save_scores

    out = Path(args.output)
    if out.suffix not in (".npz", ".json"):
        raise PoseCuratorError(f"{out}: score files are .npz or .json")
    if args.scorer == "lifter_error" and not args.run:
        raise PoseCuratorError("--scorer lifter_error needs --run RUN_DIR (a trained lifter)")
    if args.scorer in TARGET_SCORERS and not args.target:
        raise PoseCuratorError(f"--scorer {args.scorer} needs --target TARGET_2D (the target's unlabeled 2D: a file or "
                               "folder with joints2d, or a split name such as hdm05-to-coco)")
    if args.views is not None and args.views < 1:
        raise PoseCuratorError(f"--views must be >= 1, got {args.views}")
    if args.k is not None and args.k < 1:
        raise PoseCuratorError(f"--k must be >= 1, got {args.k}")
    # A stored pose set scored by a scorer fitted elsewhere (--reference / --run) is streamed chunk
    # by chunk: only the scores are held, whatever the size of the set (scoring.stream).
    stream = _is_stored_set(args.dataset) and (
        args.scorer == "lifter_error" or (args.scorer in ("density", "vae_recon") and (args.reference or args.run)))
    if args.fit_sample is not None and (args.scorer != "density" or args.reference):
        raise PoseCuratorError("--fit-sample is for --scorer density fitted on DATASET itself (no --reference)")
    if args.fit_sample is not None and args.fit_sample < 3:
        raise PoseCuratorError(f"--fit-sample must be >= 3, got {args.fit_sample}")
    if args.scorer == "density" and not args.reference and _is_stored_set(args.dataset):
        # fitted on the set itself: a seeded sample read alone, then one streamed pass (scoring.self_fit)
        return _score_density_self_streamed(args, out)
    ps = _peek(args.dataset) if stream else _load(args.dataset, args)
    if args.scorer in TARGET_SCORERS:
        scorer = _target_scorer(args, ps)
    elif args.scorer == "density":
        from posecurator.scoring.density import DensityScorer

        _require_3d(ps, args.dataset)
        reference = _load(args.reference, args) if args.reference else ps
        _require_3d(reference, args.reference or args.dataset)
        scorer = DensityScorer(seed=args.seed, **({} if args.fit_sample is None else {"max_fit_samples": args.fit_sample})).fit(reference)
    elif args.scorer == "lifter_error":
        from posecurator.pipelines.add import lifter_error_scorer

        _require_3d(ps, args.dataset)
        scorer = lifter_error_scorer(args.run, seed=args.seed, noise_px=args.noise_px, n_views=args.views or 1)
    else:
        # the vae_recon scorer takes its VAE by injection; the training layer builds it
        from posecurator.train.vae_trainer import load_vae_scorer, make_vae_scorer

        if args.run:
            scorer = load_vae_scorer(args.run)
        else:
            reference = _load(args.reference, args) if args.reference else ps
            scorer = make_vae_scorer(progress=not args.quiet, seed=args.seed).fit(reference)
    if args.engine != "local" and not stream:
        raise PoseCuratorError(f"--engine {args.engine} scores a stored pose set with a scorer fitted elsewhere "
                               "(--reference or --run; or lifter_error, which runs here): this set is scored in memory")
    try:
        if stream:
            from posecurator.scoring.stream import score_dataset

            with _engine(args) as engine:
                sample_id, scores = score_dataset(scorer, args.dataset, progress=not args.quiet, engine=engine)
        else:
            sample_id, scores = ps.sample_id, np.asarray(scorer.score_samples(ps), dtype=np.float64)
    except ValueError as e:
        raise DataError(args.dataset, str(e)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    save_scores(out, sample_id, scores)
    n_bad = int((~np.isfinite(scores)).sum())
    print(f"{args.scorer}: {len(scores)} poses ({n_bad} non-finite); {_stats(scores)}; "
          f"higher = {scorer.higher_means} -> {out}")


def _score_density_self_streamed(args, out):
    from posecurator.scoring.self_fit import density_self_scores
    from posecurator.selection.bins import save_scores

    if args.engine != "local":
        raise PoseCuratorError(f"--engine {args.engine}: the density scorer fitted on DATASET itself streams in this "
                               "process; fit it elsewhere (--reference) to score blocks on an engine")
    _require_3d(_peek(args.dataset), args.dataset)
    try:
        scorer, sample_id, scores, info = density_self_scores(
            args.dataset, seed=args.seed, progress=not args.quiet,
            **({} if args.fit_sample is None else {"max_fit_samples": args.fit_sample}))
    except ValueError as e:
        raise DataError(args.dataset, str(e)) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    save_scores(out, sample_id, scores)
    print(f"density: {len(scores)} poses; {_stats(scores)}; higher = {scorer.higher_means}; {info.describe()} -> {out}")


def _stats(scores) -> str:
    import numpy as np

    finite = scores[np.isfinite(scores)]
    return "no finite scores" if len(finite) == 0 else (
        f"mean {finite.mean():.4g}, std {finite.std():.4g}, min {finite.min():.4g}, median {np.median(finite):.4g}, "
        f"max {finite.max():.4g}")


def _target_2d(args):
    """The --target of the target scorers: a split name with an unlabeled target, or a 2D file/folder."""
    from posecurator.pipelines.splits import UDA_PARENTS, load_target_2d, resolve_split

    if args.target in UDA_PARENTS and not Path(args.target).exists():
        return load_target_2d(resolve_split(args.target), progress=not args.quiet)  # the split's own seed
    target = _load(args.target, args)
    if target.joints2d is None:
        raise DataError(args.target, "has no 2D joints (joints2d); --target needs the target's unlabeled 2D "
                                     "(e.g. a COCO keypoints JSON, or a split name such as hdm05-to-coco)")
    return target


def _target_scorer(args, ps):
    from posecurator.scoring.target2d import TargetCoverageScorer, TargetNoveltyScorer

    options = {"seed": args.seed}
    if args.views is not None:
        options["n_views"] = args.views
    if args.k is not None:
        options["k"] = args.k
    target = _target_2d(args)
    if ps.joints3d is None and ps.joints2d is None:
        raise DataError(args.dataset, "has neither 3D nor 2D joints to score")
    source = None
    if args.scorer == "target_novelty":
        source = _load(args.reference, args) if args.reference else ps
        _require_3d(source, args.reference or args.dataset)
    try:
        if args.scorer == "target_coverage":
            return TargetCoverageScorer(**options).fit(target)
        return TargetNoveltyScorer(**options).fit(target, source=source)
    except DataError as e:
        raise DataError(args.target, e.message) from None
