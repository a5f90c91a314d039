// Masks on the page: COCO compressed RLE from the API, 8-bit grayscale PNG files, and the COCO
// instances file. A mask here is {width, height, data}: data a Uint8Array of width*height
// bytes in row-major order, 1 for foreground, 0 for background.

// COCO's compressed RLE string -> its run lengths (zeros first, column-major). Each count is
// written in 5-bit chunks, least significant first; a set 0x20 bit means more chunks follow, a
// set 0x10 bit in the last chunk means the value is negative, and from the third count on each
// value is a delta against the count two places back. Arithmetic, not bit shifts: JavaScript's
// shifts wrap at 32 bits.
export function decompressCounts(text) {
  const counts = [];
  let position = 0;
  while (position < text.length) {
    let value = 0;
    let scale = 1;
    let more = true;
    while (more) {
      const chunk = text.charCodeAt(position) - 48;
      value += (chunk & 0x1f) * scale;
      scale *= 32;
      more = (chunk & 0x20) !== 0;
      position += 1;
      if (!more && (chunk & 0x10)) value -= scale;
    }
    if (counts.length > 2) value += counts[counts.length - 2];
    counts.push(value);
  }
  return counts;
}

// {"size": [H, W], "counts": "..."} -> a mask.
export function decodeRle(rle) {
  const [height, width] = rle.size;
  const counts = typeof rle.counts === "string" ? decompressCounts(rle.counts) : rle.counts;
  const data = new Uint8Array(width * height);
  let index = 0; // column-major position
  counts.forEach((run, k) => {
    if (k % 2 === 1) {
      for (let i = index; i < index + run; i += 1) data[(i % height) * width + Math.floor(i / height)] = 1;
    }
    index += run;
  });
  if (index !== width * height) throw new Error(`RLE counts cover ${index} pixels, size says ${height}x${width}`);
  return { width, height, data };
}

export function maskArea(mask) {
  let area = 0;
  for (let i = 0; i < mask.data.length; i += 1) area += mask.data[i];
  return area;
}

// COCO's [x, y, width, height] of the foreground; zeros for an empty mask (as mask_bbox in engine/jobs/outputs/files.py).
export function maskBbox(mask) {
  let [minX, minY, maxX, maxY] = [Infinity, Infinity, -1, -1];
  for (let y = 0; y < mask.height; y += 1) {
    const row = y * mask.width;
    for (let x = 0; x < mask.width; x += 1) {
      if (mask.data[row + x]) {
        if (x < minX) minX = x;
        if (x > maxX) maxX = x;
        if (y < minY) minY = y;
        maxY = y;
      }
    }
  }
  return maxX < 0 ? [0, 0, 0, 0] : [minX, minY, maxX - minX + 1, maxY - minY + 1];
}

// A canvas's alpha channel (what the brush painted) -> a mask: alpha >= 128 is foreground, so
// the anti-aliased rim of a stroke counts as painted where it is at least half covered.
export function maskFromAlpha(imageData) {
  const { width, height, data: rgba } = imageData;
  const data = new Uint8Array(width * height);
  for (let i = 0; i < data.length; i += 1) data[i] = rgba[4 * i + 3] >= 128 ? 1 : 0;
  return { width, height, data };
}

// The mask tinted magenta (the colour of insid3-segment's overlays) at half opacity, to draw
// over its image.
export function tintedImageData(mask) {
  const image = new ImageData(mask.width, mask.height);
  for (let i = 0; i < mask.data.length; i += 1) {
    if (mask.data[i]) image.data.set([255, 0, 160, 128], 4 * i);
  }
  return image;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k += 1) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const chunk = new Uint8Array(12 + data.length);
  const view = new DataView(chunk.buffer);
  view.setUint32(0, data.length);
  chunk.set(Array.from(type, (ch) => ch.charCodeAt(0)), 4);
  chunk.set(data, 8);
  view.setUint32(8 + data.length, crc32(chunk.subarray(4, 8 + data.length)));
  return chunk;
}

async function zlibDeflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// A mask as the PNG the API and insid3-segment write: 8-bit grayscale, 0 or 255, its own size.
// (A canvas can only export RGBA; masks are single-channel files for every tool that reads them.)
export async function maskPng(mask) {
  const { width, height, data } = mask;
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 0, 0, 0, 0], 8); // bit depth 8, grayscale, deflate, no filter, no interlace
  const rows = new Uint8Array(height * (width + 1)); // each row: filter type 0, then its pixels
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) rows[y * (width + 1) + 1 + x] = data[y * width + x] ? 255 : 0;
  }
  const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  const parts = [signature, pngChunk("IHDR", header), pngChunk("IDAT", await zlibDeflate(rows)),
    pngChunk("IEND", new Uint8Array(0))];
  return new Blob(parts, { type: "image/png" });
}

// One COCO instances file for the page's targets, the layout of insid3-segment's
// masks.coco.json: an image entry per target, an annotation per non-empty mask (compressed
// RLE as the API sent it, area, bbox, score: the mask's quality score, iscrowd 0), one category.
// records: [{fileName, rle, area, bbox, quality}] in the page's order.
export function cocoInstances(records, category) {
  const images = [];
  const annotations = [];
  records.forEach((record, index) => {
    const [height, width] = record.rle.size;
    images.push({ id: index + 1, file_name: record.fileName, height, width });
    if (record.area > 0) {
      const score = record.quality ? { score: record.quality.score } : {}; // COCO's results convention
      annotations.push({ id: annotations.length + 1, image_id: index + 1, category_id: 1,
        segmentation: record.rle, area: record.area, bbox: record.bbox, ...score, iscrowd: 0 });
    }
  });
  return { info: { description: "insid3-serve web page masks" }, images, annotations,
    categories: [{ id: 1, name: category }] };
}
