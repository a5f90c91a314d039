// The page's colours for things it tells apart: numbered points (matching.js) and named concepts
// (concepts.js). Bright and far apart, so neighbours on an image stay distinct at a glance.

export const COLOURS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
  "#bcf60c", "#fabebe"];

// "#rrggbb" -> [r, g, b]
export const rgbOf = (hex) => [1, 3, 5].map((at) => parseInt(hex.slice(at, at + 2), 16));
