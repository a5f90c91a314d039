"""What every answer of the server is made of: the mask PNG, the timing headers, the JSON error."""

from __future__ import annotations

import io

import numpy as np
from fastapi.responses import JSONResponse
from PIL import Image


def encode_png(mask: np.ndarray) -> bytes:
    """A bool (H, W) mask as an 8-bit grayscale PNG, 0 background and 255 foreground."""
    buffer = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(buffer, format="PNG")
    return buffer.getvalue()


def timing_headers(timings_ms: dict[str, float], batch_size: int) -> dict[str, str]:
    """Per-stage timings as `X-Insid3-Timing-<Stage>-Ms` headers and one `Server-Timing` header."""
    headers = {f"X-Insid3-Timing-{stage.capitalize()}-Ms": f"{ms:.3f}" for stage, ms in timings_ms.items()}
    headers["Server-Timing"] = ", ".join(f"{stage};dur={ms:.3f}" for stage, ms in timings_ms.items())
    headers["X-Insid3-Batch-Size"] = str(batch_size)
    return headers


def error_response(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every error the server answers: {"detail": "<one line>"}."""
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)
