"""insid3: training-free in-context segmentation with a frozen DINOv3 ViT."""
__version__ = "0.1.0"
