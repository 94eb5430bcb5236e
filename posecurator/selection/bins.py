"""Difficulty bins (paper 002, Sec. 2.2 and 3): sort by score, cut into k equal-size bins.

Bin 0 holds the easiest (lowest-score) samples, bin k-1 the hardest. Bins are equal-size (the
sample of rank r goes to bin ``r * k // N``, so sizes differ by at most one), and ties in score
are broken by sample position (stable sort), so the binning is deterministic and monotone:
``max(score[bin i]) <= min(score[bin i+1])``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def _check_scores(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be (N,), got {scores.shape}")
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(f"{int(bad.sum())} scores are NaN or infinite (e.g. poses with too few labelled "
                         f"joints, first at index {int(np.argmax(bad))}); drop them before binning")
    return scores


def difficulty_bins(scores, k: int = 25) -> np.ndarray:
    """(N,) scores (higher = harder) -> (N,) int64 bin index, 0 = easiest ... k-1 = hardest.

    Equal-size bins: a sample of rank r (0 = lowest score, stable) goes to bin ``r * k // N``.
    Needs ``N >= k`` so that no bin is empty.
    """
    scores = _check_scores(scores)
    n = len(scores)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if n < k:
        raise ValueError(f"cannot cut {n} samples into {k} non-empty bins")
    order = np.argsort(scores, kind="stable")
    bins = np.empty(n, dtype=np.int64)
    bins[order] = (np.arange(n, dtype=np.int64) * k) // n
    return bins


def difficulty_bins_reference(scores, k: int = 25) -> np.ndarray:
    """Plain twin of :func:`difficulty_bins` (per-sample loop), kept to test the batched one."""
    scores = [float(s) for s in scores]
    n = len(scores)
    ranked = sorted(range(n), key=lambda i: (scores[i], i))
    out = [0] * n
    for rank, i in enumerate(ranked):
        out[i] = rank * k // n
    return np.array(out, dtype=np.int64)


def bin_edges(scores, bins, k: int | None = None) -> np.ndarray:
    """(k + 1,) score edges: edge i = min score of bin i, last = max score overall. A new score s
    falls in bin ``clip(searchsorted(edges, s, 'right') - 1, 0, k - 1)`` (used to bin target poses
    with the source's bins, Fig. 4)."""
    scores, bins = _check_scores(scores), np.asarray(bins, dtype=np.int64)
    k = int(bins.max()) + 1 if k is None else k
    lo = np.full(k, np.inf)
    np.minimum.at(lo, bins, scores)
    return np.append(lo, scores.max())


def assign_bins(scores, edges) -> np.ndarray:
    """(M,) new scores -> (M,) bins under ``edges`` of :func:`bin_edges` (scores outside the source's
    range go to the first or last bin)."""
    scores, edges = _check_scores(scores), np.asarray(edges, dtype=np.float64)
    k = len(edges) - 1
    return np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, k - 1).astype(np.int64)


