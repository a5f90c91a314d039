// A calibration profile (insid3 calibrate, docs/calibration.md) loaded from a JSON file: its
// settings and the bundle it was made for, shown on the page; its text goes with every reference
// the page registers (the server checks it against its bundle and answers 400 if not its own).

export const KIND = "insid3-profile";
export const VERSION = 1;

// file: a File -> {name, text, profile}, or an Error saying why it is no profile.
export async function readProfile(file) {
  const text = await file.text();
  let profile;
  try {
    profile = JSON.parse(text);
  } catch {
    throw new Error(`${file.name} is not JSON: load the profile.json that insid3 calibrate wrote.`);
  }
  if (profile?.kind !== KIND) throw new Error(`${file.name} is not an insid3 profile (insid3 calibrate writes them).`);
  if (profile.version !== VERSION) {
    throw new Error(`${file.name} is profile version ${profile.version}; this page reads version ${VERSION}.`);
  }
  if (!profile.hyperparameters || !profile.bundle) throw new Error(`${file.name} is a malformed profile.`);
  return { name: file.name, text, profile };
}

const number = (value) => (typeof value === "number" ? String(Number(value.toPrecision(6))) : String(value));

// "svd_components 8 · tau 0.9 · merge_threshold 0.45 · refine bilinear · min_score 0.42"
export function settingsText(profile) {
  const { svd_components: s, tau, merge_threshold: merge } = profile.hyperparameters;
  const refine = profile.refine?.method ?? "bilinear";
  const minScore = profile.min_score ? number(profile.min_score.threshold) : "none";
  return `svd_components ${s} · tau ${number(tau)} · merge_threshold ${number(merge)} · refine ${refine}`
    + ` · min_score ${minScore}`;
}

// "dinov3_vits16, model 59ca11e0a76a, basis 83bade27acb3, 448 px": what the profile was made for.
export function bundleText(profile) {
  const { arch, model_sha256: model, basis_sha256: basis, resolution } = profile.bundle;
  return `${arch || "model"}, model ${String(model).slice(0, 12)}, basis ${String(basis).slice(0, 12)}, ${resolution} px`;
}

// The profile's score threshold (null: none): below it a concept is judged absent.
export function minScoreOf(profile) {
  return profile?.min_score ? profile.min_score.threshold : null;
}
