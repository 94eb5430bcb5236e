"""The code transformer of PoseSyn's motion model: a causal (GPT) transformer over VQ-VAE code
indices conditioned on a caption's text embedding AND on the codes of the mis-predicted pose held
still (PoseSyn Eq. 5: p(S_C | e_text, S_MR) = prod_i p(s_i | e_text, S_MR, s_<i); T2M-GPT's
``Text2Motion_Transformer`` with the initial-motion codes added to its prefix).

Sequence fed to the transformer (width W)::

    [ text | init_1 ... init_M | BOS | s_1 ... s_{n-1} ]   ->   predicts s_1 ... s_n

* text: the (384-d, unit) text embedding through a linear layer, or the learned "no text" vector;
* init_m: the M initial-motion codes S_MR through their own embedding table (plus, with
  ``code_dim``, a projection of the VQ-VAE's code vectors of those codes, copied in with
  :meth:`MotionTransformer.set_code_vectors`) plus their own position embedding, or the learned
  "no init" vector (plus the same positions);
* BOS and s_i: the motion-code embedding (K codes + BOS) plus a position embedding (0 .. max_codes-1).

Pre-LayerNorm blocks (causal self-attention + GELU MLP x4), a final LayerNorm and a linear head
over the K codes. There is no end token: the caller says how many codes to generate (exact
length control). While training, the trainer replaces the text (probability p_text) and the init
codes (p_init) of random rows by the learned "no text" / "no init" vectors (``text_keep`` /
``init_keep``), so one model also runs without text or without init codes (the ablations).

Sampling (:meth:`MotionTransformer.sample`) is batched over N rows with a key/value cache; each
step keeps the ``top_k`` most likely codes, divides their logits by ``temperature`` and draws one
by inverse-CDF sampling from uniforms drawn up front as ``torch.rand(N, n_codes, generator=g)``;
:meth:`MotionTransformer.sample_reference` does the same one row at a time without a cache (a
full forward per step), consuming the generator identically, so both give the same codes for the
same generator state.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with an optional key/value cache (decoding)."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not a multiple of heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        """x (B, L, W) -> (B, L, W). ``cache``: {"k", "v"} (B, heads, L_past, W / heads) of the
        tokens before these, extended in place; with a past the L new tokens see all of it."""
        b, length, width = x.shape
        q, k, v = self.qkv(x).view(b, length, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        past = 0
        if cache is not None:
            if "k" in cache:
                past = cache["k"].shape[2]
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        if past and length > 1:
            raise ValueError("with a cache, feed one token at a time after the prefix")
        y = F.scaled_dot_product_attention(q, k, v, is_causal=past == 0 and length > 1,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, length, width)))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)); x + mlp(ln(x))."""

    def __init__(self, width: int, heads: int, dropout: float, mlp_ratio: int = 4):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width),
                                 nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


