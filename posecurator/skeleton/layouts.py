"""Joint layouts: names, parents and left/right symmetry.

``H36M17`` is the target layout of every pose set (../shared/BENCHMARK.md): the 17-joint
Human3.6M layout in VideoPose3D order. ``COCO17`` and ``MPII16`` describe 2D annotation layouts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Layout:
    name: str
    joints: tuple[str, ...]
    parents: tuple[int, ...]  # -1 for the root
    flip_pairs: tuple[tuple[int, int], ...] = field(default=())

    def __post_init__(self):
        if len(self.joints) != len(self.parents):
            raise ValueError(f"layout {self.name}: {len(self.joints)} joints but {len(self.parents)} parents")
        if sum(p < 0 for p in self.parents) != 1:
            raise ValueError(f"layout {self.name}: needs exactly one root")
        for j in range(len(self.parents)):  # every joint must reach the root without a cycle
            seen, k = set(), j
            while k >= 0:
                if k in seen:
                    raise ValueError(f"layout {self.name}: cycle through joint {k}")
                seen.add(k)
                k = self.parents[k]

    @property
    def is_topological(self) -> bool:
        """True when every parent comes before its child (forward kinematics can run in index order)."""
        return all(p < j for j, p in enumerate(self.parents))

    @property
    def n_joints(self) -> int:
        return len(self.joints)

    def index(self, name: str) -> int:
        return self.joints.index(name)

    @property
    def bones(self) -> np.ndarray:
        """(B, 2) int array of (parent, child) pairs, in joint order."""
        return np.array([(p, j) for j, p in enumerate(self.parents) if p >= 0], dtype=np.int64)

    @property
    def flip_permutation(self) -> np.ndarray:
        """Index array that swaps left and right joints."""
        perm = np.arange(self.n_joints)
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    def children(self, j: int) -> list[int]:
        return [c for c, p in enumerate(self.parents) if p == j]

    def subtree(self, j: int) -> list[int]:
        """Joint j and every joint below it."""
        out, frontier = [j], [j]
        while frontier:
            frontier = [c for c, p in enumerate(self.parents) if p in frontier]
            out.extend(frontier)
        return sorted(out)


H36M17 = Layout(
    name="h36m17",
    joints=(
        "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "spine", "thorax", "neck", "head", "left_shoulder", "left_elbow", "left_wrist",
        "right_shoulder", "right_elbow", "right_wrist",
    ),
    parents=(-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15),
    flip_pairs=((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16)),
)

COCO17 = Layout(
    name="coco17",
    joints=(
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    # COCO has no kinematic tree; this one (rooted at the nose) is for drawing and bone lists.
    parents=(-1, 0, 0, 1, 2, 0, 0, 5, 6, 7, 8, 5, 6, 11, 12, 13, 14),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
)

MPII16 = Layout(
    name="mpii16",
    joints=(
        "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis",
        "thorax", "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder",
        "left_shoulder", "left_elbow", "left_wrist",
    ),
    # MPII's own order is not topological; parents point along the limbs towards the pelvis.
    parents=(1, 2, 6, 6, 3, 4, -1, 6, 7, 8, 11, 12, 7, 7, 13, 14),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
)

LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (H36M17, COCO17, MPII16)}


def get_layout(name: str) -> Layout:
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ValueError(f"unknown layout {name!r}; known: {', '.join(LAYOUTS)}") from None
