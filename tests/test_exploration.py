"""How far augmentation explores (posecurator.augment.exploration), on real HDM05 poses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from posecurator.augment import JointAnglePrior
from posecurator.augment import exploration as ex
from posecurator.augment.evolution import EvolutionConfig, evolve
from posecurator.augment.operators import OperatorConfig


@pytest.fixture(scope="module")
def poses(shared_data):
    from posecurator.io import import_path

    amc = shared_data / "hdm05" / "amc"
    if not amc.is_dir():
        pytest.skip(f"{amc} is absent")
    from posecurator.poseset import PoseSet

    files = sorted(amc.iterdir())[::20][:8]
    return PoseSet.concatenate([import_path(p, progress=False) for p in files], renumber=True)


def _reference(child: np.ndarray, parent: np.ndarray, yaw: np.ndarray, elev: np.ndarray) -> tuple[float, float, float]:
    """One pair, plain loops: (joint_angle_deg, pose_mm, view_2d)."""
    from posecurator.augment.operators import PARENTS, local_directions, to_bones

    dc = local_directions(to_bones(child[None]))[0]
    dp = local_directions(to_bones(parent[None]))[0]
    angles = [math.degrees(math.atan2(float(np.linalg.norm(np.cross(dc[j], dp[j]))), float(dc[j] @ dp[j])))
              for j in range(1, 17)]

    def canonical(p):
        p = p - p[0]
        hip = p[1] - p[4]
        a = -math.atan2(hip[1], hip[0])
        rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        return p @ rot.T

    pose_mm = float(np.mean([np.linalg.norm(a - b) for a, b in zip(canonical(child), canonical(parent))]))
    views = []
    for y, e in zip(yaw, elev):
        def proj(p):
            p = p - p[0]
            out = []
            for x in p:
                u = -math.sin(y) * x[0] + math.cos(y) * x[1]
                depth = math.cos(y) * x[0] + math.sin(y) * x[1]
                out.append((u, math.cos(e) * x[2] - math.sin(e) * depth))
            return np.array(out)

        pc, pp = proj(child), proj(parent)
        radius = math.sqrt(np.mean(np.sum(pp ** 2, axis=1)))
        views.append(np.mean(np.linalg.norm(pc - pp, axis=1)) / radius)
    assert len(PARENTS) == 17
    return float(max(angles)), pose_mm, float(np.mean(views))


def test_batched_distances_agree_with_the_plain_reference(poses):
    rng = np.random.default_rng(0)
    i = rng.choice(len(poses), size=12, replace=False)
    j = rng.choice(len(poses), size=12, replace=False)
    a, b = poses.joints3d[i].astype(np.float64), poses.joints3d[j].astype(np.float64)
    got = ex.child_parent_distances(a, b, n_views=3, seed=5)
    yaw, elev = ex.view_directions(3, 5)
    for k in range(12):
        want = _reference(a[k], b[k], yaw, elev)
        assert np.allclose([got[m][k] for m in ex.MEASURES], want, rtol=1e-6, atol=1e-6)
    same = ex.child_parent_distances(a, a)
    assert all(np.allclose(same[m], 0.0, atol=1e-6) for m in ex.MEASURES)


def test_each_measure_sees_what_it_should(poses):
    """Bone-length changes leave joint angles alone; a turn about the vertical leaves the pose
    measures alone but changes the 2D a camera sees; larger limb mutations move children farther."""
    from posecurator.augment.operators import bone_lengths

    ps = poses.subset(np.arange(0, len(poses), 50))
    x = ps.joints3d.astype(np.float64)
    root = x[:, :1]
    c, s = math.cos(0.7), math.sin(0.7)
    turned = (x - root) @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]).T + root
    d = ex.child_parent_distances(turned, x)
    assert np.allclose(d["joint_angle_deg"], 0, atol=1e-4) and np.allclose(d["pose_mm"], 0, atol=1e-6)
    assert d["view_2d"].mean() > 0.1
    scaled = root + (x - root) * 1.1
    d = ex.child_parent_distances(scaled, x)
    assert np.allclose(d["joint_angle_deg"], 0, atol=1e-4) and d["pose_mm"].mean() > 10
    assert bone_lengths(scaled).mean() > bone_lengths(x).mean()

    medians = []
    for sigma in (10.0, 40.0):
        cfg = EvolutionConfig(seed=0, operators=OperatorConfig(crossover_rate=0, limb_rate=1, bone_length_rate=0,
                                                               global_rate=0, limb_sigma_deg=sigma))
        aug, stats = evolve(ps, prior=None, config=cfg, target_size=2 * len(ps), progress=False)
        summary = ex.exploration_summary(aug, ps, stats)
        medians.append(summary["all"]["joint_angle_deg"]["median"])
    assert medians[1] > 2 * medians[0]


def test_summary_counts_rejections_per_operator(poses):
    prior = JointAnglePrior().fit(poses)
    aug, stats = evolve(poses, prior=prior, config=EvolutionConfig(seed=1), target_size=int(1.5 * len(poses)),
                        progress=False)
    summary = ex.exploration_summary(aug, poses, stats)
    rows = summary["by_operator"]
    assert sum(r["kept"] for r in rows.values()) == len(aug) == summary["all"]["kept"]
    assert sum(r["made"] for r in rows.values()) == sum(st.made for st in stats) == summary["all"]["made"]
    for r in rows.values():
        assert 0.0 <= r["rejection_rate"] <= 1.0 and r["kept"] <= r["made"]
    kept = sum(sum(st.operators_kept.values()) for st in stats)
    assert kept >= len(aug)  # the last generation is cut to the target
    assert math.isclose(summary["all"]["rejection_rate"], 1 - kept / summary["all"]["made"])


def test_parents_are_found_through_generations_and_missing_ones_are_named(poses):
    ps = poses.subset(np.arange(0, len(poses), 40))
    aug, _ = evolve(ps, prior=None, config=EvolutionConfig(seed=2, population="last"), target_size=4 * len(ps),
                    progress=False)
    assert aug.generation.max() > aug.generation.min()  # children of children
    parents = ex.first_parents_of(aug, ps)
    assert parents.shape == aug.joints3d.shape
    with pytest.raises(ValueError, match="name a parent"):
        ex.first_parents_of(aug.subset(aug.generation == aug.generation.max()), ps)
    with pytest.raises(ValueError, match=r"\(N, 17, 3\)"):
        ex.child_parent_distances(aug.joints3d[:3], aug.joints3d[:2])
