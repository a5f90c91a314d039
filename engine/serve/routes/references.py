"""Segmentation references: registered once, then named by id in any number of /v1/segment calls.

    POST   /v1/references        multipart: image, mask (repeat both for more shots), and optionally
                                 profile (a calibration profile's JSON, a field or a file:
                                 profiles.py; 400 when made for another bundle)
                                 -> 201 {"reference_id", "shots", "expires_at"[, "profile"]}
    DELETE /v1/references/{id}   -> 204, or 404 unknown or expired
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from insid3.engine.serve.deps import ReadyService
from insid3.engine.serve.errors import BadRequestError, UnknownReferenceError
from insid3.engine.serve.service import ShotUpload
from insid3.engine.serve.uploads import check_mask, read_upload

router = APIRouter()


@router.post("/v1/references", status_code=201)
async def register_reference(
    service: ReadyService,
    image: Annotated[list[UploadFile], File(description="reference image; repeat for more shots")],
    mask: Annotated[list[UploadFile], File(description="its mask (any pixel > 0 is foreground)")],
    profile: Annotated[UploadFile | str | None, Form(description="a calibration profile's JSON (insid3 calibrate), "
                                                      "as a field or a file: its settings for this reference")] = None,
) -> dict:
    settings = service.settings
    chosen = None
    if profile is not None and not (isinstance(profile, str) and not profile.strip()):
        text = profile if isinstance(profile, str) else await profile.read()
        chosen = service.profile_of(text)
    if len(image) != len(mask):
        raise BadRequestError(f"{len(image)} image field(s) but {len(mask)} mask field(s): send one mask per image")
    if len(image) > settings.max_shots:
        raise BadRequestError(f"{len(image)} shots exceed the limit of {settings.max_shots} (max_shots)")
    shots = []
    for index, (image_file, mask_file) in enumerate(zip(image, mask)):
        image_bytes, decoded_image = await read_upload(image_file, f"image[{index}]", settings.max_image_pixels)
        mask_bytes, decoded_mask = await read_upload(mask_file, f"mask[{index}]", settings.max_image_pixels)
        await run_in_threadpool(check_mask, decoded_mask, decoded_image.size, index)
        shots.append(ShotUpload(image_bytes, mask_bytes, decoded_image, decoded_mask))
    registered = await service.register(shots, chosen)
    answer = {"reference_id": registered.reference_id, "shots": registered.shots, "expires_at": registered.expires_at_utc}
    return answer if chosen is None else {**answer, "profile": chosen.to_json()}


@router.delete("/v1/references/{reference_id}", status_code=204)
async def delete_reference(service: ReadyService, reference_id: str) -> Response:
    if not await service.delete(reference_id):
        raise UnknownReferenceError(f"reference {reference_id!r} is unknown or expired")
    return Response(status_code=204)
