"""The writers of earlier releases' two formats, now in engine/outputs/ (one module per format):
kept here under their old names for code that imports them."""

from insid3.engine.outputs.coco import COCO_FILE, COCO_JOURNAL, CocoOutputs
from insid3.engine.outputs.files import mask_bbox, remove_temporaries
from insid3.engine.outputs.masks import PngOutputs

__all__ = ["COCO_FILE", "COCO_JOURNAL", "CocoOutputs", "PngOutputs", "mask_bbox", "remove_temporaries"]
