// Label maps on the page: the server's label PNG (0 background, i the i-th concept) read as the
// values it stores, tinted per concept for the overlay, summed up in words, and the COCO
// documents of single targets merged into one instances file.

const TINT_ALPHA = 140; // a little over half: the concept's colour reads, the image shows through

// A PNG's stored pixel values: palette indices (colour type 3) or gray levels (type 0), bit depth
// 1 to 16, not interlaced. Read here rather than decoded by the browser, which would give the
// palette's colours after colour management, not the labels. -> {width, height, data}
export async function readPngValues(blob) {
  const bytes = new Uint8Array(await blob.arrayBuffer());
  const view = new DataView(bytes.buffer);
  const { header, compressed } = pngChunks(bytes, view);
  const { width, height, depth, colourType, interlace } = header;
  if (![0, 3].includes(colourType) || interlace !== 0) {
    throw new Error(`not a label PNG (colour type ${colourType}, interlace ${interlace})`);
  }
  const stride = Math.ceil((width * depth) / 8);
  const rows = unfilter(await inflate(compressed), stride, height, Math.max(1, depth / 8));
  const data = depth === 16 ? new Uint16Array(width * height) : new Uint8Array(width * height);
  for (let y = 0; y < height; y += 1) {
    const row = y * stride;
    for (let x = 0; x < width; x += 1) {
      if (depth === 16) data[y * width + x] = (rows[row + 2 * x] << 8) | rows[row + 2 * x + 1];
      else if (depth === 8) data[y * width + x] = rows[row + x];
      else { // several pixels a byte, the first in the high bits
        const bit = x * depth;
        data[y * width + x] = (rows[row + (bit >> 3)] >> (8 - depth - (bit & 7))) & ((1 << depth) - 1);
      }
    }
  }
  return { width, height, data };
}

function pngChunks(bytes, view) {
  const signature = [137, 80, 78, 71, 13, 10, 26, 10];
  if (!signature.every((value, i) => bytes[i] === value)) throw new Error("not a PNG file");
  let header = null;
  const compressed = [];
  for (let offset = 8; offset + 8 <= bytes.length;) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    if (type === "IHDR") {
      header = { width: view.getUint32(offset + 8), height: view.getUint32(offset + 12), depth: bytes[offset + 16],
        colourType: bytes[offset + 17], interlace: bytes[offset + 20] };
    } else if (type === "IDAT") compressed.push(bytes.subarray(offset + 8, offset + 8 + length));
    else if (type === "IEND") break;
    offset += 12 + length;
  }
  if (!header) throw new Error("a PNG file without its header");
  return { header, compressed };
}

async function inflate(parts) {
  const stream = new Blob(parts).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// PNG's per-row filters undone in place (each row: its filter type byte, then stride bytes).
function unfilter(raw, stride, height, step) {
  const out = new Uint8Array(stride * height);
  for (let y = 0; y < height; y += 1) {
    const filter = raw[y * (stride + 1)];
    const source = y * (stride + 1) + 1;
    const row = y * stride;
    for (let i = 0; i < stride; i += 1) {
      const left = i >= step ? out[row + i - step] : 0;
      const up = y > 0 ? out[row - stride + i] : 0;
      const upLeft = y > 0 && i >= step ? out[row - stride + i - step] : 0;
      let predicted = 0;
      if (filter === 1) predicted = left;
      else if (filter === 2) predicted = up;
      else if (filter === 3) predicted = (left + up) >> 1;
      else if (filter === 4) predicted = paeth(left, up, upLeft);
      out[row + i] = (raw[source + i] + predicted) & 0xff;
    }
  }
  return out;
}

function paeth(a, b, c) {
  const p = a + b - c;
  const [pa, pb, pc] = [Math.abs(p - a), Math.abs(p - b), Math.abs(p - c)];
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

// The label map tinted: label i in colours[i - 1] ([r, g, b]), the background left clear.
export function labelImageData(label, colours) {
  const image = new ImageData(label.width, label.height);
  for (let i = 0; i < label.data.length; i += 1) {
    const colour = colours[label.data[i] - 1];
    if (colour) image.data.set([...colour, TINT_ALPHA], 4 * i);
  }
  return image;
}

// What a target's label map holds, in words: each found concept and its share of the image.
export function labelSummary(label, names) {
  const counts = new Array(names.length + 1).fill(0);
  for (let i = 0; i < label.data.length; i += 1) counts[label.data[i]] += 1;
  const found = names.map((name, i) => [name, counts[i + 1]]).filter(([, count]) => count > 0)
    .map(([name, count]) => `${name} ${((100 * count) / label.data.length).toFixed(1)}%`);
  return found.length ? `Found: ${found.join(" · ")}` : "None of the concepts is found in this image.";
}

// One COCO instances file from the server's per-target documents (format=coco): images numbered
// 1.. in the page's order (file_name as the page lists the target), annotations 1.. pointing at
// them, and one category per concept name, ids 1.. in the order of `names` (any name a document
// has beyond them after), each document's category ids mapped by name.
// entries: [{fileName, coco}]
export function mergeCoco(entries, names) {
  const categories = [...names];
  const categoryId = (name) => {
    if (!categories.includes(name)) categories.push(name);
    return categories.indexOf(name) + 1;
  };
  const images = [];
  const annotations = [];
  for (const { fileName, coco } of entries) {
    const nameOf = new Map(coco.categories.map((category) => [category.id, category.name]));
    const imageIds = new Map();
    for (const image of coco.images) {
      imageIds.set(image.id, images.length + 1);
      images.push({ ...image, id: images.length + 1, file_name: coco.images.length === 1 ? fileName : image.file_name });
    }
    for (const annotation of coco.annotations) {
      annotations.push({ ...annotation, id: annotations.length + 1, image_id: imageIds.get(annotation.image_id),
        category_id: categoryId(nameOf.get(annotation.category_id)) });
    }
  }
  return { info: { description: "insid3-serve web page concepts" }, images, annotations,
    categories: categories.map((name, index) => ({ id: index + 1, name })) };
}
