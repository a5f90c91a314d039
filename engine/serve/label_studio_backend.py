"""The Label Studio ML backend behind routes/label_studio.py: what /setup, the webhook and
/predict do (docs/label-studio.md says it for users).

    /setup    the project's labelling config -> its labels (each a concept) and the model_version;
              the first time (or after the config changed), the annotations made before the
              backend was connected are read from Label Studio's export API, after answering
    webhook   ANNOTATION_CREATED / ANNOTATION_UPDATED: the task's image is fetched from Label
              Studio, the annotation's masks decoded per label and that annotation's shots
              replaced; ANNOTATIONS_DELETED (and a cancelled annotation) removes them. Answered at
              once, applied after (Label Studio gives a webhook 1 s), in arrival order per project
    /predict  every label with a shot is a concept: each task's image goes through the backbone
              once (with the other tasks of the request in the server's batches), one result per
              label (brush RLE, or polygons), its score, and the model_version

model_version is "insid3-<shots>-<digest>": the digest of the engine, the labelling config and
every shot, so it changes when an annotation does (Label Studio skips tasks that already hold a
prediction of the version /setup names) and comes back after a restart. Encoded references live
in the service's reference book like registered ones, re-encoded when evicted or changed.

Where Label Studio is: LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY when set (as Label Studio's own
backends read them), else the `hostname` and `access_token` /setup received (kept in memory only).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi.concurrency import run_in_threadpool
from PIL import Image

from insid3.engine.jobs.label_studio import (
    LabelingConfig,
    LabelStudioFormatError,
    annotation_masks,
    concept_score,
    mask_results,
    parse_labeling_config,
)
from insid3.engine.serve.errors import BadRequestError, ServeError, UnknownReferenceError
from insid3.engine.serve.label_studio_projects import ProjectBook, ProjectState
from insid3.engine.serve.service import Service, ShotUpload
from insid3.engine.serve.uploads import decode_upload
from insid3.errors import SettingsError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("insid3.serve.label_studio")
ANNOTATION_CHANGED = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_CREATED")
ANNOTATIONS_DELETED = ("ANNOTATIONS_DELETED", "ANNOTATION_DELETED")


def http_client() -> "httpx.AsyncClient":
    """A client for Label Studio's API (httpx comes with label-studio-sdk: the label-studio extra)."""
    try:
        import httpx
    except ImportError as exc:
        raise SettingsError(f"the Label Studio backend needs httpx ({exc}): pip install 'insid3[label-studio]'") from None
    return httpx.AsyncClient()


class LabelStudioUnreachableError(ServeError):
    """Label Studio did not give us a task's image or the project's annotations."""

    status = 502


@dataclass(frozen=True)
class LabelStudioSettings:
    """data_dir: where projects' shots are kept (INSID3_LABEL_STUDIO_DIR, default
    $XDG_DATA_HOME/insid3/label-studio); url, api_key: LABEL_STUDIO_URL, LABEL_STUDIO_API_KEY
    (override what /setup says); fetch_timeout_s: one request to Label Studio."""

    data_dir: Path
    url: str | None = None
    api_key: str | None = None
    fetch_timeout_s: float = 30.0

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> "LabelStudioSettings":
        environ = os.environ if environ is None else environ
        data_home = environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        data_dir = environ.get("INSID3_LABEL_STUDIO_DIR") or str(Path(data_home) / "insid3" / "label-studio")
        return cls(data_dir=Path(data_dir), url=environ.get("LABEL_STUDIO_URL") or None,
                   api_key=environ.get("LABEL_STUDIO_API_KEY") or None)


@dataclass(frozen=True)
class Connection:
    """Where to reach a project's Label Studio, and the token it accepts."""

    url: str
    token: str | None

    def headers_for(self, address: str) -> dict[str, str]:
        """The token goes to Label Studio only, never to another host a task's URL names."""
        if self.token and address.startswith(self.url.rstrip("/") + "/"):
            return {"Authorization": f"Token {self.token}"}
        return {}

    def address(self, url: str) -> str:
        if url.startswith(("http://", "https://")):
            return url
        if url.startswith("/"):
            return self.url.rstrip("/") + url
        raise LabelStudioFormatError(f"task image {url!r}: expected a Label Studio path (/data/...) or an http(s) URL")


