"""Evolution operators, their per-pose references, the joint-angle prior and the generation loop,
on real HDM05 poses of actor bd (the prior is fitted on some takes and checked on held-out takes)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from posecurator.augment import (
    EvolutionConfig,
    JointAnglePrior,
    OperatorConfig,
    draw_generation,
    evolve,
    evolve_generation,
)
from posecurator.augment import operators as ops
from posecurator.augment import reference as ref
from posecurator.augment.plausibility import LIMBS, cube_cell_centres, cube_cells
from posecurator.poseset import PoseSet
from posecurator.skeleton import H36M17


def _load_bd(shared_data):
    """Actor bd of HDM05: every take but the last of each motion (fit), the last takes (held out)."""
    from posecurator.io import import_path

    root = shared_data / "hdm05"
    rows = [r for r in csv.DictReader(open(root / "index.csv")) if r["actor"] == "bd"]
    last = {}
    for r in rows:
        last[r["motion"]] = max(last.get(r["motion"], ""), r["take"])
    fit, held = [], []
    for r in rows:
        ps = import_path(root / "amc" / f"{r['file']}.gz", progress=False)
        (held if r["take"] == last[r["motion"]] else fit).append(ps)
    return PoseSet.concatenate(fit, renumber=True), PoseSet.concatenate(held, renumber=True)


@pytest.fixture(scope="module")
def bd(shared_data):
    return _load_bd(shared_data)


@pytest.fixture(scope="module")
def fit_set(bd):
    return bd[0]


@pytest.fixture(scope="module")
def held_out(bd):
    return bd[1]


@pytest.fixture(scope="module")
def prior(fit_set):
    return JointAnglePrior().fit(fit_set)


@pytest.fixture(scope="module")
def pop(fit_set):
    """A few hundred real poses spread over every clip."""
    return fit_set.joints3d[::7].astype(np.float64)


def _dirs(b):
    return b / np.linalg.norm(b, axis=-1, keepdims=True)


# ---------------------------------------------------------------------- representation and frames
def test_bones_round_trip(pop):
    bones = ops.to_bones(pop)
    np.testing.assert_allclose(ops.from_bones(bones), pop, atol=1e-9)
    np.testing.assert_allclose(bones[:, 0], pop[:, 0])
    np.testing.assert_allclose(bones[:, 2], pop[:, 2] - pop[:, 1])
    assert H36M17.is_topological


def test_frames_are_rotations_and_match_reference(pop):
    F = ops.frames(pop[:50])
    eye = np.broadcast_to(np.eye(3), F.shape)
    np.testing.assert_allclose(F @ np.swapaxes(F, -1, -2), eye, atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(F), 1.0, atol=1e-9)
    ref_frames = np.array([ref.pose_frames(b) for b in ops.to_bones(pop[:50])])
    np.testing.assert_allclose(F, ref_frames, atol=1e-9)
    local = ops.local_directions(ops.to_bones(pop[:50]))
    ref_local = np.array([ref.pose_local_directions(b) for b in ops.to_bones(pop[:50])])
    np.testing.assert_allclose(local, ref_local, atol=1e-9)


def test_pelvis_frame_points_right_forward_up(pop):
    F = ops.frames(pop)[:, 0]  # pelvis frame rows: right, forward, up
    right = pop[:, H36M17.index("right_hip")] - pop[:, H36M17.index("left_hip")]
    assert np.all(np.einsum("nc,nc->n", F[:, 0], right) > 0)
    assert np.mean(F[:, 2, 2] > 0.5) > 0.7  # mostly upright people: the pelvis "up" points up


# ---------------------------------------------------------------------- operators
def test_crossover_keeps_lengths_and_transplants_the_local_pose(pop):
    rng = np.random.default_rng(0)
    n = len(pop)
    b_rows = rng.permutation(n)
    joint = np.asarray(ops.LIMB_JOINTS)[rng.integers(0, len(ops.LIMB_JOINTS), n)]
    child = ops.crossover(pop, pop[b_rows], joint)
    np.testing.assert_allclose(ops.bone_lengths(child), ops.bone_lengths(pop), atol=1e-6)
    cb, ab, bb = ops.to_bones(child), ops.to_bones(pop), ops.to_bones(pop[b_rows])
    local_c, local_b = ops.local_directions(cb), ops.local_directions(bb)
    for i in range(n):
        sub = ops.SUBTREE_MASK[joint[i]]
        np.testing.assert_allclose(cb[i, 1:][~sub[1:]], ab[i, 1:][~sub[1:]], atol=1e-9)  # outside: A's
        np.testing.assert_allclose(local_c[i, sub], local_b[i, sub], atol=1e-9)  # inside: B's local pose


def test_limb_mutation_is_a_rigid_rotation_of_the_subtree(pop):
    rng = np.random.default_rng(1)
    draws = ops.draw_limb_mutation(rng, len(pop), sigma_deg=30.0)
    child = ops.limb_mutation(pop, draws, ground=False)
    np.testing.assert_allclose(ops.bone_lengths(child), ops.bone_lengths(pop), atol=1e-6)
    for i in range(0, len(pop), 5):
        j = draws.joint[i]
        sub = H36M17.subtree(int(j)) + [H36M17.parents[j]]
        d0 = np.linalg.norm(pop[i, sub][:, None] - pop[i, sub][None], axis=-1)
        d1 = np.linalg.norm(child[i, sub][:, None] - child[i, sub][None], axis=-1)
        np.testing.assert_allclose(d1, d0, atol=1e-6)
        rest = [k for k in range(17) if k not in H36M17.subtree(int(j))]
        np.testing.assert_allclose(child[i, rest], pop[i, rest], atol=1e-9)


def test_global_rotation_is_rigid_and_keeps_the_pelvis(pop):
    rng = np.random.default_rng(2)
    draws = ops.draw_global_rotation(rng, len(pop), yaw_deg=180.0, tilt_deg=10.0)
    child = ops.global_rotation(pop, draws)
    d0 = np.linalg.norm(pop[:, :, None] - pop[:, None], axis=-1)
    d1 = np.linalg.norm(child[:, :, None] - child[:, None], axis=-1)
    np.testing.assert_allclose(d1, d0, atol=1e-6)
    np.testing.assert_allclose(child[:, 0, :2], pop[:, 0, :2], atol=1e-9)
    # yaw only: heights do not change at all
    draws.tilt[:] = 0.0
    flat = ops.global_rotation(pop, draws)
    np.testing.assert_allclose(flat[:, :, 2], pop[:, :, 2], atol=1e-9)


def test_bone_length_mutation_changes_only_lengths(pop):
    rng = np.random.default_rng(3)
    draws = ops.draw_bone_length(rng, len(pop), scale=0.1, symmetric=True)
    child = ops.bone_length_mutation(pop, draws, ground=False)
    b0, b1 = ops.to_bones(pop), ops.to_bones(child)
    np.testing.assert_allclose(_dirs(b1[:, 1:]), _dirs(b0[:, 1:]), atol=1e-9)
    np.testing.assert_allclose(ops.bone_lengths(child)[:, 1:], ops.bone_lengths(pop)[:, 1:] * draws.factor[:, 1:], rtol=1e-9)
    for a, b in H36M17.flip_pairs:  # left and right twins grow alike
        np.testing.assert_array_equal(draws.factor[:, a], draws.factor[:, b])
    assert np.all(np.abs(draws.factor - 1) <= 0.1 + 1e-12)


def test_children_stand_where_their_first_parent_stood(pop):
    rng = np.random.default_rng(4)
    draws = draw_generation(rng, len(pop), 500)
    child = ops.make_children(pop, draws)
    parent = pop[draws.parent]
    np.testing.assert_allclose(child[:, :, 2].min(axis=1), parent[:, :, 2].min(axis=1), atol=1e-9)


@pytest.mark.parametrize("dtype,atol", [(np.float64, 1e-9), (np.float32, 5e-2)])
def test_batched_children_equal_the_per_pose_reference(pop, dtype, atol):
    rng = np.random.default_rng(5)
    draws = draw_generation(rng, len(pop), 400, OperatorConfig(crossover_rate=0.6, limb_rate=0.6, bone_length_rate=0.4,
                                                                global_rate=0.4, limb_sigma_deg=40))
    batched = ops.from_soa(ops.make_children_soa(pop, draws, dtype=dtype), np.float64)
    reference = ref.make_children_reference(pop, draws)
    np.testing.assert_allclose(batched, reference, atol=atol)
    # each operator alone, too
    np.testing.assert_allclose(ops.crossover(pop[:50], pop[50:100], draws.crossover.joint[:50]),
                               np.array([ref.reground_pose(ref.bones_to_pose(ref.crossover_pose(ref.pose_to_bones(a), ref.pose_to_bones(b), j)), a)
                                         for a, b, j in zip(pop[:50], pop[50:100], draws.crossover.joint[:50])]), atol=1e-9)


def test_every_child_has_an_operator_and_the_names_are_combinations(pop):
    draws = draw_generation(np.random.default_rng(6), len(pop), 2000)
    assert draws.applied.any(axis=1).all()
    names = set(draws.operator.tolist())
    assert names <= {"+".join(c) for c in _combinations(ops.OPERATOR_NAMES)}
    assert np.all((draws.partner >= 0) == draws.applied[:, 0])
    assert np.all(draws.partner[draws.applied[:, 0]] != draws.parent[draws.applied[:, 0]])


def _combinations(names):
    out = []
    for code in range(1, 1 << len(names)):
        out.append([n for i, n in enumerate(names) if code >> i & 1])
    return out


def test_operator_config_rejects_bad_values():
    with pytest.raises(ValueError):
        OperatorConfig(crossover_rate=1.5)
    with pytest.raises(ValueError):
        OperatorConfig(limb_joints=(0, 2))
    with pytest.raises(ValueError):
        ops.to_bones(np.zeros((3, 16, 3)))


# ---------------------------------------------------------------------- plausibility
def test_cube_cells_are_consistent_with_their_centres():
    for res in (4, 8):
        centres = cube_cell_centres(res)
        np.testing.assert_array_equal(cube_cells(centres, res), np.arange(6 * res * res))
        v = np.random.default_rng(0).normal(size=(2000, 3))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        assert [ref.cube_cell_direction(x, res) for x in v] == cube_cells(v, res).tolist()


def test_prior_accepts_held_out_poses_of_the_same_actor(prior, held_out):
    assert prior.check(held_out).mean() >= 0.99
    assert prior.check(held_out, min_valid_limbs=5).mean() == 1.0


def test_prior_rejects_random_bone_directions(prior, held_out):
    bones = ops.to_bones(held_out.joints3d)
    rng = np.random.default_rng(7)
    directions = rng.normal(size=bones[:, 1:].shape)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    bones[:, 1:] = directions * np.linalg.norm(bones[:, 1:], axis=-1, keepdims=True)
    random_poses = ops.from_bones(bones)  # the actor's own bone lengths, random directions
    assert 1.0 - prior.check(random_poses).mean() >= 0.95
    # even one random limb is caught most of the time
    valid = prior.is_valid(random_poses)
    assert valid[:, 1:].mean() < 0.5


def test_prior_checks_bone_length_ratios(prior, held_out):
    joints = held_out.joints3d[:100].astype(np.float64)
    bones = ops.to_bones(joints)
    bones[:, H36M17.index("left_elbow")] *= 1.6  # a 60% longer upper arm
    valid = prior.is_valid(ops.from_bones(bones))
    assert not valid[:, H36M17.index("left_elbow")].any()
    assert not prior.check(ops.from_bones(bones)).any()


def test_prior_matches_its_reference_and_float32(prior, fit_set, pop):
    children = ops.make_children(pop, draw_generation(np.random.default_rng(8), len(pop), 600,
                                                       OperatorConfig(limb_sigma_deg=45)))
    p64 = JointAnglePrior(dtype="float64").fit(fit_set)
    expected = ref.is_valid_reference(p64, children)
    np.testing.assert_array_equal(p64.is_valid(children), expected)
    np.testing.assert_array_equal(p64.check(children), ref.check_reference(p64, children))
    assert (prior.is_valid(children) != expected).mean() < 1e-3  # float32: at most a cell border apart
    limbs = p64.limb_validity(children)
    assert limbs.shape == (len(children), len(LIMBS))


def test_prior_min_valid_limbs_and_errors(prior, pop):
    children = ops.make_children(pop, draw_generation(np.random.default_rng(9), len(pop), 600, OperatorConfig(limb_sigma_deg=60)))
    counts = [prior.check(children, min_valid_limbs=k).sum() for k in range(7)]
    assert counts == sorted(counts, reverse=True) and counts[0] == len(children)
    with pytest.raises(ValueError):
        prior.check(children, min_valid_limbs=7)
    with pytest.raises(RuntimeError):
        JointAnglePrior().check(children)


def test_prior_save_load(prior, held_out, tmp_path):
    path = prior.save(tmp_path / "prior.npz")
    loaded = JointAnglePrior.load(path)
    np.testing.assert_array_equal(loaded.check(held_out), prior.check(held_out))
    assert loaded.resolution == prior.resolution and loaded.n_fit_ == prior.n_fit_


# ---------------------------------------------------------------------- evolution
@pytest.fixture(scope="module")
def small_original(fit_set):
    return fit_set.subset(slice(0, None, 3))


def test_full_augmentation_reaches_t_times_the_data(small_original, prior):
    aug, stats = evolve(small_original, prior=prior, config=EvolutionConfig(multiple=5.0, seed=0), progress=False)
    n = len(small_original)
    assert len(aug) == round(5 * n) - n
    assert 2 <= len(stats) <= 5
    assert sum(s.kept for s in stats) >= len(aug)
    for s in stats:
        assert s.made == s.kept + s.rejected and 0.0 <= s.rejection_rate < 0.5
        assert sum(v for k, v in s.operators.items() if not k.startswith("_")) == s.made


def test_lineage(small_original, prior):
    aug, stats = evolve(small_original, prior=prior, config=EvolutionConfig(multiple=3.0, seed=1), progress=False)
    ids = np.concatenate([small_original.sample_id, aug.sample_id])
    assert len(np.unique(ids)) == len(ids)
    assert aug.sample_id.min() == small_original.sample_id.max() + 1
    by_id = {int(i): k for k, i in enumerate(ids)}
    all_joints = np.concatenate([small_original.joints3d, aug.joints3d])
    all_gen = np.concatenate([small_original.generation, aug.generation])
    crossed = np.char.find(aug.operator.astype(str), "crossover") >= 0
    assert np.all((aug.parents[:, 1] >= 0) == crossed)
    assert set(np.unique(aug.generation).tolist()) == set(range(1, len(stats) + 1))
    for k in range(0, len(aug), 11):
        a = by_id[int(aug.parents[k, 0])]
        assert all_gen[a] < aug.generation[k]  # parents come from earlier generations
        if aug.parents[k, 1] >= 0:
            assert all_gen[by_id[int(aug.parents[k, 1])]] < aug.generation[k]
        if "bone_length" not in aug.operator[k]:  # every other operator keeps the first parent's lengths
            np.testing.assert_allclose(ops.bone_lengths(aug.joints3d[k:k + 1]), ops.bone_lengths(all_joints[a:a + 1]), atol=0.05)
        np.testing.assert_allclose(aug.joints3d[k, :, 2].min(), all_joints[a, :, 2].min(), atol=0.05)
    assert np.all(aug.subject == small_original.subject[0])


def test_seeded_reproducibility(small_original, prior):
    cfg = EvolutionConfig(multiple=2.0, seed=3)
    a, _ = evolve(small_original, prior=prior, config=cfg, progress=False)
    b, _ = evolve(small_original, prior=prior, config=cfg, progress=False)
    c, _ = evolve(small_original, prior=prior, config=EvolutionConfig(multiple=2.0, seed=4), progress=False)
    np.testing.assert_array_equal(a.joints3d, b.joints3d)
    np.testing.assert_array_equal(a.parents, b.parents)
    assert not np.array_equal(a.joints3d, c.joints3d)


def test_evolve_generation_step_and_rejections(small_original, prior):
    rng = np.random.default_rng(0)
    wild = EvolutionConfig(operators=OperatorConfig(limb_rate=1.0, limb_sigma_deg=90.0))
    children, st = evolve_generation(small_original, n_children=2000, rng=rng, config=wild, prior=prior)
    assert st.made == 2000 and st.kept == len(children) and st.rejected > 200  # wild mutations get caught
    assert np.all(prior.check(children))
    assert np.all(children.generation == 1)
    nxt, st2 = evolve_generation(PoseSet.concatenate([small_original, children]), n_children=100, rng=rng, prior=prior)
    assert np.all(nxt.generation == 2) and nxt.sample_id.min() > children.sample_id.max()
    none, st3 = evolve_generation(small_original, n_children=300, rng=rng, prior=None)
    assert st3.rejected == 0 and len(none) == 300


def test_population_with_2d_still_evolves(small_original, prior):
    with_2d = small_original.replace(joints2d=small_original.joints3d[:, :, :2])
    aug, _ = evolve(with_2d, prior=prior, config=EvolutionConfig(multiple=1.5), progress=False)
    assert aug.joints2d is None and len(aug) == round(1.5 * len(with_2d)) - len(with_2d)
    with pytest.raises(ValueError):
        EvolutionConfig(multiple=0.5)
