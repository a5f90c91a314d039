// The page's only link to the server: the insid3-serve API beside it (app.py). Every failure
// becomes an ApiError whose message is a sentence for a person; the server's own one-line
// detail is kept beside it for whoever wants the specifics.

export class ApiError extends Error {
  constructor(message, { status = 0, detail = "", retryAfterS = null } = {}) {
    super(message);
    Object.assign(this, { status, detail, retryAfterS });
  }
}

const megabytes = (bytes) => `${(bytes / 2 ** 20).toFixed(bytes < 2 ** 20 ? 2 : 1)} MB`;
const megapixels = (pixels) => `${(pixels / 1e6).toFixed(pixels < 1e6 ? 2 : 1)} megapixels`;

// The sentence for an answer of the API (status, its {"detail"} line). Upload fields are named
// image[i] / mask[i] for shot i + 1 of a reference, image for a target.
export function plainWords(status, detail) {
  const shot = /(?:image|mask)\[(\d+)\]/.exec(detail);
  const which = shot ? `shot ${Number(shot[1]) + 1}` : "the image";
  let match;
  if (status === 413 && (match = /(\d+)x(\d+) = (\d+) pixels exceeds the limit of (\d+)/.exec(detail))) {
    return `The ${shot ? `image of ${which}` : "image"} is ${match[1]}×${match[2]} pixels (${megapixels(+match[3])}); `
      + `this server accepts at most ${megapixels(+match[4])} per image.`;
  }
  if (status === 413 && (match = /body (is|passed) (\d+) bytes, over the limit of (\d+)/.exec(detail))) {
    const size = match[1] === "is" ? `is ${megabytes(+match[2])}` : "is larger";
    return `This upload ${size}; this server accepts at most ${megabytes(+match[3])} per request.`;
  }
  if (status === 413) return "This upload is too large for this server.";
  if (status === 400 && /mask\[\d+\] is empty/.test(detail)) {
    return `The reference mask${shot ? ` of ${which}` : ""} is empty: paint over the object with the brush (B) first.`;
  }
  if (status === 400 && /must have its image's size/.test(detail)) {
    return `The mask of ${which} does not have its image's size.`;
  }
  if (status === 400 && /cannot decode/.test(detail)) return `The server cannot read ${which} as an image.`;
  if (status === 400 && /corrupt|empty/.test(detail)) return `The file of ${which} is damaged, incomplete or empty.`;
  if (status === 400 && /no points given/.test(detail)) return "Click on the reference to place at least one point first.";
  if (status === 400 && /lies outside/.test(detail)) return "A point lies outside the reference image.";
  if (status === 400 && /calibrated for another bundle/.test(detail)) {
    return "The profile was calibrated for another bundle than the server's: calibrate with the server's bundle, or load another profile.";
  }
  if (status === 400 && /^profile/.test(detail)) return "The server refused the profile.";
  if (status === 400 && /names must differ/.test(detail)) return "Two concepts have the same name: give each its own.";
  if (status === 422 && /^name/.test(detail)) return "Every concept needs a name.";
  if (status === 404) return "The server no longer has this reference (it expired or was evicted).";
  if (status === 503 && /queue/.test(detail)) return "The server is busy with other images.";
  if (status === 503) return "The server is still loading its model; try again in a moment.";
  if (status >= 500) return "The server failed on this request.";
  return "The server refused this request.";
}

async function call(path, body) {
  let response;
  try {
    response = await fetch(path, { method: "POST", body });
  } catch {
    throw new ApiError("The server cannot be reached: is insid3-serve still running?");
  }
  if (response.ok) return response;
  let detail = "";
  try {
    detail = (await response.json()).detail ?? "";
  } catch {
    detail = `HTTP ${response.status}`;
  }
  const retryAfter = response.headers.get("Retry-After");
  throw new ApiError(plainWords(response.status, String(detail)), {
    status: response.status, detail: String(detail), retryAfterS: retryAfter === null ? null : Number(retryAfter),
  });
}

