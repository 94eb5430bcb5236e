"""`posecurator hard`: where an estimator fails on real 2D, and what those poses are (PoseSyn's
Error Extraction Module as a command, the first stage of the PoseSyn loop).

The stages are the layers' (this module only composes them):

1. the data in the target layout with 2D and cameras (:func:`prepare_2d`): COCO-17 / MPII-16
   annotations are converted (:mod:`posecurator.skeleton.keypoints2d`), too sparsely labelled
   ones left out (counted); a 3D set without 2D is seen through seeded random cameras, one per
   stretch of up to two seconds of a clip (like a video), so it is scored as if it were 2D-only
   while keeping its 3D (the 3D-error variant and the check of the 2D score need it);
2. the estimator's predictions, placed in their cameras and projected back, scored by
   :class:`posecurator.scoring.reprojection.ReprojectionErrorScorer` (Eq. 1);
3. the hardest ``top`` and easiest ``bottom`` samples (Eq. 2-3) and a random selection of
   ``top`` for the "without EEM" ablation (:func:`posecurator.selection.topk.select_hard_easy`);
4. captions of the selected samples (:func:`posecurator.synthesis.captions.caption_samples`:
   a user's captions file, else a captioner, else the describer on the prediction, recorded per
   sample) and their text embeddings (:mod:`posecurator.synthesis.text_embedding`).

Output folder (written under a temporary name and renamed when complete):

===================  ========================================================================
``hard.pcs``         the hard samples as a dataset (lineage: ``parents[:, 0]`` = the input
                     sample id, operator ``eem_hard``; 3D kept when the input had it)
``easy.pcs``         the easy samples (operator ``eem_easy``), PoseSyn's reference samples
``random.pcs``       the random selection (operator ``random``), the ablation's hard set
``predictions.npz``  every scored sample's prediction (posecurator.io.predictions format, with
                     the intrinsics used), so later stages need not lift again
``scores.npz``       sample_id, error, error_2d, error_3d, status, size, translation (N rows)
``captions.json``    captions of the hard, easy and random samples, with their source
``text_embeddings.npz``  one embedding per unique caption (when embeddings are on)
``gallery.json``     plot data of the hardest samples (given vs reprojected 2D, caption)
``summary.json``     counts, statuses, score quantiles, the selections' sample ids, the options,
                     and (3D input) how well the 2D score finds the truly hard samples
===================  ========================================================================
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from posecurator.camera import RandomCameraSampler
from posecurator.camera.core import project_points, world_to_camera
from posecurator.errors import DataError, PoseCuratorError
from posecurator.fileio import atomic_write_json, staged_dir
from posecurator.poseset import PoseSet
from posecurator.scoring.reprojection import STATUS, ReprojectionErrorScorer
from posecurator.selection.topk import DEFAULT_BOTTOM, DEFAULT_TOP, select_hard_easy
from posecurator.skeleton.layouts import H36M17

SEGMENT_FRAMES = 60  # a 3D set without 2D: one random camera per stretch of up to 2 s of a clip
GALLERY_SIZE = 24
_CAMERA_STREAM = 29


def prepare_2d(poses: PoseSet, *, seed: int = 0, min_keypoints: int | None = 8,
               sampler: RandomCameraSampler | None = None) -> tuple[PoseSet, dict]:
    """The pose set in H36M17 with 2D and cameras, and what was done to it (a dict for the summary)."""
    from posecurator.skeleton.keypoints2d import to_target_layout

    info: dict = {"input_samples": len(poses), "input_layout": poses.layout}
    if poses.joints2d is None:
        if poses.joints3d is None:
            raise DataError(None, "the dataset has neither 2D nor 3D poses")
        if poses.layout != H36M17.name:
            raise DataError(None, f"a 3D set must be in the {H36M17.name} layout, got {poses.layout}")
        poses = through_random_cameras(poses, seed=seed, sampler=sampler)
        info["2d"] = (f"3D seen through seeded random cameras (seed {seed}), one per stretch of up to "
                      f"{SEGMENT_FRAMES} frames of a clip; exact projection")
    else:
        info["2d"] = "given"
        if min_keypoints and poses.visibility is not None:
            keep = (poses.visibility > 0).sum(1) >= min_keypoints
            info["left_out_few_keypoints"] = int((~keep).sum())
            info["min_keypoints"] = int(min_keypoints)
            poses = poses.subset(keep)
        if poses.layout != H36M17.name:
            try:
                poses = to_target_layout(poses)
            except ValueError as e:
                raise DataError(None, str(e)) from None
            info["layout_conversion"] = poses.attrs.get("layout_conversion")
    if len(poses) == 0:
        raise DataError(None, "no sample left to score (every annotation has too few labelled keypoints?)")
    info["samples"] = len(poses)
    return poses, info


def through_random_cameras(poses: PoseSet, *, seed: int = 0, sampler: RandomCameraSampler | None = None) -> PoseSet:
    """A 3D pose set (world mm) seen through seeded random cameras: the frames of every clip are
    cut into stretches of up to :data:`SEGMENT_FRAMES`, each seen by one camera of ``sampler``'s
    ranges (default :class:`RandomCameraSampler`) aimed at the stretch's mean pelvis. The result
    keeps the 3D and gains ``joints2d`` (px; NaN for a joint at or behind its camera),
    ``visibility`` and one camera table row per stretch."""
    sampler = RandomCameraSampler() if sampler is None else sampler
    joints = poses.joints3d.astype(np.float64)
    names, clip_idx = np.unique(poses.clip, return_inverse=True)
    clip_idx = clip_idx.reshape(-1)
    order = np.lexsort((poses.frame, clip_idx))
    rank = np.empty(len(poses), np.int64)
    # position of each pose within its clip (by frame), so stretches are contiguous in time
    starts = np.r_[0, np.flatnonzero(np.diff(clip_idx[order])) + 1]
    pos = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    rank[order] = pos
    seg_key = clip_idx.astype(np.int64) * (1 + len(poses) // SEGMENT_FRAMES + 1) + rank // SEGMENT_FRAMES
    segs, seg_of = np.unique(seg_key, return_inverse=True)
    seg_of = seg_of.reshape(-1)
    counts = np.bincount(seg_of, minlength=len(segs)).astype(np.float64)
    pelvis = np.stack([np.bincount(seg_of, weights=joints[:, 0, d], minlength=len(segs)) for d in range(3)], 1) / counts[:, None]
    cams = sampler.sample(pelvis, np.random.default_rng([seed, _CAMERA_STREAM]), floor_z=0.0)
    R, t, f, c = cams.R[seg_of], cams.t[seg_of], cams.f[seg_of], cams.c[seg_of]
    x_cam = world_to_camera(joints, R, t)
    x2d = project_points(x_cam, f, c)
    visible = (x_cam[..., 2] > 1.0) & np.isfinite(x2d).all(-1)
    x2d = np.where(visible[..., None], x2d, np.nan)
    table = [{"name": f"random{k}", "R": cams.R[k].tolist(), "t": cams.t[k].tolist(), "f": cams.f[k].tolist(),
              "c": cams.c[k].tolist(), "width": int(cams.width[k]), "height": int(cams.height[k])} for k in range(len(segs))]
    return poses.replace(joints2d=x2d.astype(np.float32), visibility=visible.astype(np.float32),
                         camera=seg_of.astype(np.int32), cameras=table)


def _write_json(path: Path, obj) -> None:
    atomic_write_json(path, obj)



def _selected(poses: PoseSet, rows: np.ndarray, operator: str) -> PoseSet:
    part = poses.subset(rows)
    parents = np.full((len(rows), 2), -1, np.int64)
    parents[:, 0] = part.sample_id
    return part.replace(parents=parents, operator=operator)


def rank_agreement(score: np.ndarray, truth: np.ndarray, *, k: int) -> dict:
    """How well ``score`` finds the samples that are truly hard by ``truth`` (both (N,), NaN
    ignored): Spearman rank correlation, and the precision of the top ``k`` by score among the
    top ``k`` by truth (chance level = k / N)."""
    from scipy.stats import spearmanr

    ok = np.isfinite(score) & np.isfinite(truth)
    n = int(ok.sum())
    if n < 3:
        return {"n": n}
    s, t = score[ok], truth[ok]
    k = min(k, n)
    top_s = set(np.argsort(-s, kind="stable")[:k].tolist())
    top_t = set(np.argsort(-t, kind="stable")[:k].tolist())
    return {"n": n, "spearman": float(spearmanr(s, t).statistic), "k": k,
            "precision_at_k": len(top_s & top_t) / k, "chance_precision": k / n}


def run_hard(poses: PoseSet, estimator, *, out_dir: str | os.PathLike, top: int = DEFAULT_TOP, bottom: int = DEFAULT_BOTTOM,
             weights: dict | None = None, error: str = "2d", seed: int = 0, min_keypoints: int | None = 8,
             captions_file=None, captioner=None, embed: bool = True, in_sample: bool = False,
             log=print) -> dict:
    """PoseSyn's error extraction on ``poses`` for ``estimator``; writes ``out_dir`` (see the
    module docstring) and returns the summary."""
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    if out_dir.exists() and not (out_dir / "summary.json").is_file():
        raise PoseCuratorError(f"{out_dir} exists and is not the output of `posecurator hard`; refusing to replace it")
    encoder = None
    if embed:  # before any work: a missing encoder package is said at once, not after scoring
        from posecurator.synthesis.text_embedding import load_text_encoder

        encoder = load_text_encoder()
    prepared, info = prepare_2d(poses, seed=seed, min_keypoints=min_keypoints)
    given_captions = _read_checked_captions(captions_file, prepared)  # before the work: a bad file is said at once
    if error == "3d" and prepared.joints3d is None:
        raise DataError(None, "--error 3d needs a dataset with 3D poses; this one is 2D only")
    scorer = ReprojectionErrorScorer(estimator=estimator, weights=weights, space=error, in_sample=in_sample).fit(prepared)
    details = scorer.score_details(prepared)
    score = details["error"]
    selection = select_hard_easy(score, top=top, bottom=bottom, seed=seed)
    if selection.n_scored == 0:
        raise DataError(None, "no sample could be scored: " + ", ".join(
            f"{STATUS[int(s)]}: {int(n)}" for s, n in zip(*np.unique(details["status"], return_counts=True))))
    log(f"[hard] scored {selection.n_scored} of {len(prepared)} samples; hard {len(selection.hard)}, easy {len(selection.easy)}")

    captions = _captions(prepared, details["pred3d"], selection, given=given_captions, captioner=captioner)
    embeddings = None
    if encoder is not None:
        from posecurator.synthesis.text_embedding import embed_unique

        unique, vectors, _ = embed_unique(captions["text"], encoder)
        embeddings = {"text": np.asarray(unique, dtype=str), "embedding": vectors, "model_id": np.array(encoder.model_id)}

    summary = {
        "estimator": getattr(estimator, "name", type(estimator).__name__),
        "in_sample": bool(in_sample),
        "error": error,
        "error_unit": "fraction of the person's size (larger side of the box)" if error == "2d" else "mm",
        "weights": {H36M17.joints[j]: float(w) for j, w in enumerate(scorer.weights_) if w > 0},
        "data": info,
        "status": {STATUS[int(s)]: int(n) for s, n in zip(*np.unique(details["status"], return_counts=True))},
        "n_scored": selection.n_scored,
        "quantiles": _quantiles(score),
        "selection": {"top": top, "bottom": bottom, "seed": seed,
                      "hard_sample_ids": prepared.sample_id[selection.hard].tolist(),
                      "easy_sample_ids": prepared.sample_id[selection.easy].tolist(),
                      "random_sample_ids": prepared.sample_id[selection.random].tolist(),
                      "hard_error_range": _range(score[selection.hard]), "easy_error_range": _range(score[selection.easy])},
        "captions": {"sources": _counts(captions["source"])},
    }
    if prepared.joints3d is not None:
        summary["check_against_3d"] = {
            "what": "the 2D score against the true 3D error (weighted, root-relative, camera frame, mm) of the same prediction",
            **rank_agreement(details["error_2d"], details["error_3d"], k=max(top, 1))}

    # everything is written into a temporary folder and renamed at the end: nothing half-written
    with staged_dir(out_dir) as tmp:
        _selected(prepared, selection.hard, "eem_hard").save(tmp / "hard.pcs")
        _selected(prepared, selection.easy, "eem_easy").save(tmp / "easy.pcs")
        _selected(prepared, selection.random, "random").save(tmp / "random.pcs")
        scored = np.isfinite(details["pred3d"]).all((1, 2))
        from posecurator.camera.placement import sample_cameras

        cams = sample_cameras(prepared)
        np.savez(tmp / "predictions.npz", sample_id=prepared.sample_id[scored], joints3d=details["pred3d"][scored].astype(np.float32),
                 layout=np.array(H36M17.name), f=cams["f"][scored], c=cams["c"][scored])
        np.savez(tmp / "scores.npz", sample_id=prepared.sample_id, error=score, error_2d=details["error_2d"],
                 error_3d=details["error_3d"], status=details["status"], size=details["size"], translation=details["translation"])
        _write_json(tmp / "captions.json", captions)
        if embeddings is not None:
            np.savez(tmp / "text_embeddings.npz", **embeddings)
        _write_json(tmp / "gallery.json", _gallery(prepared, details, selection, captions))
        summary["wall_time_s"] = time.perf_counter() - t0
        _write_json(tmp / "summary.json", summary)
    return summary


def _read_checked_captions(captions_file, prepared: PoseSet) -> dict[int, str]:
    """The user's captions {sample id: text}, every id checked against the scored set."""
    if captions_file is None:
        return {}
    from posecurator.synthesis.captions import read_captions_file

    given = read_captions_file(captions_file)
    unknown = sorted(set(given) - set(prepared.sample_id.tolist()))
    if unknown:
        raise DataError(captions_file, f"{len(unknown)} sample id(s) are not in the dataset: "
                                       + ", ".join(map(str, unknown[:5])) + (" ..." if len(unknown) > 5 else ""))
    return given


