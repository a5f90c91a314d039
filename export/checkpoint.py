"""Loading DINOv3 checkpoints: Meta hub `.pth` state dicts and Hugging Face `DINOv3ViTModel` folders.

Every error is a CheckpointError with one line naming the file, the tensors, what came and what
was expected (after Polygraphy's style).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from insid3.errors import CheckpointError
from insid3.export.checkpoint_names import (
    META_BLOCK,
    META_EXTRAS,
    block_indices,
    expected_shapes,
    hf_to_meta,
)
from insid3.export.config import SIZES, VitConfig
from insid3.export.layers.rope import rope_periods
from insid3.format.bundle import WeightsSource, sha256_of

HF_CONFIG = "config.json"
HF_WEIGHTS = "model.safetensors"
MAX_LISTED = 4  # tensors named in one error line


@dataclass(frozen=True)
class RawCheckpoint:
    """A checkpoint read from disk, renamed to Meta names, not yet validated."""

    kind: str  # "meta-hub" | "huggingface"
    weights_file: Path  # the file whose sha256 identifies the weights
    state: dict[str, torch.Tensor]
    head_dim: int | None  # from the RoPE periods (Meta) or config.json (HF)
    hf_config: dict | None = None


@dataclass(frozen=True)
class LoadedCheckpoint:
    state_dict: dict[str, torch.Tensor]  # exactly the model's tensors (Meta names), float32
    source: WeightsSource


def weights_file(path: Path) -> Path:
    """The file that holds the weights: the path itself or an HF folder's model.safetensors."""
    return path / HF_WEIGHTS if path.is_dir() else path


