"""Joint layouts and mappings from source skeletons to the target layout."""

from posecurator.skeleton.layouts import COCO17, H36M17, LAYOUTS, MPII16, Layout, get_layout

__all__ = ["Layout", "H36M17", "COCO17", "MPII16", "LAYOUTS", "get_layout"]