def _captions(prepared: PoseSet, pred3d: np.ndarray, selection, *, given: dict[int, str], captioner) -> dict:
    """Captions of the union of the selected rows: the user's (``given``), else a captioner, else
    the describer on the prediction (camera frame, up = -y) or, for 3D data, on the true 3D; each
    caption's source is recorded."""
    from posecurator.synthesis.captions import caption_samples

    rows = np.unique(np.concatenate([selection.hard, selection.easy, selection.random]))
    part = prepared.subset(rows)
    if part.joints3d is not None:
        table = caption_samples(part, captioner=captioner)
    else:
        table = caption_samples(part, pred3d=pred3d[rows], up=(0.0, -1.0, 0.0), captioner=captioner)
    text = [given.get(int(i), str(t)) for i, t in zip(part.sample_id.tolist(), table.text)]
    source = ["user" if int(i) in given else str(src) for i, src in zip(part.sample_id.tolist(), table.source)]
    hard, easy = set(selection.hard.tolist()), set(selection.easy.tolist())
    return {"sample_id": part.sample_id.tolist(), "text": text, "source": source,
            "set": ["hard" if r in hard else "easy" if r in easy else "random" for r in rows.tolist()]}


def _gallery(prepared: PoseSet, details: dict, selection, captions: dict) -> dict:
    text = dict(zip(captions["sample_id"], captions["text"]))
    rows = selection.hard[:GALLERY_SIZE]
    vis = prepared.visibility if prepared.visibility is not None else np.ones(prepared.joints2d.shape[:2])
    return {"bones": H36M17.bones.tolist(), "joints": list(H36M17.joints),
            "samples": [{"sample_id": int(prepared.sample_id[r]), "clip": str(prepared.clip[r]), "error": float(details["error"][r]),
                         "given": np.where(vis[r, :, None] > 0, prepared.joints2d[r], np.nan).tolist(),
                         "reprojected": details["reprojected"][r].tolist(), "caption": text.get(int(prepared.sample_id[r]), "")}
                        for r in rows.tolist()]}


def _quantiles(x: np.ndarray) -> dict:
    x = x[np.isfinite(x)]
    if not len(x):
        return {}
    qs = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
    return {f"q{int(q * 100):02d}": float(v) for q, v in zip(qs, np.quantile(x, qs))} | {"mean": float(x.mean())}


def _range(x: np.ndarray) -> list:
    return [float(np.min(x)), float(np.max(x))] if len(x) else []


def _counts(values) -> dict:
    names, counts = np.unique(np.asarray(values, dtype=str), return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}
