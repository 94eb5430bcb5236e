"""Readers and writers. Every reader returns a :class:`posecurator.PoseSet`.

=====================  ====================================  =====================================
format                 reader                                notes
=====================  ====================================  =====================================
BVH (.bvh, .bvh.gz)    :func:`posecurator.io.bvh.read_bvh`   any channel order, position channels
ASF/AMC (.amc[.gz])    :func:`posecurator.io.asf_amc.read_amc`  units from ``:units``, CRLF
VideoPose3D npz        :func:`posecurator.io.h36m_npz.read_videopose3d_npz`
mmpose Human3.6M npz   :func:`posecurator.io.h36m_npz.read_mmpose_h36m_npz`
COCO keypoints json    :func:`posecurator.io.coco.read_coco`  2D only, COCO-17 layout
MPII json / .mat       :func:`posecurator.io.mpii.read_mpii`  2D only, MPII-16 layout (mmpose/HRNet
                                                             json or the official MATLAB release)
DeepMimic motion txt   :func:`posecurator.io.deepmimic.read_deepmimic`  (pybullet's reference clips)
pose-set folder        :meth:`posecurator.PoseSet.load`
=====================  ====================================  =====================================

:func:`import_path` takes any file or folder of these and returns one pose set at the target
frame rate, in the target layout, in millimetres with Z up; :func:`import_to_store` writes the
same set to a pose-set folder file by file (``posecurator import``), holding one file and one chunk.
"""

from posecurator.io.folder import import_path, import_to_store

__all__ = ["import_path", "import_to_store"]