// shots: [{file, maskPng: Blob}], profileText: a calibration profile's JSON or null (profile.js)
// -> {reference_id, shots, expires_at[, profile]}
export async function registerReference(shots, profileText = null) {
  const form = new FormData();
  shots.forEach((shot, index) => {
    form.append("image", shot.file, shot.file.name);
    form.append("mask", shot.maskPng, `mask-${index + 1}.png`);
  });
  if (profileText !== null) form.append("profile", profileText);
  return (await call("/v1/references", form)).json();
}

// Server-Timing "queue;dur=1.2, backbone;dur=30.5" -> [["queue", 1.2], ["backbone", 30.5]]
export function parseServerTiming(header) {
  return (header ?? "").split(",").map((part) => /^\s*([\w-]+);dur=([\d.]+)/.exec(part)).filter(Boolean)
    .map((match) => [match[1], Number(match[2])]);
}

// One target -> {rle, quality, timings: [[stage, ms]], batchSize}. The mask comes as COCO
// compressed RLE: compact, what the COCO file holds, and decoded here for the overlay and the
// PNG; quality: its record and flags (docs/quality.md), null from a server without them.
export async function segmentTarget(referenceId, file) {
  const form = new FormData();
  form.append("reference_id", referenceId);
  form.append("format", "rle");
  form.append("image", file, file.name);
  const response = await call("/v1/segment", form);
  const { quality = null, ...rle } = await response.json();
  return { rle, quality, ...timingsOf(response) };
}

// Several concepts on one target (format label-png and coco of POST /v1/segment, asked side by
// side: the label map resolves the concepts' overlaps, COCO keeps each concept's whole mask, and
// neither can be made from the other) -> {labelPng: Blob, labels: [name...], coco, quality: {name: record},
// timings, batchSize}.
export async function segmentConcepts(referenceIds, names, file) {
  const ask = (format) => {
    const form = new FormData();
    referenceIds.forEach((id, index) => {
      form.append("reference_id", id);
      form.append("name", names[index]);
    });
    form.append("format", format);
    form.append("image", file, file.name);
    return call("/v1/segment", form);
  };
  const [labelAnswer, cocoAnswer] = await Promise.all([ask("label-png"), ask("coco")]);
  return { labelPng: await labelAnswer.blob(), labels: JSON.parse(labelAnswer.headers.get("X-Insid3-Labels") ?? "[]"),
    coco: await cocoAnswer.json(), quality: JSON.parse(labelAnswer.headers.get("X-Insid3-Quality") ?? "{}"),
    ...timingsOf(labelAnswer) };
}

// What every engine answer reports: per-stage milliseconds, and how many targets shared the backbone call.
function timingsOf(response) {
  return { timings: parseServerTiming(response.headers.get("Server-Timing")),
    batchSize: Number(response.headers.get("X-Insid3-Batch-Size") ?? 1) };
}

export async function deleteReference(referenceId, kind = "references") {
  await fetch(`/v1/${kind}/${encodeURIComponent(referenceId)}`, { method: "DELETE" }).catch(() => null);
}

// Keypoint matching (POST /v1/match): the reference image is registered once
// (/v1/match/references), its points go with every target.
export async function registerMatchReference(file) {
  const form = new FormData();
  form.append("image", file, file.name);
  return (await call("/v1/match/references", form)).json();
}

// -> {points: [[x, y], ...], peak_similarity: [...], size: [H, W], timings, batchSize}
export async function matchTarget(referenceId, points, file) {
  const form = new FormData();
  form.append("reference_id", referenceId);
  form.append("points", JSON.stringify(points));
  form.append("image", file, file.name);
  const response = await call("/v1/match", form);
  return { ...(await response.json()), ...timingsOf(response) };
}

// What /readyz says: {ready, engine} (engine: the backend description).
export async function serverState() {
  try {
    const response = await fetch("/readyz");
    const body = await response.json();
    return { ready: response.ok, engine: body.engine ?? body.detail ?? "" };
  } catch {
    return { ready: false, engine: "unreachable" };
  }
}
