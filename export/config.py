"""The DINOv3 ViT architectures we export, as frozen settings (torch-free).

A preset (`SIZES`) names one of the hub's LVD-1689M backbones; tests build custom tiny configs
with the same fields. `VitConfig.arch` is the string written into a bundle's metadata, and
`VitConfig.from_arch` reads it back, so a bundle always says which model it was exported from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from insid3.errors import SettingsError

MIN_RESOLUTION = 224
MAX_RESOLUTION = 2048
PAPER_SVD_COMPONENTS = 500  # the reference's default, tuned for ViT-L (C = 1024)
PAPER_SVD_WIDTH = 1024


@dataclass(frozen=True)
class VitConfig:
    """A DINOv3 ViT: width, depth and heads; the rest is shared by the S/B/L hub models."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    patch_size: int = 16
    num_register_tokens: int = 4
    mlp_ratio: int = 4
    rope_base: float = 100.0
    layer_norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.embed_dim <= 0 or self.depth <= 0 or self.num_heads <= 0:
            raise SettingsError(f"config {self.name!r}: width, depth and heads must be positive")
        # RoPE splits each head into 4 quarters (sin/cos for y and x), so the head width must be
        # a multiple of 4.
        if self.embed_dim % self.num_heads or (self.embed_dim // self.num_heads) % 4:
            raise SettingsError(
                f"config {self.name!r}: width {self.embed_dim} must split into {self.num_heads} "
                "heads whose width is a multiple of 4"
            )

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def mlp_dim(self) -> int:
        return self.embed_dim * self.mlp_ratio

    @property
    def num_prefix_tokens(self) -> int:
        return 1 + self.num_register_tokens  # CLS + registers

    @property
    def arch(self) -> str:
        """Hub name for presets (dinov3_vits16), a parseable description for custom configs."""
        if SIZES.get(self.name) == self:
            return f"dinov3_vit{self.name[0]}{self.patch_size}"
        return (
            f"dinov3_custom_c{self.embed_dim}_d{self.depth}_h{self.num_heads}_p{self.patch_size}"
            f"_r{self.num_register_tokens}_m{self.mlp_ratio}"
        )

    @classmethod
    def from_arch(cls, arch: str) -> "VitConfig":
        for config in SIZES.values():
            if config.arch == arch:
                return config
        match = re.fullmatch(r"dinov3_custom_c(\d+)_d(\d+)_h(\d+)_p(\d+)_r(\d+)_m(\d+)", arch)
        if not match:
            raise SettingsError(f"unknown architecture {arch!r}: expected one of {arch_names()}")
        c, d, h, p, r, m = (int(g) for g in match.groups())
        return cls(
            name="custom", embed_dim=c, depth=d, num_heads=h, patch_size=p,
            num_register_tokens=r, mlp_ratio=m,
        )

    def grid(self, resolution: int) -> tuple[int, int]:
        side = resolution // self.patch_size
        return side, side

    def num_patches(self, resolution: int) -> int:
        h, w = self.grid(resolution)
        return h * w


SIZES: dict[str, VitConfig] = {
    "small": VitConfig(name="small", embed_dim=384, depth=12, num_heads=6),
    "base": VitConfig(name="base", embed_dim=768, depth=12, num_heads=12),
    "large": VitConfig(name="large", embed_dim=1024, depth=24, num_heads=16),
}


def arch_names() -> list[str]:
    return [config.arch for config in SIZES.values()]


def config_for(config_or_size: "VitConfig | str") -> VitConfig:
    """A VitConfig from itself, a preset size ("small") or an arch string from a bundle."""
    if isinstance(config_or_size, VitConfig):
        return config_or_size
    if config_or_size in SIZES:
        return SIZES[config_or_size]
    if str(config_or_size).startswith("dinov3_"):
        return VitConfig.from_arch(config_or_size)
    raise SettingsError(
        f"unknown size {config_or_size!r}: expected one of {', '.join(SIZES)}"
    )


def validate_resolution(resolution: int, patch_size: int = 16) -> int:
    if not isinstance(resolution, int) or isinstance(resolution, bool):
        raise SettingsError(f"resolution {resolution!r} must be an integer")
    if resolution % patch_size:
        raise SettingsError(
            f"resolution {resolution} is not a multiple of the patch size {patch_size}"
        )
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise SettingsError(
            f"resolution {resolution} is out of range [{MIN_RESOLUTION}, {MAX_RESOLUTION}]"
        )
    return resolution


def default_svd_components(config: VitConfig, resolution: int) -> int:
    """s, the positional-basis vectors to project out by default (algorithm doc §3).

    500 for ViT-L (the paper); other widths keep the paper's fraction 500/1024 of C (no real
    weights here to tune on). It is clipped below K = min(C, N), the number of basis columns: the
    centred black-image features have rank < K, so higher vectors would carry no positional signal.
    """
    k = min(config.embed_dim, config.num_patches(resolution))
    s = round(config.embed_dim * PAPER_SVD_COMPONENTS / PAPER_SVD_WIDTH)
    return max(0, min(s, k - 1))
