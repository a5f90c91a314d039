"""Mask -> polygons for the COCO polygon and YOLO segmentation formats (shapely).

A mask is the union of its pixels' squares (pixel (x, y) covers [x, x + 1] x [y, y + 1], the
continuous coordinates COCO and Ultralytics use): its runs become rectangles, shapely unites them
(GEOS), and the outlines of the union, simplified by Douglas-Peucker with
`tolerance` pixels (topology preserved; 0 only drops collinear vertices), are the polygons. So
a polygon rasterised again at the pixel centres covers exactly its pixels (with tolerance 0),
whatever the slope of the boundary. Holes are not represented (COCO and YOLO polygons have
none): use RLE for exact masks. Pixels joined only by a corner are separate polygons.
"""

from __future__ import annotations

import numpy as np


def _shapely():
    try:
        import shapely
    except ImportError as exc:  # a declared dependency; a broken install gets one clear line
        from insid3.errors import SettingsError

        raise SettingsError(f"polygon outputs need shapely ({exc}): pip install shapely") from None
    return shapely


def pixel_rectangles(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x0, y0, x1, y1) rectangles tiling a bool (H, W) mask: the horizontal runs of each band of
    identical rows, as tall as the band (an upsampled patch mask has few bands: few rectangles)."""
    mask = np.asarray(mask, dtype=bool)
    changes = np.nonzero(np.any(mask[1:] != mask[:-1], axis=1))[0] + 1
    tops = np.concatenate([[0], changes])
    bottoms = np.concatenate([changes, [mask.shape[0]]])
    padded = np.pad(mask[tops].astype(np.int8), ((0, 0), (1, 1)))
    steps = np.diff(padded, axis=1)  # +1 where a run starts, -1 one past its end (row-major order)
    bands, x0 = np.nonzero(steps == 1)
    _, x1 = np.nonzero(steps == -1)
    return x0, tops[bands], x1, bottoms[bands]


def mask_polygons(mask: np.ndarray, tolerance: float = 1.0) -> list[np.ndarray]:
    """The outer outlines of a bool (H, W) mask: (V, 2) float64 (x, y) vertex arrays, V >= 3, the
    first vertex not repeated; largest first."""
    shapely = _shapely()
    x0, y0, x1, y1 = pixel_rectangles(mask)
    if x0.size == 0:
        return []
    union = shapely.union_all(shapely.box(x0, y0, x1, y1))
    outline = shapely.simplify(union, float(tolerance), preserve_topology=True)
    parts = sorted(getattr(outline, "geoms", [outline]), key=lambda part: -part.area)
    polygons = [np.asarray(part.exterior.coords)[:-1] for part in parts if not part.is_empty]
    return [vertices for vertices in polygons if len(vertices) >= 3]
