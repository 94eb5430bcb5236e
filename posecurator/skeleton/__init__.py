"""Joint layouts and mappings from source skeletons to the target layout."""

from posecurator.skeleton.layouts import COCO17, H36M17, LAYOUTS, MPII16, Layout, get_layout
from posecurator.skeleton.mapping import (
    SkeletonMapping, builtin_mappings, detect_mapping, get_mapping, load_mapping_file, mapping_from_dict,
)

__all__ = ["Layout", "H36M17", "COCO17", "MPII16", "LAYOUTS", "get_layout", "SkeletonMapping", "builtin_mappings",
           "detect_mapping", "get_mapping", "load_mapping_file", "mapping_from_dict"]