def per_bin_mean(values, bins, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fig. 4: the mean of a per-sample value (accuracy, MPJPE, EvalPose, ...) in each bin.

    values: (N,) or (N, M) (M methods side by side); bins: (N,) in 0..k-1. Returns (means (k,) or
    (k, M), NaN for an empty bin; counts (k,)). NaN values are left out of their bin's mean.
    """
    values = np.asarray(values, dtype=np.float64)
    bins = np.asarray(bins, dtype=np.int64)
    if values.shape[:1] != bins.shape or bins.ndim != 1:
        raise ValueError(f"values {values.shape} and bins {bins.shape} must have the same N")
    k = int(bins.max()) + 1 if k is None else int(k)
    v2 = values.reshape(len(values), -1)
    ok = np.isfinite(v2)
    onehot = np.zeros((len(bins), k))
    onehot[np.arange(len(bins)), bins] = 1.0
    sums = onehot.T @ np.where(ok, v2, 0.0)
    counts_v = onehot.T @ ok.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts_v > 0, sums / np.maximum(counts_v, 1), np.nan)
    return means.reshape((k,) + values.shape[1:]), np.bincount(bins, minlength=k)


def bin_statistics(scores, bins, k: int | None = None, *, top: int = 5, **per_sample) -> list[dict]:
    """One dict per bin 0..k-1: ``bin, count, fraction, score_min, score_mean, score_median,
    score_max``, and for each extra per-sample array ``name=(N,) array``: numeric arrays give
    ``name_mean``; string arrays give ``name_top`` (the ``top`` most common values with counts)
    and ``name_unique`` (number of distinct values)."""
    scores, bins = _check_scores(scores), np.asarray(bins, dtype=np.int64)
    if bins.shape != scores.shape:
        raise ValueError(f"bins {bins.shape} and scores {scores.shape} differ")
    k = int(bins.max()) + 1 if k is None else int(k)
    extras = {}
    for name, arr in per_sample.items():
        arr = np.asarray(arr)
        if arr.shape[:1] != scores.shape:
            raise ValueError(f"{name} has {arr.shape[:1]} rows, scores have {len(scores)}")
        extras[name] = arr
    out = []
    n = len(scores)
    for b in range(k):
        sel = bins == b
        s = scores[sel]
        row = {"bin": b, "count": int(sel.sum()), "fraction": float(sel.sum() / max(n, 1))}
        row.update(score_min=float(s.min()) if len(s) else float("nan"),
                   score_mean=float(s.mean()) if len(s) else float("nan"),
                   score_median=float(np.median(s)) if len(s) else float("nan"),
                   score_max=float(s.max()) if len(s) else float("nan"))
        for name, arr in extras.items():
            v = arr[sel]
            if np.issubdtype(arr.dtype, np.number) or arr.dtype == bool:
                row[f"{name}_mean"] = float(np.mean(v)) if len(v) else float("nan")
            else:
                counts = Counter(v.astype(str).tolist())
                row[f"{name}_top"] = [[str(key), int(c)] for key, c in counts.most_common(top)]
                row[f"{name}_unique"] = len(counts)
        out.append(row)
    return out


def sample_per_bin(bins, n_per_bin: int, *, k: int | None = None, seed: int = 0) -> list[np.ndarray]:
    """Seeded subsample: for each bin 0..k-1, up to ``n_per_bin`` sample indices (sorted)."""
    bins = np.asarray(bins, dtype=np.int64)
    k = int(bins.max()) + 1 if k is None else int(k)
    rng = np.random.default_rng(seed)
    out = []
    for b in range(k):
        idx = np.flatnonzero(bins == b)
        if len(idx) > n_per_bin:
            idx = np.sort(rng.choice(idx, n_per_bin, replace=False))
        out.append(idx)
    return out


def bin_similarity_matrix(poses, bins, *, layout="h36m17", n_per_bin: int = 40, k: int | None = None,
                          seed: int = 0, visibility=None) -> np.ndarray:
    """The paper's Fig. 3(b): (k, k) mean EvalPose similarity between poses of bin i and bin j.

    poses: (N, J, 2|3) keypoints (any units; EvalPose is scale/translation/rotation invariant).
    bins: (N,) bin index. Up to ``n_per_bin`` poses per bin are drawn (seeded); entry (i, j) is
    the mean of EvalPose over all pairs (a in bin i, b in bin j), excluding a == b on the diagonal.
    Uses :func:`posecurator.metrics.evalpose.evalpose_matrix` (higher = more similar; pairs with no
    common labelled triplet are skipped). layout: a Layout or its name. visibility: (N, J) or None.
    """
    from posecurator.metrics.evalpose import evalpose_matrix

    poses = np.asarray(poses)
    bins = np.asarray(bins, dtype=np.int64)
    if poses.ndim != 3 or poses.shape[2] not in (2, 3) or len(poses) != len(bins):
        raise ValueError(f"poses must be (N, J, 2|3) with N = len(bins) = {len(bins)}, got {poses.shape}")
    picked = sample_per_bin(bins, n_per_bin, k=k, seed=seed)
    k = len(picked)
    idx = np.concatenate(picked)
    owner = np.repeat(np.arange(k), [len(p) for p in picked])
    vis = None if visibility is None else np.asarray(visibility)[idx]
    sim = _evalpose_all_pairs(evalpose_matrix, poses[idx], layout, vis)
    onehot = np.zeros((len(idx), k))
    onehot[np.arange(len(idx)), owner] = 1.0
    finite = np.isfinite(sim)
    sim = np.where(finite, sim, 0.0)
    sums = onehot.T @ sim @ onehot
    counts = onehot.T @ finite.astype(np.float64) @ onehot
    # a pose compared with itself is not a pair: drop those terms from the diagonal blocks
    sums[np.diag_indices(k)] -= np.bincount(owner, weights=np.diag(sim), minlength=k)
    counts[np.diag_indices(k)] -= np.bincount(owner, weights=np.diag(finite).astype(np.float64), minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _evalpose_all_pairs(evalpose_matrix, poses, layout, visibility):
    """(M, M) EvalPose between every pair of ``poses``."""
    from posecurator.skeleton import get_layout

    layout = get_layout(layout) if isinstance(layout, str) else layout
    return np.asarray(evalpose_matrix(poses, poses, layout=layout, visibility_a=visibility, visibility_b=visibility),
                      dtype=np.float64)


def bin_similarity_matrix_reference(poses, bins, *, layout="h36m17", n_per_bin: int = 40, k: int | None = None,
                                    seed: int = 0, visibility=None) -> np.ndarray:
    """Plain pair-by-pair twin of :func:`bin_similarity_matrix` (same sampling), kept to test it."""
    from posecurator.metrics.evalpose import evalpose
    from posecurator.skeleton import get_layout

    layout = get_layout(layout) if isinstance(layout, str) else layout
    picked = sample_per_bin(np.asarray(bins), n_per_bin, k=k, seed=seed)
    k = len(picked)
    out = np.full((k, k), np.nan)
    for i in range(k):
        for j in range(k):
            vals = []
            for a in picked[i]:
                for b in picked[j]:
                    if a == b:
                        continue
                    kw = {} if visibility is None else {"visibility_a": visibility[a], "visibility_b": visibility[b]}
                    v = float(evalpose(poses[a], poses[b], layout=layout, **kw))
                    if np.isfinite(v):
                        vals.append(v)
            if vals:
                out[i, j] = sum(vals) / len(vals)
    return out


# ---------------------------------------------------------------------- score files
def save_scores(path, sample_id, scores, bins=None) -> None:
    """Write per-sample difficulty scores keyed by sample_id: ``.npz`` (arrays ``sample_id``,
    ``score`` and optionally ``bin``) or ``.json`` (``{"sample_id": [...], "score": [...],
    "bin": [...]}``; NaN written as null). Written under a temporary name and renamed."""
    from pathlib import Path

    from posecurator.fileio import atomic_savez, atomic_write_json

    path = Path(path)
    sample_id = np.asarray(sample_id, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if sample_id.shape != scores.shape or sample_id.ndim != 1:
        raise ValueError(f"sample_id {sample_id.shape} and scores {scores.shape} must be equal (N,)")
    arrays = {"sample_id": sample_id, "score": scores}
    if bins is not None:
        arrays["bin"] = np.asarray(bins, dtype=np.int64)
    if path.suffix == ".npz":
        atomic_savez(path, **arrays)
    elif path.suffix == ".json":
        doc = {k: [None if (isinstance(x, float) and not np.isfinite(x)) else x for x in v.tolist()]
               for k, v in arrays.items()}
        atomic_write_json(path, doc, indent=None)
    else:
        raise ValueError(f"{path}: score files are .npz or .json")


def load_scores(path) -> tuple[np.ndarray, np.ndarray]:
    """Read a score file -> (sample_id (M,) int64, score (M,) float64).

    Accepts what :func:`save_scores` writes, a JSON object ``{"<sample_id>": score, ...}``, and a
    ``.npy`` array of shape (M, 2) holding (sample_id, score) rows.
    """
    import json
    import zipfile
    from pathlib import Path

    from posecurator.errors import DataError

    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if "sample_id" not in z.files or ("score" not in z.files and "scores" not in z.files):
                    raise DataError(path, "score file needs arrays 'sample_id' and 'score'")
                ids, sc = z["sample_id"], z["score" if "score" in z.files else "scores"]
        elif path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.ndim != 2 or arr.shape[1] != 2:
                raise DataError(path, f"a .npy score file must be (M, 2) rows of (sample_id, score), got {arr.shape}")
            ids, sc = arr[:, 0], arr[:, 1]
        elif path.suffix == ".json":
            doc = json.loads(path.read_text())
            if isinstance(doc, dict) and "sample_id" in doc:
                ids, sc = doc["sample_id"], doc.get("score", doc.get("scores"))
                if sc is None:
                    raise DataError(path, "score file has 'sample_id' but no 'score' list")
            elif isinstance(doc, dict):
                ids, sc = [int(k) for k in doc], list(doc.values())
            else:
                raise DataError(path, "score JSON must be an object")
            sc = [np.nan if v is None else v for v in sc]
        else:
            raise DataError(path, "score files are .npz, .npy or .json")
        ids = np.asarray(ids)
        sc = np.asarray(sc, dtype=np.float64)
    except (OSError, ValueError, zipfile.BadZipFile, json.JSONDecodeError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(path, f"cannot read scores: {e}") from None
    if ids.shape != sc.shape or ids.ndim != 1:
        raise DataError(path, f"sample_id ({ids.shape}) and score ({sc.shape}) lists differ in length")
    if ids.size and not np.all(np.equal(np.mod(ids, 1), 0)):
        raise DataError(path, "sample ids must be integers")
    return ids.astype(np.int64), sc


def align_scores(sample_id, score_ids, scores, *, path=None) -> np.ndarray:
    """Scores for ``sample_id`` (N,) looked up in (``score_ids``, ``scores``): (N,) float64.
    Raises DataError naming the first sample id that has no score."""
    from posecurator.errors import DataError

    sample_id = np.asarray(sample_id, dtype=np.int64)
    score_ids = np.asarray(score_ids, dtype=np.int64)
    if len(score_ids) == len(sample_id) and np.array_equal(score_ids, sample_id):
        # the usual case (scored from this set, in its order): no lookup tables, 8 bytes a pose
        return np.asarray(scores, dtype=np.float64)
    order = np.argsort(score_ids, kind="stable")
    sorted_ids = score_ids[order]
    pos = np.clip(np.searchsorted(sorted_ids, sample_id), 0, max(len(sorted_ids) - 1, 0))
    found = (len(sorted_ids) > 0) & (sorted_ids[pos] == sample_id) if len(sorted_ids) else np.zeros(len(sample_id), bool)
    if not np.all(found):
        missing = sample_id[~found]
        raise DataError(path, f"no score for {len(missing)} of {len(sample_id)} samples (first sample_id {int(missing[0])}); "
                              "were the scores computed on this data set?")
    return np.asarray(scores, dtype=np.float64)[order[pos]]
