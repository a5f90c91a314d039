// How far to trust each target's result (docs/quality.md): the server's quality record and flags
// per mask, summed up per target (its lowest score, the union of its flags), and the order and
// filter the target list is shown in.

export const FLAGS = ["empty", "tiny", "huge", "fragmented", "low-score"];
// "absent": the mask scored below its reference's profile min_score, so the server emptied it
// (its record says min_score and absent: docs/serve.md); shown and filtered as one more flag.
export const SHOWN_FLAGS = [...FLAGS, "absent"];

const flagsOf = (record) => (record.absent ? [...record.flags, "absent"] : record.flags);

// result: a TargetList result, done, of mode segment ({quality: record}) or concepts ({quality:
// {name: record}}) -> {score, flags, parts: [{name, score, flags}]}, or null (match mode, not
// done, or a server that sends no quality).
export function qualityOf(result, mode) {
  if (result.state !== "done" || !result.quality || mode === "match") return null;
  const parts = (mode === "segment" ? [{ name: "", ...result.quality }]
    : Object.entries(result.quality).map(([name, record]) => ({ name, ...record })))
    .map((part) => ({ ...part, flags: flagsOf(part), minScore: part.min_score ?? null }));
  if (!parts.length) return null;
  return { score: Math.min(...parts.map((part) => part.score)),
    flags: SHOWN_FLAGS.filter((flag) => parts.some((part) => part.flags.includes(flag))), parts };
}

// "0.63", or with a profile's threshold "0.42 < 0.70" / "0.81 ≥ 0.70".
const scoreText = (part) => (part.minScore === null ? part.score.toFixed(2)
  : `${part.score.toFixed(2)} ${part.score < part.minScore ? "<" : "≥"} ${part.minScore.toFixed(2)}`);

// "score 0.63 · tiny, fragmented", or per concept "ellipse 0.63 · box 0.12 (low-score)".
export function qualityText(quality) {
  if (!quality) return "";
  const [only] = quality.parts;
  if (quality.parts.length === 1 && only.name === "") {
    return `score ${scoreText(only)}${only.flags.length ? ` · ${only.flags.join(", ")}` : ""}`;
  }
  return quality.parts.map((part) => `${part.name} ${scoreText(part)}`
    + (part.flags.length ? ` (${part.flags.join(", ")})` : "")).join(" · ");
}

export const SORTS = ["added", "flagged-first", "score-ascending", "score-descending"];
export const FILTERS = ["all", "flagged", "unflagged", ...SHOWN_FLAGS];

// entries: [{quality (qualityOf), ...}] in the order they were added -> a sorted copy. Targets
// without a quality keep their order, after those with one; ties keep the order they were added.
export function arrange(entries, sort) {
  if (sort === "added") return [...entries];
  const key = (entry) => {
    const { quality } = entry;
    if (!quality) return [2, 0];
    const flagged = sort === "flagged-first" && quality.flags.length === 0 ? 1 : 0;
    return [flagged, sort === "score-descending" ? -quality.score : quality.score];
  };
  return entries.map((entry, index) => ({ entry, index, key: key(entry) }))
    .sort((a, b) => a.key[0] - b.key[0] || a.key[1] - b.key[1] || a.index - b.index)
    .map(({ entry }) => entry);
}

// Whether a target with this quality is shown under `filter`: "all" shows every target; the
// others only targets with a quality (flagged, unflagged, or raising that one flag).
export function passes(quality, filter) {
  if (filter === "all") return true;
  if (!quality) return false;
  if (filter === "flagged") return quality.flags.length > 0;
  if (filter === "unflagged") return quality.flags.length === 0;
  return quality.flags.includes(filter);
}