def weights_sha256(path: str | Path) -> str:
    return sha256_of(weights_file(Path(path)))


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def _listed(items: list[str]) -> str:
    more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _read_hf_folder(folder: Path) -> RawCheckpoint:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    config_path, tensors_path = folder / HF_CONFIG, folder / HF_WEIGHTS
    for required in (config_path, tensors_path):
        if not required.is_file():
            raise CheckpointError(
                f"{folder} is not a Hugging Face DINOv3 folder: {required.name} is missing"
            )
    try:
        hf_config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config_path} is not valid JSON: {_first_line(exc)}") from exc
    if not isinstance(hf_config, dict):
        raise CheckpointError(f"{config_path} does not hold a JSON object")
    if hf_config.get("model_type", "dinov3_vit") != "dinov3_vit":
        raise CheckpointError(
            f"{config_path}: model_type {hf_config.get('model_type')!r} is not 'dinov3_vit'"
        )
    try:
        state = load_file(str(tensors_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{tensors_path} is not a safetensors file: {_first_line(exc)}"
        ) from exc
    heads, width = hf_config.get("num_attention_heads"), hf_config.get("hidden_size")
    head_dim = width // heads if isinstance(heads, int) and isinstance(width, int) and heads else None
    return RawCheckpoint("huggingface", tensors_path, hf_to_meta(state), head_dim, hf_config)


def _looks_like_torch_save(path: Path) -> bool:
    """torch.save writes a zip archive (or, before torch 1.6, a pickle: protocol byte 0x80)."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def _zip_without_pickle(path: Path) -> bool:
    """A zip archive that torch.save did not write: it always holds <name>/data.pkl."""
    try:
        with zipfile.ZipFile(path) as archive:
            return not any(name.endswith("/data.pkl") or name == "data.pkl" for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False  # torch.load names what is wrong with it


def _read_meta_file(path: Path) -> RawCheckpoint:
    if not _looks_like_torch_save(path):
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: neither a zip archive nor a pickle")
    if _zip_without_pickle(path):
        raise CheckpointError(f"{path} is a zip archive but not a PyTorch checkpoint (torch.save writes a data.pkl in it)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        reason = _first_line(exc).split(". ")[0]  # torch appends paragraphs of advice
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: {reason}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} is not a state dict of tensors (got {type(state).__name__})")
    if "cls_token" not in state or not block_indices(list(state), META_BLOCK):
        if any(name.startswith(("embeddings.", "model.layer.", "layer.")) for name in state):
            raise CheckpointError(
                f"{path} holds Hugging Face tensor names: pass the folder with config.json and "
                f"{HF_WEIGHTS} instead"
            )
        raise CheckpointError(
            f"{path} is not a DINOv3 checkpoint: no cls_token and blocks.* tensors "
            f"(found {_listed(sorted(state))})"
        )
    periods = state.get("rope_embed.periods")
    head_dim = 4 * periods.numel() if periods is not None else None
    return RawCheckpoint("meta-hub", path, state, head_dim)


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    """Detects the format from the path: a folder (or its model.safetensors) is HF, a file Meta."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"weights file {path} does not exist")
    if path.is_dir():
        return _read_hf_folder(path)
    if path.suffix == ".safetensors":
        return _read_hf_folder(path.parent)
    return _read_meta_file(path)


def _describe(width: int, depth: int, heads: int | None) -> str:
    head_text = f", {heads} heads" if heads else ""
    return f"{width} wide, {depth} deep{head_text}"


def _size_hint(width: int, depth: int) -> str:
    for name, preset in SIZES.items():
        if (preset.embed_dim, preset.depth) == (width, depth):
            return f" (ViT-{name[0].upper()}: --size {name})"
    return ""


def check_architecture(raw: RawCheckpoint, config: VitConfig, path: Path) -> None:
    """Width, depth and heads of the checkpoint against the config, in one line."""
    cls_token = raw.state.get("cls_token")
    if cls_token is None or cls_token.ndim == 0:
        raise CheckpointError(f"{path}: tensor cls_token is missing")
    width = int(cls_token.shape[-1])
    depth = len(block_indices(list(raw.state), META_BLOCK))
    heads = width // raw.head_dim if raw.head_dim else None
    if (width, depth) != (config.embed_dim, config.depth) or (heads and heads != config.num_heads):
        raise CheckpointError(
            f"{path} holds a {_describe(width, depth, heads)} model{_size_hint(width, depth)}, "
            f"not {config.name} ({_describe(config.embed_dim, config.depth, config.num_heads)})"
        )


def _check_hf_config(raw: RawCheckpoint, config: VitConfig, path: Path) -> None:
    expected = {
        "patch_size": config.patch_size, "num_register_tokens": config.num_register_tokens,
        "intermediate_size": config.mlp_dim, "use_gated_mlp": False, "key_bias": False,
    }
    wrong = [
        f"{key}={raw.hf_config[key]!r} (expected {value!r})"
        for key, value in expected.items()
        if key in raw.hf_config and raw.hf_config[key] != value
    ]
    rope_theta = raw.hf_config.get("rope_theta", config.rope_base)
    if abs(float(rope_theta) - config.rope_base) > 1e-6 * config.rope_base:
        wrong.append(f"rope_theta={rope_theta!r} (expected {config.rope_base!r})")
    if wrong:
        raise CheckpointError(f"{path}/{HF_CONFIG} is not a DINOv3 {config.name}: {_listed(wrong)}")


def _check_periods(raw: RawCheckpoint, config: VitConfig, path: Path) -> None:
    periods = raw.state.get("rope_embed.periods")
    if periods is None:
        if raw.kind == "meta-hub":  # a persistent buffer of the hub model: always saved
            raise CheckpointError(f"{path} does not match DINOv3 {config.name}: missing rope_embed.periods")
        return  # HF folders store rope_theta instead (checked in config.json)
    expected = rope_periods(head_dim=config.head_dim, base=config.rope_base)
    if periods.shape != expected.shape or not torch.allclose(periods.float(), expected, rtol=1e-4):
        raise CheckpointError(
            f"{path}: rope_embed.periods {periods.float().tolist()[:3]}... "
            f"(shape {_shape(periods)}) differ from base {config.rope_base} periods "
            f"{[round(v, 4) for v in expected.tolist()[:3]]}... (shape {_shape(expected)})"
        )


def _check_tensors(state: dict[str, torch.Tensor], config: VitConfig, path: Path) -> None:
    expected = expected_shapes(config)
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected) - set(META_EXTRAS))
    wrong = [
        f"{name} is {_shape(state[name])}, expected {shape}"
        for name, shape in expected.items()
        if name in state and _shape(state[name]) != shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected {_listed(unexpected)}")
    if wrong:
        problems.append(_listed(wrong))
    if problems:
        raise CheckpointError(f"{path} does not match DINOv3 {config.name}: {'; '.join(problems)}")
    for name, tensor in state.items():
        if not tensor.is_floating_point():
            raise CheckpointError(f"{path}: tensor {name} is {tensor.dtype}, expected a float tensor")
    for name in (n for n in expected if n.endswith("bias_mask")):
        mask = state[name]
        if not torch.all((mask == 0) | (mask == 1)):
            raise CheckpointError(
                f"{path}: {name} must hold only 0 and 1 (a NaN mask was never loaded from a "
                "trained model)"
            )


def load_checkpoint(path: str | Path, config: VitConfig) -> LoadedCheckpoint:
    """Reads, validates and renames a checkpoint for `config`; float32 tensors in Meta names."""
    path = Path(path)
    raw = read_checkpoint(path)
    check_architecture(raw, config, path)
    if raw.hf_config is not None:
        _check_hf_config(raw, config, path)
    _check_periods(raw, config, path)
    _check_tensors(raw.state, config, path)
    state = {name: raw.state[name].float() for name in expected_shapes(config)}
    source = WeightsSource(kind=raw.kind, path=str(path.resolve()), sha256=sha256_of(raw.weights_file))
    return LoadedCheckpoint(state_dict=state, source=source)