class MotionTransformer(nn.Module):
    """Text- and init-code-conditioned GPT over motion codes (module docstring).

    n_codes: K, the VQ-VAE's codebook size. n_init: M, the number of initial-motion codes.
    max_codes: the longest motion (in codes) it can generate. :meth:`config` gives the keywords.
    """

    def __init__(self, *, n_codes: int, width: int = 256, layers: int = 4, heads: int = 4, text_dim: int = 384,
                 n_init: int = 8, max_codes: int = 16, dropout: float = 0.1, code_dim: int | None = None):
        super().__init__()
        if n_codes < 2 or n_init < 1 or max_codes < 1 or layers < 1:
            raise ValueError(f"bad transformer: n_codes={n_codes} n_init={n_init} max_codes={max_codes} layers={layers}")
        self._config = dict(n_codes=int(n_codes), width=int(width), layers=int(layers), heads=int(heads),
                            text_dim=int(text_dim), n_init=int(n_init), max_codes=int(max_codes), dropout=float(dropout),
                            code_dim=None if code_dim is None else int(code_dim))
        self.n_codes, self.n_init, self.max_codes, self.text_dim = int(n_codes), int(n_init), int(max_codes), int(text_dim)
        self.bos = self.n_codes
        self.text_proj = nn.Linear(text_dim, width)
        self.no_text = nn.Parameter(torch.zeros(width))
        self.init_emb = nn.Embedding(n_codes, width)
        if code_dim is not None:
            # the VQ-VAE's (frozen) code vectors of the init codes, projected: nearby codes give
            # nearby tokens, so the pose information carries over to init codes seldom seen
            self.register_buffer("code_vectors", torch.zeros(n_codes, code_dim))
            self.init_proj = nn.Sequential(nn.LayerNorm(code_dim), nn.Linear(code_dim, width))
        else:
            self.code_vectors, self.init_proj = None, None
        self.init_pos = nn.Parameter(torch.zeros(n_init, width))
        self.no_init = nn.Parameter(torch.zeros(width))
        self.tok_emb = nn.Embedding(n_codes + 1, width)   # the K codes and BOS
        self.pos_emb = nn.Embedding(max_codes, width)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList([Block(width, heads, dropout) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, n_codes, bias=False)
        self.apply(self._init_weights)
        for p in (self.no_text, self.init_pos, self.no_init):
            nn.init.normal_(p, std=0.02)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # GPT-2 / T2M-GPT initialisation
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def config(self) -> dict:
        return dict(self._config)

    @torch.no_grad()
    def set_code_vectors(self, codebook: torch.Tensor) -> None:
        """Copy the VQ-VAE's (K, code_dim) codebook in (models built with ``code_dim``)."""
        if self.code_vectors is None:
            raise ValueError("this transformer was built without code_dim: it does not use code vectors")
        self.code_vectors.copy_(torch.as_tensor(codebook, dtype=self.code_vectors.dtype))

    @property
    def prefix_length(self) -> int:
        """Tokens before BOS: the text token and the M init tokens."""
        return 1 + self.n_init

    # ------------------------------------------------------------------ embeddings
    def _prefix(self, text_emb, init_codes, n: int, text_keep=None, init_keep=None) -> torch.Tensor:
        """(n, 1 + M, W) text token and init tokens; None or a False ``*_keep`` row: the learned
        "no text" / "no init" vectors."""
        width = self.no_text.shape[0]
        device = self.no_text.device
        if text_emb is None:
            text = self.no_text.expand(n, 1, width)
        else:
            text_emb = torch.as_tensor(text_emb, dtype=torch.float32, device=device)
            if text_emb.shape != (n, self.text_dim):
                raise ValueError(f"text_emb must be ({n}, {self.text_dim}), got {tuple(text_emb.shape)}")
            text = self.text_proj(text_emb)[:, None, :]
            if text_keep is not None:
                text = torch.where(torch.as_tensor(text_keep, device=device).view(n, 1, 1), text, self.no_text.view(1, 1, width))
        if init_codes is None:
            init = self.no_init.expand(n, self.n_init, width)
        else:
            init_codes = torch.as_tensor(init_codes, dtype=torch.long, device=device)
            if init_codes.shape != (n, self.n_init):
                raise ValueError(f"init_codes must be ({n}, {self.n_init}), got {tuple(init_codes.shape)}")
            init = self.init_emb(init_codes)
            if self.init_proj is not None:
                init = init + self.init_proj(self.code_vectors[init_codes])
            if init_keep is not None:
                init = torch.where(torch.as_tensor(init_keep, device=device).view(n, 1, 1), init, self.no_init.view(1, 1, width))
        return torch.cat([text, init + self.init_pos[None]], dim=1)

    def _tokens(self, tokens: torch.Tensor, start: int) -> torch.Tensor:
        """(n, L) code/BOS tokens at motion positions start .. start + L - 1 -> (n, L, W)."""
        positions = torch.arange(start, start + tokens.shape[1], device=tokens.device)
        return self.tok_emb(tokens) + self.pos_emb(positions)[None]

    def _run(self, x: torch.Tensor, caches: list[dict] | None = None) -> torch.Tensor:
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, None if caches is None else caches[i])
        return self.ln_f(x)

    # ------------------------------------------------------------------ training
    def forward(self, text_emb, init_codes, codes: torch.Tensor, *, text_keep=None, init_keep=None) -> torch.Tensor:
        """Teacher-forced logits: text_emb (B, 384) or None, init_codes (B, M) or None, codes
        (B, n) long (n <= max_codes) -> (B, n, K) where [:, i] is the distribution of code i
        given the prefix and codes[:, :i]. ``text_keep`` / ``init_keep`` (B,) bool: rows whose
        condition is replaced by the learned "no text" / "no init" vectors (training dropout)."""
        codes = torch.as_tensor(codes, dtype=torch.long, device=self.no_text.device)
        b, n = codes.shape
        if not 1 <= n <= self.max_codes:
            raise ValueError(f"between 1 and {self.max_codes} codes, got {n}")
        prefix = self._prefix(text_emb, init_codes, b, text_keep, init_keep)
        fed = torch.cat([torch.full((b, 1), self.bos, dtype=torch.long, device=codes.device), codes[:, :-1]], dim=1)
        h = self._run(torch.cat([prefix, self._tokens(fed, 0)], dim=1))
        return self.head(h[:, self.prefix_length:])

    # ------------------------------------------------------------------ sampling
    def _check_sampling(self, text_emb, init_codes, n_codes: int, temperature: float, top_k, n: int | None) -> int:
        rows = {len(a) for a in (text_emb, init_codes) if a is not None}
        if not rows:
            if n is None:
                raise ValueError("give text_emb, init_codes or both (or n for unconditional rows)")
            rows = {int(n)}
        if len(rows) > 1:
            raise ValueError(f"text_emb and init_codes have different numbers of rows: {sorted(rows)}")
        if not 1 <= int(n_codes) <= self.max_codes:
            raise ValueError(f"n_codes must be between 1 and {self.max_codes} (the model's max_codes), got {n_codes}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if top_k is not None and int(top_k) < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        return rows.pop()

    def _pick(self, logits: torch.Tensor, u: torch.Tensor, temperature: float, top_k) -> torch.Tensor:
        """(n, K) logits, (n,) uniforms in [0, 1) -> (n,) codes: the top-k codes (sorted, most
        likely first), softmax of their logits / temperature, the first whose CDF exceeds u."""
        k = self.n_codes if top_k is None else min(int(top_k), self.n_codes)
        values, index = logits.float().topk(k, dim=-1)
        cdf = torch.softmax(values.double() / temperature, dim=-1).cumsum(-1)
        choice = torch.searchsorted(cdf, (u.double() * cdf[:, -1])[:, None]).clamp(max=k - 1)
        return index.gather(1, choice)[:, 0]

    @torch.no_grad()
    def sample(self, text_emb, init_codes, *, n_codes: int, temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None, uniforms: torch.Tensor | None = None,
               n: int | None = None) -> torch.Tensor:
        """(N, n_codes) long codes for N rows (batched, key/value cache, eval mode).

        text_emb (N, 384) or None ("no text"), init_codes (N, M) or None ("no init"); for several
        sequences per condition repeat the rows; ``n`` rows when both are None (unconditional).
        n_codes: exactly that many codes are made.
        top_k: keep the k most likely codes (None: all; 1: greedy). Randomness: ``uniforms``
        (N, n_codes) in [0, 1), or drawn as ``torch.rand(N, n_codes, generator=generator)``."""
        n = self._check_sampling(text_emb, init_codes, n_codes, temperature, top_k, n)
        u = _uniforms(uniforms, n, n_codes, generator).to(self.no_text.device)
        was_training = self.training
        self.eval()
        try:
            caches: list[dict] = [{} for _ in self.blocks]
            bos = torch.full((n, 1), self.bos, dtype=torch.long, device=self.no_text.device)
            x = torch.cat([self._prefix(text_emb, init_codes, n), self._tokens(bos, 0)], dim=1)
            out = torch.empty(n, n_codes, dtype=torch.long, device=self.no_text.device)
            for i in range(n_codes):
                h = self._run(x, caches)
                out[:, i] = self._pick(self.head(h[:, -1]), u[:, i], temperature, top_k)
                if i + 1 < n_codes:
                    x = self._tokens(out[:, i:i + 1], i + 1)
            return out
        finally:
            self.train(was_training)

    @torch.no_grad()
    def sample_reference(self, text_emb, init_codes, *, n_codes: int, temperature: float = 1.0,
                         top_k: int | None = None, generator: torch.Generator | None = None,
                         n: int | None = None) -> torch.Tensor:
        """Plain version of :meth:`sample` (tests): one row at a time, a full forward per step,
        no cache; uniforms drawn identically, so the same generator state gives the same codes."""
        n = self._check_sampling(text_emb, init_codes, n_codes, temperature, top_k, n)
        u = _uniforms(None, n, n_codes, generator).to(self.no_text.device)
        was_training = self.training
        self.eval()
        try:
            out = torch.empty(n, n_codes, dtype=torch.long)
            for row in range(n):
                text = None if text_emb is None else torch.as_tensor(text_emb)[row:row + 1]
                init = None if init_codes is None else torch.as_tensor(init_codes)[row:row + 1]
                codes: list[int] = []
                for i in range(n_codes):
                    # forward predicts code j from codes[:j]: feed what we have plus a dummy last code
                    fed = torch.tensor([codes + [0]], dtype=torch.long)
                    logits = self.forward(text, init, fed)[:, i]
                    codes.append(int(self._pick(logits, u[row:row + 1, i], temperature, top_k)[0]))
                out[row] = torch.tensor(codes)
            return out.to(self.no_text.device)
        finally:
            self.train(was_training)


def _uniforms(uniforms, n: int, n_codes: int, generator) -> torch.Tensor:
    if uniforms is not None:
        u = torch.as_tensor(uniforms, dtype=torch.float64)
        if u.shape != (n, n_codes):
            raise ValueError(f"uniforms must be ({n}, {n_codes}), got {tuple(u.shape)}")
        return u
    return torch.rand(n, n_codes, generator=generator, dtype=torch.float64)


def count_parameters(module: nn.Module) -> int:
    return int(sum(math.prod(p.shape) for p in module.parameters()))
