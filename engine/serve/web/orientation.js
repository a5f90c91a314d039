// Images on the stored pixel grid. The server (PIL) and COCO ignore EXIF orientation, but a
// browser applies it whenever it decodes a JPEG (createImageBitmap and drawImage both), so a
// phone photo would be shown, and its mask painted, rotated against what the server segments.
// We read the orientation tag and undo it, so the page paints on the server's grid.

// The EXIF orientation (1-8) of a JPEG file; 1 for anything else or anything unreadable.
export async function readOrientation(file) {
  try {
    const view = new DataView(await file.slice(0, 256 * 1024).arrayBuffer());
    if (view.getUint16(0) !== 0xffd8) return 1; // not a JPEG
    let offset = 2;
    while (offset + 4 <= view.byteLength) {
      const marker = view.getUint16(offset);
      if ((marker & 0xff00) !== 0xff00 || marker === 0xffda) return 1; // garbage, or pixels start
      if (marker === 0xffe1 && view.getUint32(offset + 4) === 0x45786966) return tiffOrientation(view, offset + 10);
      offset += 2 + view.getUint16(offset + 2);
    }
  } catch (error) {
    if (!(error instanceof RangeError)) throw error; // a truncated header: no orientation
  }
  return 1;
}

function tiffOrientation(view, tiff) {
  const little = view.getUint16(tiff) === 0x4949; // "II": little-endian
  const ifd = tiff + view.getUint32(tiff + 4, little);
  const entries = view.getUint16(ifd, little);
  for (let i = 0; i < entries; i += 1) {
    const entry = ifd + 2 + 12 * i;
    if (view.getUint16(entry, little) === 0x0112) {
      const value = view.getUint16(entry + 8, little);
      return value >= 1 && value <= 8 ? value : 1;
    }
  }
  return 1;
}

// setTransform arguments taking the displayed (oriented) image back to the stored grid of W x H:
// the inverse of each EXIF orientation's stored -> displayed map.
function storedTransform(orientation, W, H) {
  return {
    1: [1, 0, 0, 1, 0, 0],
    2: [-1, 0, 0, 1, W, 0], // mirrored left-right
    3: [-1, 0, 0, -1, W, H], // rotated 180
    4: [1, 0, 0, -1, 0, H], // mirrored top-bottom
    5: [0, 1, 1, 0, 0, 0], // transposed
    6: [0, -1, 1, 0, 0, H], // shown rotated 90 clockwise
    7: [0, -1, -1, 0, W, H], // transversed
    8: [0, 1, -1, 0, W, 0], // shown rotated 90 counter-clockwise
  }[orientation];
}

// A decoded image file drawn on a canvas of its stored pixel grid (what PIL reads).
export async function storedCanvas(file) {
  const bitmap = await createImageBitmap(file);
  const orientation = await readOrientation(file);
  const swapped = orientation >= 5;
  const canvas = document.createElement("canvas");
  canvas.width = swapped ? bitmap.height : bitmap.width;
  canvas.height = swapped ? bitmap.width : bitmap.height;
  const context = canvas.getContext("2d");
  context.setTransform(...storedTransform(orientation, canvas.width, canvas.height));
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  return canvas;
}