def project_key(project: Any) -> str:
    """Label Studio's "<id>.<created timestamp>", from /setup's string or a webhook's project."""
    if isinstance(project, dict):
        try:
            stamp = datetime.fromisoformat(str(project["created_at"]).replace("Z", "+00:00")).timestamp()
            return f"{int(project['id'])}.{int(stamp)}"
        except (KeyError, TypeError, ValueError):
            raise BadRequestError("project: expected Label Studio's project with its id and created_at") from None
    if isinstance(project, (str, int)) and str(project):
        return str(project)
    raise BadRequestError(f"project {project!r}: expected Label Studio's '<id>.<timestamp>'")


def project_id(key: str) -> int:
    return int(key.split(".")[0])


class LabelStudioBackend:
    def __init__(self, service: Service, settings: LabelStudioSettings) -> None:
        self.service, self.settings = service, settings
        self.book = ProjectBook(settings.data_dir, service.settings.max_shots)
        self._connections: dict[str, Connection] = {}
        self._locks: dict[str, asyncio.Lock] = {}  # a project's events, in arrival order
        self._encoding: dict[str, asyncio.Lock] = {}  # a project's reference encodings
        self._pending: dict[str, int] = {}
        self._failures: dict[str, list[str]] = {}
        self._work: set[asyncio.Task] = set()
        self._encoded: dict[tuple[str, str], tuple[str, str]] = {}  # (project, label) -> (shots digest, reference id)

    # ------------------------------------------------------------------ versions
    def engine_digest(self) -> str:
        return hashlib.sha256(self.service.runner.segmenter.describe().encode()).hexdigest()[:8]

    def model_version(self, state: ProjectState) -> str:
        digest = hashlib.sha256(f"{self.engine_digest()}:{state.digest()}".encode()).hexdigest()[:12]
        return f"insid3-{len(state.shots)}shots-{digest}"

    # ------------------------------------------------------------------ connections
    def connection(self, key: str) -> Connection:
        known = self._connections.get(key)
        url = self.settings.url or (known.url if known else None)
        if not url:
            raise LabelStudioUnreachableError(
                f"project {key}: where is Label Studio? Set LABEL_STUDIO_URL (and LABEL_STUDIO_API_KEY), or let "
                "Label Studio call /setup first")
        return Connection(url, self.settings.api_key or (known.token if known else None))

    async def _get(self, client: httpx.AsyncClient, connection: Connection, url: str) -> httpx.Response:
        import httpx

        address = connection.address(url)
        try:
            response = await client.get(address, headers=connection.headers_for(address), follow_redirects=True,
                                        timeout=self.settings.fetch_timeout_s)
        except httpx.HTTPError as exc:
            raise LabelStudioUnreachableError(f"{address}: {type(exc).__name__}: {exc}") from None
        if response.status_code != 200:
            raise LabelStudioUnreachableError(f"{address}: Label Studio answered {response.status_code} "
                                              f"{response.text[:200]!r}")
        return response

    async def fetch_image(self, client: httpx.AsyncClient, key: str, task: dict, config: LabelingConfig) -> bytes:
        url = (task.get("data") or {}).get(config.image_key)
        if not isinstance(url, str) or not url:
            raise LabelStudioFormatError(f"task {task.get('id')}: no image under data.{config.image_key}")
        data = (await self._get(client, self.connection(key), url)).content
        if len(data) > self.service.settings.max_upload_bytes:
            raise LabelStudioFormatError(f"task {task.get('id')}: its image has {len(data)} bytes, over "
                                         f"max_upload_bytes={self.service.settings.max_upload_bytes}")
        return data

    # ------------------------------------------------------------------ /setup
    async def setup(self, payload: dict) -> dict:
        """The config checked (LabelStudioFormatError: unservable), the project's state kept or
        reset, the version answered; reading earlier annotations is scheduled, not awaited."""
        key = project_key(payload.get("project"))
        config = parse_labeling_config(str(payload.get("schema") or payload.get("label_config") or ""))
        if payload.get("hostname"):
            self._connections[key] = Connection(str(payload["hostname"]), payload.get("access_token") or None)
        state = await run_in_threadpool(self.book.configure, key, config)
        if not state.imported:
            self._schedule(key, self._import_existing(key))
        return {"model_version": self.model_version(state)}

    async def _import_existing(self, key: str) -> None:
        """The annotations already in Label Studio (its JSON export of annotated tasks), as if
        each had arrived by webhook; then the project counts as imported."""
        state = self.book.get(key)
        if state is None or state.imported:  # a /setup before this one's work ran has read them
            return
        connection = self.connection(key)
        url = f"/api/projects/{project_id(key)}/export?exportType=JSON&download_all_tasks=false"
        async with http_client() as client:
            tasks = (await self._get(client, connection, url)).json()
            for task in tasks:
                for annotation in task.get("annotations") or []:
                    await self._apply_annotation(client, key, annotation, task)
        await run_in_threadpool(self.book.mark_imported, key)

    # ------------------------------------------------------------------ webhook
    async def webhook(self, payload: dict) -> dict:
        action = str(payload.get("action") or "")
        project = payload.get("project")
        if action not in ANNOTATION_CHANGED + ANNOTATIONS_DELETED or not isinstance(project, dict):
            return {"status": "ignored", "action": action}
        key = project_key(project)
        if project.get("label_config") or self.book.get(key) is None:  # the project as it is now
            state = await run_in_threadpool(self.book.configure, key,
                                            parse_labeling_config(str(project.get("label_config") or "")))
            if not state.imported and (self.settings.url or key in self._connections):
                self._schedule(key, self._import_existing(key))
        if action in ANNOTATIONS_DELETED:
            ids = {int(a["id"]) for a in payload.get("annotations") or [] if isinstance(a, dict) and "id" in a}
            self._schedule(key, run_in_threadpool(self.book.remove_annotations, key, ids))
        else:
            annotations = payload.get("annotation")
            tasks = payload.get("task")
            pairs = (list(zip(annotations, tasks)) if isinstance(annotations, list) and isinstance(tasks, list)
                     else [(annotations, tasks)])
            for annotation, task in pairs:
                self._schedule(key, self._apply_one(key, annotation, task))
        return {"status": "accepted", "action": action}

    async def _apply_one(self, key: str, annotation: dict, task: dict) -> None:
        async with http_client() as client:
            await self._apply_annotation(client, key, annotation, task)

    async def _apply_annotation(self, client: httpx.AsyncClient, key: str, annotation: dict, task: dict) -> None:
        state = self.book.get(key)
        annotation_id = int(annotation["id"])
        if annotation.get("was_cancelled"):
            await run_in_threadpool(self.book.remove_annotations, key, {annotation_id})
            return
        masks = await run_in_threadpool(annotation_masks, annotation.get("result") or [], state.config)
        wanted = any(label in state.config.labels and mask.any() for label, mask in masks.items())
        image = await self.fetch_image(client, key, task, state.config) if wanted else None
        if image is not None:
            decoded = await run_in_threadpool(decode_upload, image, "task image", self.service.settings.max_image_pixels)
            for label, mask in masks.items():
                if decoded.size != (mask.shape[1], mask.shape[0]):
                    raise LabelStudioFormatError(
                        f"annotation {annotation_id}: its {label!r} mask is {mask.shape[1]}x{mask.shape[0]} but the task "
                        f"image is {decoded.size[0]}x{decoded.size[1]}")
        task_id = int(annotation.get("task") or task.get("id") or 0)
        await run_in_threadpool(self.book.put_annotation, key, annotation_id, task_id, image, masks)

    def _schedule(self, key: str, work: Any) -> None:
        """Run `work` after the answer, after the project's earlier work (its lock), counted as
        pending until it ends; a failure is logged and kept for GET /label-studio/projects/..."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._pending[key] = self._pending.get(key, 0) + 1

        async def run() -> None:
            try:
                async with lock:
                    await work
            except Exception as exc:  # noqa: BLE001 - background work must say why and go on
                log.warning("label-studio project %s: %s", key, exc)
                self._failures.setdefault(key, []).append(f"{type(exc).__name__}: {exc}")
            finally:
                self._pending[key] -= 1

        task = asyncio.get_running_loop().create_task(run())
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    # ------------------------------------------------------------------ /predict
    async def predict(self, payload: dict) -> dict:
        """{"results": [one prediction per task, in order]}."""
        key = project_key(payload.get("project"))
        tasks = payload.get("tasks")
        if not isinstance(tasks, list):
            raise BadRequestError("predict: expected a list of tasks")
        state = self.book.get(key)
        if state is None or (payload.get("label_config") and
                             parse_labeling_config(payload["label_config"]).digest != state.config.digest):
            state = await run_in_threadpool(self.book.configure, key,
                                            parse_labeling_config(str(payload.get("label_config") or "")))
        version = self.model_version(state)
        labels = [label for label in state.config.labels if state.shots_of(label)]
        if not labels:
            return {"results": [{"result": [], "score": 0.0, "model_version": version} for _ in tasks]}
        async with http_client() as client:
            answers = await asyncio.gather(*(self._predict_task(client, state, labels, task, version) for task in tasks))
        return {"results": list(answers)}

    async def _predict_task(self, client: httpx.AsyncClient, state: ProjectState, labels: list[str], task: dict,
                            version: str) -> dict:
        try:
            data = await self.fetch_image(client, state.key, task, state.config)
            image = await run_in_threadpool(decode_upload, data, f"task {task.get('id')} image",
                                            self.service.settings.max_image_pixels)
            prepared = await run_in_threadpool(self.service.prepare, image)
            result = await self._segment(state, labels, prepared)
        except Exception as exc:  # noqa: BLE001 - one task's failure must not lose the others' predictions
            log.warning("label-studio project %s, task %s: %s", state.key, task.get("id"), exc)
            return {"result": [], "score": 0.0, "model_version": version, "error": f"{type(exc).__name__}: {exc}"}
        items, scores = [], []
        for concept in result:
            score = concept_score(concept)
            found = await run_in_threadpool(mask_results, concept.mask, concept.name, state.config, score)
            items.extend(found)
            scores.extend([score] if found else [])
        return {"result": items, "score": min(scores) if scores else 0.0, "model_version": version}

    async def _segment(self, state: ProjectState, labels: list[str], prepared: Any) -> Any:
        """The labels' masks on one task, their references encoded once per shot set (and again,
        once, when the cache evicted one meanwhile)."""
        stale: set[str] = set()
        while True:
            named = await self._named_references(state, labels, stale)
            try:
                return (await self.service.segment_concepts(named, prepared)).result
            except UnknownReferenceError:
                if stale:
                    raise
                stale = {reference_id for _, reference_id in named}

    async def _named_references(self, state: ProjectState, labels: list[str], stale: set[str]) -> list[tuple[str, str]]:
        """(label, reference_id) in label order. One project's encodings happen one at a time, so
        the tasks of a request that all need a new reference share its one encoding."""
        async with self._encoding.setdefault(state.key, asyncio.Lock()):
            return [(label, await self._reference_id(state, label, stale)) for label in labels]

    async def _reference_id(self, state: ProjectState, label: str, stale: set[str]) -> str:
        shots = state.shots_of(label)
        digest = hashlib.sha256(repr([(s.image, s.mask) for s in shots]).encode()).hexdigest()
        known = self._encoded.get((state.key, label))
        if known is not None and known[0] == digest and known[1] not in stale:
            return known[1]
        uploads = []
        for shot in shots:
            image_bytes, mask_bytes = await run_in_threadpool(self.book.shot_files, state.key, shot)
            uploads.append(ShotUpload(image_bytes, mask_bytes, Image.open(io.BytesIO(image_bytes)),
                                      Image.open(io.BytesIO(mask_bytes))))
        registered = await self.service.register(uploads)
        if known is not None:
            await self.service.delete(known[1])
        self._encoded[(state.key, label)] = (digest, registered.reference_id)
        return registered.reference_id

    # ------------------------------------------------------------------ introspection
    def describe_project(self, key: str) -> dict | None:
        """What GET /label-studio/projects/{key} shows: the labels' shots, the version, pending work."""
        state = self.book.get(key)
        if state is None:
            return None
        return {
            "project": key, "model_version": self.model_version(state), "imported": state.imported,
            "labels": {label: [{"annotation": s.annotation, "task": s.task, "image_sha256": s.image,
                                "mask_sha256": s.mask} for s in state.shots_of(label)]
                       for label in state.config.labels},
            "pending": self._pending.get(key, 0), "failures": list(self._failures.get(key, [])),
        }

