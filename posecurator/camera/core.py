"""NumPy camera model. Every function takes any number of leading dimensions."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# ../shared/BENCHMARK.md evaluation rig
EVAL_FOCAL = 1145.0
EVAL_SIZE = (1000, 1000)
EVAL_DISTANCE = 5000.0
EVAL_HEIGHT = 1600.0
EVAL_TARGET_HEIGHT = 1000.0
EVAL_AZIMUTHS = (45.0, 135.0, 225.0, 315.0)


def world_to_camera(x: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(..., J, 3) world points -> camera frame, with R (..., 3, 3) and t (..., 3) broadcast over J."""
    x = np.asarray(x)
    if x.shape[-1] != 3:
        raise ValueError(f"points must end in 3 coordinates, got {x.shape}")
    return np.einsum("...ij,...kj->...ki", R, x) + np.asarray(t)[..., None, :]


def camera_to_world(x: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Inverse of :func:`world_to_camera`."""
    return np.einsum("...ji,...kj->...ki", R, np.asarray(x) - np.asarray(t)[..., None, :])


def project_points(x_cam: np.ndarray, f, c, k=None, p=None) -> np.ndarray:
    """Project (..., J, 3) camera-frame points to (..., J, 2) pixels.

    f, c: (..., 2) focal lengths and principal point (broadcast over J). k: (..., 3) radial and
    p: (..., 2) tangential distortion coefficients (Brown-Conrady in OpenCV's convention:
    k = (k1, k2, k3), p = (p1, p2)), or None.
    Points at or behind the camera plane give non-finite pixels rather than wrapping around.
    """
    x_cam = np.asarray(x_cam)
    if x_cam.shape[-1] != 3:
        raise ValueError(f"points must end in 3 coordinates, got {x_cam.shape}")
    z = x_cam[..., 2:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = np.where(z > 0, x_cam[..., :2] / z, np.nan)
    if k is not None or p is not None:
        r2 = np.sum(xy**2, axis=-1, keepdims=True)
        radial = 1.0
        if k is not None:
            k = np.asarray(k)[..., None, :]
            radial = 1 + k[..., 0:1] * r2 + k[..., 1:2] * r2**2 + k[..., 2:3] * r2**3
        tan = 0.0
        if p is not None:
            p = np.asarray(p)[..., None, :]
            # OpenCV's Brown-Conrady form with p = (p1, p2):
            # x' = x*radial + 2*p1*x*y + p2*(r2 + 2*x^2), y' = y*radial + p1*(r2 + 2*y^2) + 2*p2*x*y
            tan = np.sum(p[..., ::-1] * xy, axis=-1, keepdims=True)
            xy = xy * (radial + 2 * tan) + p[..., ::-1] * r2
        else:
            xy = xy * radial
    return xy * np.asarray(f)[..., None, :] + np.asarray(c)[..., None, :]


def normalize_screen_coordinates(x: np.ndarray, w, h) -> np.ndarray:
    """Pixels -> [-1, 1] along the width, keeping the aspect ratio (VideoPose3D: x / w * 2 - [1, h / w])."""
    w = np.asarray(w, dtype=np.float64)[..., None, None] if np.ndim(w) else float(w)
    h = np.asarray(h, dtype=np.float64)[..., None, None] if np.ndim(h) else float(h)
    x = np.asarray(x)
    out = np.empty_like(x)
    out[..., 0:1] = x[..., 0:1] / w * 2 - 1
    out[..., 1:2] = x[..., 1:2] / w * 2 - h / w
    return out


def image_to_normalized(x: np.ndarray, w, h) -> np.ndarray:
    """Inverse of :func:`normalize_screen_coordinates`."""
    w = np.asarray(w, dtype=np.float64)[..., None, None] if np.ndim(w) else float(w)
    h = np.asarray(h, dtype=np.float64)[..., None, None] if np.ndim(h) else float(h)
    x = np.asarray(x)
    out = np.empty_like(x)
    out[..., 0:1] = (x[..., 0:1] + 1) * w / 2
    out[..., 1:2] = (x[..., 1:2] + h / w) * w / 2
    return out


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0), roll: np.ndarray | float = 0.0):
    """Rotation and translation of cameras at ``eye`` (..., 3) looking at ``target`` (..., 3).

    Returns R (..., 3, 3), t (..., 3) with X_cam = R X + t; the camera's y axis points down
    along -up, rotated by ``roll`` radians about the optical axis.
    """
    eye, target = np.asarray(eye, dtype=np.float64), np.asarray(target, dtype=np.float64)
    z = target - eye
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    up = np.broadcast_to(np.asarray(up, dtype=np.float64), z.shape)
    x = np.cross(z, up)  # camera right = forward x up
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    if np.any(norm < 1e-9):
        raise ValueError("camera looks straight along the up axis; look_at is undefined")
    x = x / norm
    y = np.cross(z, x)
    roll = np.asarray(roll, dtype=np.float64)[..., None]
    x, y = np.cos(roll) * x + np.sin(roll) * y, -np.sin(roll) * x + np.cos(roll) * y
    R = np.stack([x, y, z], axis=-2)
    t = -np.einsum("...ij,...j->...i", R, eye)
    return R, t


@dataclass
class Camera:
    """One pinhole camera. ``to_dict``/``from_dict`` give the JSON form stored in pose sets."""

    R: np.ndarray
    t: np.ndarray
    f: np.ndarray
    c: np.ndarray
    width: int = 1000
    height: int = 1000
    k: np.ndarray | None = None
    p: np.ndarray | None = None
    name: str = ""

    def __post_init__(self):
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)
        self.f = np.broadcast_to(np.asarray(self.f, dtype=np.float64), (2,)).copy()
        self.c = np.asarray(self.c, dtype=np.float64).reshape(2)
        if self.k is not None:
            self.k = np.asarray(self.k, dtype=np.float64).reshape(3)
        if self.p is not None:
            self.p = np.asarray(self.p, dtype=np.float64).reshape(2)

    @property
    def center(self) -> np.ndarray:
        """Camera position in the world frame."""
        return -self.R.T @ self.t

    def world_to_camera(self, x):
        return world_to_camera(x, self.R, self.t)

    def project(self, x_world):
        """(..., J, 3) world points -> (..., J, 2) pixels."""
        return project_points(self.world_to_camera(x_world), self.f, self.c, self.k, self.p)

    def to_dict(self) -> dict:
        d = {"name": self.name, "R": self.R.tolist(), "t": self.t.tolist(), "f": self.f.tolist(),
             "c": self.c.tolist(), "width": int(self.width), "height": int(self.height)}
        if self.k is not None:
            d["k"] = self.k.tolist()
        if self.p is not None:
            d["p"] = self.p.tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Camera":
        return cls(R=d["R"], t=d["t"], f=d["f"], c=d["c"], width=d.get("width", 1000),
                   height=d.get("height", 1000), k=d.get("k"), p=d.get("p"), name=d.get("name", ""))


@dataclass
class CameraBatch:
    """N cameras as arrays (one per sample), for batched projection. No distortion."""

    R: np.ndarray  # (N, 3, 3)
    t: np.ndarray  # (N, 3)
    f: np.ndarray  # (N, 2)
    c: np.ndarray  # (N, 2)
    width: np.ndarray = field(default=None)  # (N,)
    height: np.ndarray = field(default=None)  # (N,)

    def __post_init__(self):
        n = len(self.R)
        if self.width is None:
            self.width = np.full(n, EVAL_SIZE[0], dtype=np.float64)
        if self.height is None:
            self.height = np.full(n, EVAL_SIZE[1], dtype=np.float64)

    def __len__(self) -> int:
        return len(self.R)

    def project(self, x_world: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, J, 3) world -> ((N, J, 2) pixels, (N, J, 3) camera-frame points)."""
        xc = world_to_camera(x_world, self.R, self.t)
        return project_points(xc, self.f, self.c), xc

    def subset(self, index) -> "CameraBatch":
        return CameraBatch(self.R[index], self.t[index], self.f[index], self.c[index], self.width[index], self.height[index])

    @staticmethod
    def from_cameras(cams: list[Camera], index: np.ndarray | None = None) -> "CameraBatch":
        idx = np.arange(len(cams)) if index is None else np.asarray(index)
        stack = lambda a: np.stack([getattr(c, a) for c in cams])[idx]  # noqa: E731
        return CameraBatch(stack("R"), stack("t"), stack("f"), stack("c"),
                           np.array([c.width for c in cams], dtype=np.float64)[idx],
                           np.array([c.height for c in cams], dtype=np.float64)[idx])


def evaluation_rig(mean_pelvis: np.ndarray, *, floor_z: float = 0.0) -> list[Camera]:
    """The four fixed evaluation cameras of ../shared/BENCHMARK.md for one clip.

    They stand 5000 mm horizontally from the clip's mean pelvis position at azimuths 45, 135,
    225, 315 degrees, 1600 mm above the floor, looking at the point 1000 mm above the floor over
    the mean pelvis; 1000 x 1000 px, focal 1145 px, principal point (500, 500), no distortion.
    """
    mean_pelvis = np.asarray(mean_pelvis, dtype=np.float64).reshape(3)
    target = np.array([mean_pelvis[0], mean_pelvis[1], floor_z + EVAL_TARGET_HEIGHT])
    cams = []
    for az in EVAL_AZIMUTHS:
        a = np.deg2rad(az)
        eye = np.array([mean_pelvis[0] + EVAL_DISTANCE * np.cos(a), mean_pelvis[1] + EVAL_DISTANCE * np.sin(a), floor_z + EVAL_HEIGHT])
        R, t = look_at(eye, target)
        cams.append(Camera(R=R, t=t, f=EVAL_FOCAL, c=(EVAL_SIZE[0] / 2, EVAL_SIZE[1] / 2),
                           width=EVAL_SIZE[0], height=EVAL_SIZE[1], name=f"eval_az{int(az)}"))
    return cams


@dataclass
class RandomCameraSampler:
    """Seeded random cameras for training: one camera per pose, looking at that pose.

    Each camera stands ``distance`` mm (horizontally) from the pose's pelvis at a uniform azimuth,
    ``height`` mm above the floor, aims at a point ``target_height`` mm above the floor over the
    pelvis (plus ``target_jitter``), with a small roll; focal length and principal point vary
    around the evaluation values so the lifter does not learn one intrinsic matrix. Ranges are
    wide enough to cover the evaluation rig without ever using it.
    """

    distance: tuple[float, float] = (3500.0, 6500.0)
    height: tuple[float, float] = (500.0, 2500.0)
    target_height: tuple[float, float] = (700.0, 1300.0)
    target_jitter: float = 300.0
    azimuth: tuple[float, float] = (0.0, 360.0)
    focal: tuple[float, float] = (1000.0, 1300.0)
    principal_jitter: float = 20.0
    roll_deg: float = 5.0
    size: tuple[int, int] = EVAL_SIZE

    def sample(self, pelvis: np.ndarray, rng: np.random.Generator, floor_z: np.ndarray | float = 0.0) -> CameraBatch:
        """Cameras for poses with pelvis positions (N, 3)."""
        pelvis = np.asarray(pelvis, dtype=np.float64)
        n = len(pelvis)
        u = lambda lo_hi: rng.uniform(lo_hi[0], lo_hi[1], n)  # noqa: E731
        az = np.deg2rad(u(self.azimuth))
        dist = u(self.distance)
        floor_z = np.broadcast_to(np.asarray(floor_z, dtype=np.float64), (n,))
        target = np.stack([pelvis[:, 0], pelvis[:, 1], floor_z + u(self.target_height)], axis=1)
        target[:, :2] += rng.normal(0, self.target_jitter / 2, (n, 2))
        eye = np.stack([pelvis[:, 0] + dist * np.cos(az), pelvis[:, 1] + dist * np.sin(az), floor_z + u(self.height)], axis=1)
        roll = np.deg2rad(rng.uniform(-self.roll_deg, self.roll_deg, n))
        R, t = look_at(eye, target, roll=roll)
        f = u(self.focal)
        f = np.stack([f, f], axis=1)
        c = np.array(self.size, dtype=np.float64) / 2 + rng.uniform(-self.principal_jitter, self.principal_jitter, (n, 2))
        return CameraBatch(R, t, f, c, np.full(n, float(self.size[0])), np.full(n, float(self.size[1])))
