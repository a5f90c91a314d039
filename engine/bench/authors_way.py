"""INSID3 the authors' way: a plain transcription of algorithm doc §1-§9, loops and all.

This is the published pipeline as it runs, NOT the engine: torch eager backbone encoding the
reference(s) AND the target together for every target, sklearn's AgglomerativeClustering on a
float64 N x N distance matrix, Python loops over clusters. Two uses:
- the benchmark's baseline (`insid3-bench --compare-reference`);
- the oracle of end-to-end parity tests: each step is one small function named after its section.

torch and scikit-learn are imported lazily (the engine runs without them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from insid3.format.bundle import load_bundle
from insid3.engine.images import ImageLike, PreparedImage, prepare_image, prepare_reference_mask
from insid3.format.settings import Hyperparameters
from insid3.engine.timing import StageClock, no_sync


@dataclass(frozen=True)
class AuthorsModel:
    """The eager backbone and everything fixed per backbone and resolution."""

    backbone: Any  # torch.nn.Module: pixels (B, 3, R, R) -> L2-normalised features (B, N, C)
    basis: Any  # torch (C, s): the positional subspace, doc §3
    resolution: int
    patch_grid: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hyperparameters: Hyperparameters
    device: str

    def synchronizer(self):
        """The stage-boundary synchronisation for this model's device (a no-op on the CPU)."""
        import torch

        return torch.cuda.synchronize if self.device.startswith("cuda") else no_sync


def load_model(
    bundle_path: str | Path, device: str = "cpu", hyperparameters: Hyperparameters | None = None
) -> AuthorsModel:
    """The bundle's exact backbone (metadata.arch + metadata.weights) rebuilt in torch."""
    import torch

    from insid3.export import build_backbone

    bundle = load_bundle(bundle_path)
    meta = bundle.metadata
    hp = (hyperparameters or meta.defaults).validated(meta.embed_dim)
    backbone = build_backbone(meta.arch, meta.weights, resolution=meta.resolution).eval().to(device)
    basis = torch.from_numpy(bundle.positional_basis()[:, : hp.svd_components].copy()).to(device)
    return AuthorsModel(
        backbone=backbone, basis=basis, resolution=meta.resolution, patch_grid=meta.patch_grid,
        mean=meta.mean, std=meta.std, hyperparameters=hp, device=device,
    )


# ---------------------------------------------------------------- §1 pre-processing
def preprocess_image(model: AuthorsModel, image: ImageLike) -> PreparedImage:
    return prepare_image(image, model.resolution, model.mean, model.std)


def preprocess_shot(model: AuthorsModel, image: ImageLike, mask: ImageLike) -> tuple[PreparedImage, np.ndarray]:
    """A reference image and its mask at R x R (NEAREST, > 0.5)."""
    prepared = preprocess_image(model, image)
    return prepared, prepare_reference_mask(mask, prepared.original_size, model.resolution)


# ---------------------------------------------------------------- §2 backbone
def encode_together(model: AuthorsModel, images: Sequence[PreparedImage]) -> Any:
    """One eager forward pass over the references and the target: (S + 1, N, C) features."""
    import torch

    pixels = torch.from_numpy(np.stack([image.pixels for image in images])).to(model.device)
    with torch.inference_mode():
        return model.backbone(pixels)


# ---------------------------------------------------------------- §4 debiasing
def debias(features: Any, basis: Any) -> Any:
    """normalise(F - (F B) B^T): drop the positional subspace, re-normalise each patch."""
    import torch.nn.functional as F

    return F.normalize(features - (features @ basis) @ basis.T, dim=-1)


# ---------------------------------------------------------------- §5 reference side
def downsample_mask(mask: np.ndarray, grid: tuple[int, int]) -> Any:
    """R x R bool mask -> (h*w,) bool: bilinear > 0.5, else nearest > 0.5, else the centroid patch."""
    import torch
    import torch.nn.functional as F

    full = torch.from_numpy(np.ascontiguousarray(mask)).float()[None, None]
    small = F.interpolate(full, size=grid, mode="bilinear", align_corners=False)[0, 0] > 0.5
    if not small.any():
        small = F.interpolate(full, size=grid, mode="nearest")[0, 0] > 0.5
    if not small.any():
        ys, xs = np.nonzero(mask)
        stride = mask.shape[0] // grid[1]
        small = torch.zeros(grid, dtype=torch.bool)
        small[int(ys.mean() / stride), int(xs.mean() / stride)] = True
    return small.reshape(-1)


def prototype(reference_debiased: Sequence[Any], patch_masks: Sequence[Any]) -> Any:
    """normalise(mean over shots of the mean debiased foreground feature); empty shots skipped."""
    import torch
    import torch.nn.functional as F

    shot_means = []
    for features, mask in zip(reference_debiased, patch_masks):
        if mask.any():
            shot_means.append(features[mask.to(features.device)].mean(dim=0))
    return F.normalize(torch.stack(shot_means).mean(dim=0), dim=0)


# ---------------------------------------------------------------- §6 candidates
def forward_similarity(target_debiased: Any, proto: Any) -> Any:
    return target_debiased @ proto


