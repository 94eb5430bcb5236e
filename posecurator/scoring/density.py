"""ADD's diversity term: how probable a pose is under the reference distribution of the original data.

The paper (AugData Distillation, Sec. 3.2, Eq. 1): each pose is a 51-d vector (17 joints x 3),
reduced to 2-d by PCA; a variational Bayesian Gaussian mixture with a Dirichlet-process prior
(which prunes unneeded components itself) approximates the reference distribution of the original
training poses, fitted once and never updated; ``prob_i = p(V_i | theta_D)`` and a low value
means the augmented pose is unlike the original ones. The score combines ``1 - prob_i`` with a
normalised lifter error, so ``prob`` must lie in [0, 1]; the paper does not say how a density is
brought there. Here:

* ``normalization="rank"`` (default): ``prob`` = the fraction of reference poses whose density is
  at most this pose's density (the probability mass of the reference that is *less* typical than
  the pose, i.e. a density-level-set p-value). A pose as dense as the densest reference pose has
  prob 1, one less dense than every reference pose has prob 0; reference poses are spread
  uniformly over [0, 1], so the term mixes on an equal footing with a [0, 1] error.
* ``normalization="max"``: ``prob`` = density / the largest density over the reference poses,
  clipped to [0, 1].

Poses are taken root-relative (pelvis at the origin) and, by default, turned about the vertical
axis so the hips face the same way (``canonical_yaw``): training cameras are sampled at every
azimuth, so which way a person faces in the world says nothing about the 2D-3D pair, and without
it the 2-d PCA would spend itself on facing direction.

Direction: :meth:`DensityScorer.score_samples` returns ``1 - prob`` in [0, 1]; **higher = less
probable under the reference = more novel**.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from posecurator.poseset import joints3d_of
from posecurator.scoring.base import PoseScorer, register_scorer
from posecurator.skeleton.canonical import pose_features  # moved down a layer; still importable from here

_CHUNK = 16384


def _joints(poses) -> np.ndarray:
    return joints3d_of(poses, purpose="the density scorer")


def mixture_log_density(V: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """log sum_k w_k N(V | mu_k, Sigma_k) for points V (N, D), weights (K,), means (K, D),
    full covariances (K, D, D) -> (N,)."""
    V = np.asarray(V, dtype=np.float64)
    d = V.shape[1]
    terms = np.empty((len(V), len(weights)))
    for k in range(len(weights)):  # a handful of components; each is one batched pass
        chol = np.linalg.cholesky(covariances[k])
        z = np.linalg.solve(chol, (V - means[k]).T)  # (D, N): whitened offsets
        log_det = 2.0 * np.log(np.diag(chol)).sum()
        with np.errstate(divide="ignore"):
            terms[:, k] = np.log(weights[k]) - 0.5 * (d * np.log(2 * np.pi) + log_det + (z * z).sum(axis=0))
    top = terms.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(terms - top).sum(axis=1, keepdims=True)))[:, 0]


@register_scorer("density")
class DensityScorer(PoseScorer):
    """1 - probability of each pose under a PCA(2) + Dirichlet-process Bayesian GMM of the reference.

    Options: ``n_components`` upper bound on mixture components (the DP prior leaves unused ones
    with ~0 weight); ``normalization`` "rank" or "max" (module docstring); ``canonical_yaw``;
    ``max_fit_samples`` reference poses used for the fit (a seeded random subset above that; the
    rank table uses all reference poses); ``seed``; ``max_iter``.

    Learned: ``pca_`` (sklearn PCA), ``gmm_`` (sklearn BayesianGaussianMixture),
    ``reference_log_density_`` sorted (M,) log densities of the reference poses,
    ``max_log_density_``.
    """

    higher_means = "less probable under the reference distribution (1 - prob): more novel"
    score_range = (0.0, 1.0)
    # rows scored at a time from the start of the input (a BLAS product's last bits depend on its
    # size): a stream keeps its blocks multiples of it (posecurator.scoring.stream)
    stream_rows = _CHUNK

    def __init__(self, *, n_components: int = 10, normalization: str = "rank", canonical_yaw: bool = True,
                 max_fit_samples: int = 50_000, seed: int = 0, max_iter: int = 300):
        if normalization not in ("rank", "max"):
            raise ValueError(f"normalization must be 'rank' or 'max', got {normalization!r}")
        self.n_components = n_components
        self.normalization = normalization
        self.canonical_yaw = canonical_yaw
        self.max_fit_samples = max_fit_samples
        self.seed = seed
        self.max_iter = max_iter

    def fit(self, reference) -> "DensityScorer":
        """Fit PCA and the mixture on reference poses (PoseSet or (N, 17, 3) mm), once."""
        from threadpoolctl import threadpool_limits

        # The mixture's EM loop makes thousands of tiny BLAS calls; with a multi-threaded BLAS on
        # a busy 2-core machine each one waits for idle threads (10x slower fit). One thread.
        with threadpool_limits(limits=1):
            return self._fit(reference)

    def _fit(self, reference) -> "DensityScorer":
        from sklearn.decomposition import PCA
        from sklearn.mixture import BayesianGaussianMixture

        joints = _joints(reference)
        if len(joints) < 3:
            raise ValueError(f"the density scorer needs at least 3 reference poses, got {len(joints)}")
        X = pose_features(joints, canonical_yaw=self.canonical_yaw)
        rng = np.random.default_rng(self.seed)
        fit_rows = np.sort(rng.choice(len(X), self.max_fit_samples, replace=False)) if len(X) > self.max_fit_samples else slice(None)
        self.pca_ = PCA(n_components=2, random_state=self.seed).fit(X[fit_rows])
        V = self.pca_.transform(X[fit_rows])
        self.gmm_ = BayesianGaussianMixture(
            n_components=min(self.n_components, len(V)),
            weight_concentration_prior_type="dirichlet_process",
            covariance_type="full",
            max_iter=self.max_iter,
            random_state=self.seed,
        ).fit(V)
        self.reference_log_density_ = np.sort(self.log_density(joints))
        self.max_log_density_ = float(self.reference_log_density_[-1])
        return self

    def embed(self, poses) -> np.ndarray:
        """(N, 2) PCA coordinates (the 2-d map of the paper's reference distribution)."""
        self._check_fitted("pca_")
        return self.pca_.transform(pose_features(_joints(poses), canonical_yaw=self.canonical_yaw))

    def log_density(self, poses) -> np.ndarray:
        """(N,) log p(V_i | theta_D) of the 2-d embeddings under the fitted mixture.

        The plug-in density sum_k w_k N(V | mu_k, Sigma_k) with the posterior-mean weights, means
        and covariances (``gmm_.score_samples`` of a *Bayesian* mixture returns a variational
        expected log-likelihood instead, which is not a density).
        """
        self._check_fitted("gmm_")
        joints = _joints(poses)
        g = self.gmm_
        out = np.empty(len(joints))
        for start in range(0, len(joints), _CHUNK):  # chunks keep the (n, 51) features in cache
            V = self.pca_.transform(pose_features(joints[start:start + _CHUNK], canonical_yaw=self.canonical_yaw))
            out[start:start + _CHUNK] = mixture_log_density(V, g.weights_, g.means_, g.covariances_)
        return out

    def probability(self, poses) -> np.ndarray:
        """(N,) prob_i in [0, 1] (normalised as ``normalization`` says); higher = more typical."""
        self._check_fitted("reference_log_density_")
        logp = self.log_density(poses)
        if self.normalization == "max":
            return np.exp(np.minimum(logp - self.max_log_density_, 0.0))
        ref = self.reference_log_density_
        return np.searchsorted(ref, logp, side="right") / len(ref)

    def score_samples(self, poses) -> np.ndarray:
        """(N,) 1 - prob_i in [0, 1]; higher = less probable under the reference = more novel."""
        return 1.0 - self.probability(poses)


def score_samples_reference(scorer: DensityScorer, poses) -> np.ndarray:
    """Per-pose loop twin of :meth:`DensityScorer.score_samples` (tests and the speed benchmark)."""
    scorer._check_fitted("gmm_")
    joints = np.asarray(_joints(poses), dtype=np.float64)
    mean, comps = scorer.pca_.mean_, scorer.pca_.components_
    gmm = scorer.gmm_
    log_w = np.log(gmm.weights_)
    inv = [np.linalg.inv(c) for c in gmm.covariances_]
    logdet = [math.log(np.linalg.det(c)) for c in gmm.covariances_]
    ref = scorer.reference_log_density_.tolist()
    out = np.empty(len(joints))
    for i, pose in enumerate(joints):
        x = pose - pose[0]
        if scorer.canonical_yaw:
            h = x[1] - x[4]
            yaw = math.atan2(h[1], h[0])
            c, s = math.cos(yaw), math.sin(yaw)
            x = np.array([[c * p[0] + s * p[1], -s * p[0] + c * p[1], p[2]] for p in x])
        v = comps @ (x.reshape(-1) - mean)
        terms = []
        for k in range(len(log_w)):
            d = v - gmm.means_[k]
            terms.append(log_w[k] - 0.5 * (2 * math.log(2 * math.pi) + logdet[k] + float(d @ inv[k] @ d)))
        m = max(terms)
        logp = m + math.log(sum(math.exp(t - m) for t in terms))
        if scorer.normalization == "max":
            prob = math.exp(min(logp - scorer.max_log_density_, 0.0))
        else:
            prob = bisect.bisect_right(ref, logp) / len(ref)
        out[i] = 1.0 - prob
    return out
