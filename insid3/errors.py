"""Typed errors shared by every part of insid3.

Each error carries one line that names the problem (the file, the tensor, the sizes that came
and the sizes that were expected). CLIs print ``str(error)`` and exit non-zero; the Python API
raises these types so callers can catch them by kind.
"""

from __future__ import annotations


class Insid3Error(Exception):
    """Base class: everything insid3 raises on bad input or a missing capability."""


class SettingsError(Insid3Error, ValueError):
    """A setting is out of range: unknown size, resolution not a multiple of 16, s >= C, ..."""


class CheckpointError(Insid3Error):
    """A weights file is missing, is not a DINOv3 checkpoint, or holds another size."""


class ExportError(Insid3Error):
    """The export failed: output directory, ONNX checks, parity above tolerance."""


class BundleError(Insid3Error):
    """An engine bundle is missing, incomplete, or of another format version."""


class BackendUnavailableError(Insid3Error):
    """A backend was asked for that cannot run here (package or device missing)."""


class InputImageError(Insid3Error):
    """An image or mask cannot be read, or its size does not match."""


class ReferenceMaskError(Insid3Error):
    """A reference mask is empty or does not match its image."""


class KeypointError(Insid3Error, ValueError):
    """Keypoints to match are missing, not finite, or outside their image (the point is named)."""


class NoReferenceError(Insid3Error):
    """``segment`` was called before any reference was set."""