def forward_candidates(similarity: Any) -> Any:
    """sim > 0; where nothing is, sim above its 0.9 quantile."""
    import torch

    forward = similarity > 0
    if not forward.any():
        forward = similarity > torch.quantile(similarity, 0.9)
    return forward


def backward_candidates(target_debiased: Any, reference_debiased: Sequence[Any], patch_masks: Sequence[Any]) -> Any:
    """Each target patch's nearest reference patch (per shot) must lie in that shot's mask, by majority."""
    import torch

    votes = torch.zeros(target_debiased.shape[0], dtype=torch.int64, device=target_debiased.device)
    for features, mask in zip(reference_debiased, patch_masks):
        nearest = (target_debiased @ features.T).argmax(dim=1)
        votes += mask.to(target_debiased.device)[nearest].long()
    return votes >= math.ceil(len(patch_masks) / 2)


# ---------------------------------------------------------------- §7 clustering
def cosine_distances(features: Any) -> np.ndarray:
    """D = 1 - clip(F F^T, -1, 1) of the original target features, float64 on the host."""
    similarity = (features @ features.T).clamp(-1, 1)
    return (1 - similarity).double().cpu().numpy()


def cluster(features: Any, tau: float) -> np.ndarray:
    """Average-linkage agglomerative labels cut at distance 1 - tau (sklearn, as the authors)."""
    from sklearn.cluster import AgglomerativeClustering

    clustering = AgglomerativeClustering(
        n_clusters=None, metric="precomputed", linkage="average", distance_threshold=1 - tau
    )
    return clustering.fit(cosine_distances(features)).labels_


# ---------------------------------------------------------------- §8 seed and aggregation
def aggregate(
    labels: np.ndarray,
    candidate: Any,
    features: Any,
    debiased: Any,
    similarity: Any,
    proto: Any,
    merge_threshold: float,
) -> Any:
    """(N,) bool patch mask: clusters scored cross * intra * area weight against the seed cluster."""
    import torch
    import torch.nn.functional as F

    if not candidate.any():
        return candidate
    members_of = [torch.from_numpy(labels == k).to(candidate.device) for k in range(int(labels.max()) + 1)]
    area_weight, seed_score, intra_proto, cross = [], [], [], []
    for members in members_of:
        hits = (candidate & members).sum().item()
        area_weight.append(hits / members.sum().item())
        debiased_proto = F.normalize(debiased[members].mean(dim=0), dim=0)
        seed_score.append((proto @ debiased_proto).item() if hits > 0 else -math.inf)
        intra_proto.append(F.normalize(features[members].mean(dim=0), dim=0))
        cross.append(similarity[members].mean().item())
    seed = int(np.argmax(seed_score))
    area_weight[seed] = 1.0
    scores = [
        cross[k] * (intra_proto[seed] @ intra_proto[k]).item() * area_weight[k] for k in range(len(members_of))
    ]
    keep = torch.tensor([score > merge_threshold for score in scores], device=candidate.device)
    return keep[torch.from_numpy(labels).to(candidate.device)]


# ---------------------------------------------------------------- §9 back to pixels
def upsample(patch_mask: Any, grid: tuple[int, int], resolution: int, original_size: tuple[int, int]) -> np.ndarray:
    """h x w -> R x R -> (H, W), bilinear (align_corners=False) and > 0.5 each time."""
    import torch.nn.functional as F

    mask = patch_mask.reshape(1, 1, *grid).float()
    mask = (F.interpolate(mask, size=(resolution, resolution), mode="bilinear", align_corners=False) > 0.5).float()
    mask = F.interpolate(mask, size=tuple(original_size), mode="bilinear", align_corners=False) > 0.5
    return mask[0, 0].cpu().numpy()


# ---------------------------------------------------------------- the whole episode
def segment(
    model: AuthorsModel,
    shots: Sequence[tuple[ImageLike, ImageLike]],
    target: ImageLike,
    clock: StageClock | None = None,
) -> np.ndarray:
    """One episode as the authors run it: references re-read and re-encoded with the target."""
    clock = clock or StageClock(model.synchronizer())
    hp = model.hyperparameters
    with clock.stage("preprocess"):
        prepared_shots = [preprocess_shot(model, image, mask) for image, mask in shots]
        prepared_target = preprocess_image(model, target)
    with clock.stage("backbone"):
        features = encode_together(model, [image for image, _ in prepared_shots] + [prepared_target])
    with clock.stage("debias"):
        debiased = debias(features, model.basis)
        reference_debiased, target_debiased = list(debiased[:-1]), debiased[-1]
    with clock.stage("matching"):
        patch_masks = [downsample_mask(mask, model.patch_grid) for _, mask in prepared_shots]
        proto = prototype(reference_debiased, patch_masks)
        similarity = forward_similarity(target_debiased, proto)
        candidate = forward_candidates(similarity) & backward_candidates(
            target_debiased, reference_debiased, patch_masks
        )
    with clock.stage("clustering"):
        labels = cluster(features[-1], hp.tau)
    with clock.stage("aggregation"):
        patch_mask = aggregate(
            labels, candidate, features[-1], target_debiased, similarity, proto, hp.merge_threshold
        )
    with clock.stage("upsample"):
        mask = upsample(patch_mask, model.patch_grid, model.resolution, prepared_target.original_size)
    return mask
