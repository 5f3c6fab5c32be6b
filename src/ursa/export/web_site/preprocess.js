// ursa's validation-time preprocessing in the browser: the same input tensor as Python's
// ursa.core.preprocess.prepare_input, computed from the decoded pixels in plain JavaScript.
//
// What Python does, step by step, and how this file matches it:
//   1. open the file (ursa.core.imageio.open_image): a JPEG may decode at 1/2, 1/4 or 1/8
//      scale (PreprocessConfig.reduced_decode, Pillow's draft mode); the browser cannot, so
//      the full decode is averaged over the same blocks, in the file's stored orientation;
//   2. EXIF orientation applied; transparency composited onto white; 8-bit RGB;
//   3. resize by the bundle's method (crop / pad with zeros, border or reflection / squish)
//      with Pillow's own resampling: its filters, its support and antialiasing, its
//      fixed-point arithmetic and rounding (Pillow's libImaging/Resample.c, re-implemented),
//      never the canvas's own scaling;
//   4. normalise to (3, size, size) float32, rounding as numpy's float32 arithmetic does.
// PNG, GIF, BMP and WebP give the same tensor as Python bit for bit; JPEGs differ where
// the browser's decoder or the reduced-scale emulation does (measured in docs/web-export.md).
"use strict";

(function (global) {
  const PRECISION_BITS = 22;          // Pillow's 8-bit resampling: 32 - 8 - 2
  const ONE = 1 << PRECISION_BITS;
  const HALF = 1 << (PRECISION_BITS - 1);

  // Pillow's filters (Resample.c): weight(x) and support in source pixels at scale 1.
  const FILTERS = {
    bicubic: {
      support: 2.0,
      weight(x) {
        const a = -0.5;
        if (x < 0) x = -x;
        if (x < 1) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
      },
    },
    bilinear: {
      support: 1.0,
      weight(x) {
        if (x < 0) x = -x;
        return x < 1 ? 1.0 - x : 0.0;
      },
    },
  };

  // An error the page shows as it is: what is wrong with the input and what to do.
  class InputError extends Error {
    constructor(message) { super(message); this.name = "InputError"; }
  }

  // A picture: 8-bit RGB, three bytes per pixel, rows top to bottom.
  function picture(width, height, data) {
    return { width, height, data: data || new Uint8Array(width * height * 3) };
  }

  // ---- resampling (Pillow's Image.resize for an RGB image) ----------------------------

  // Pillow's precompute_coeffs + normalize_coeffs_8bpc: for each output pixel the first
  // source pixel, the count, and integer weights scaled by 2^22.
  function coefficients(inSize, in0, in1, outSize, filter) {
    const scale = Math.fround(in1 - in0) / outSize;   // (double)(float - float) / int
    const filterscale = scale < 1.0 ? 1.0 : scale;
    const support = filter.support * filterscale;
    const ksize = Math.ceil(support) * 2 + 1;
    const bounds = new Int32Array(outSize * 2);
    const weights = new Int32Array(outSize * ksize);
    const row = new Float64Array(ksize);
    for (let xx = 0; xx < outSize; xx++) {
      const center = in0 + (xx + 0.5) * scale;
      const ss = 1.0 / filterscale;
      let xmin = Math.trunc(center - support + 0.5);
      if (xmin < 0) xmin = 0;
      let xmax = Math.trunc(center + support + 0.5);
      if (xmax > inSize) xmax = inSize;
      xmax -= xmin;
      let ww = 0.0;
      for (let x = 0; x < xmax; x++) {
        const w = filter.weight((x + xmin - center + 0.5) * ss);
        row[x] = w;
        ww += w;
      }
      for (let x = 0; x < xmax; x++) {
        const k = ww !== 0.0 ? row[x] / ww : row[x];
        weights[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * ONE) : Math.trunc(0.5 + k * ONE);
      }
      bounds[xx * 2] = xmin;
      bounds[xx * 2 + 1] = xmax;
    }
    return { ksize, bounds, weights };
  }

  function clip8(sum) {
    const value = sum >> PRECISION_BITS;   // sums fit in 32 bits, as in Pillow's int
    return value < 0 ? 0 : value > 255 ? 255 : value;
  }

  // Horizontal pass over rows [offset, offset + height) of `source`.
  function horizontal(source, offset, height, outWidth, coeffs) {
    const { ksize, bounds, weights } = coeffs;
    const out = picture(outWidth, height);
    const src = source.data;
    const dst = out.data;
    for (let yy = 0; yy < height; yy++) {
      const rowIn = (yy + offset) * source.width * 3;
      const rowOut = yy * outWidth * 3;
      for (let xx = 0; xx < outWidth; xx++) {
        const xmin = bounds[xx * 2];
        const xmax = bounds[xx * 2 + 1];
        const k = xx * ksize;
        let s0 = HALF, s1 = HALF, s2 = HALF;
        for (let x = 0; x < xmax; x++) {
          const w = weights[k + x];
          const p = rowIn + (xmin + x) * 3;
          s0 += src[p] * w;
          s1 += src[p + 1] * w;
          s2 += src[p + 2] * w;
        }
        const q = rowOut + xx * 3;
        dst[q] = clip8(s0);
        dst[q + 1] = clip8(s1);
        dst[q + 2] = clip8(s2);
      }
    }
    return out;
  }

  function vertical(source, outHeight, coeffs) {
    const { ksize, bounds, weights } = coeffs;
    const width = source.width;
    const out = picture(width, outHeight);
    const src = source.data;
    const dst = out.data;
    for (let yy = 0; yy < outHeight; yy++) {
      const ymin = bounds[yy * 2];
      const ymax = bounds[yy * 2 + 1];
      const k = yy * ksize;
      const rowOut = yy * width * 3;
      for (let xx = 0; xx < width; xx++) {
        let s0 = HALF, s1 = HALF, s2 = HALF;
        for (let y = 0; y < ymax; y++) {
          const w = weights[k + y];
          const p = ((ymin + y) * width + xx) * 3;
          s0 += src[p] * w;
          s1 += src[p + 1] * w;
          s2 += src[p + 2] * w;
        }
        const q = rowOut + xx * 3;
        dst[q] = clip8(s0);
        dst[q + 1] = clip8(s1);
        dst[q + 2] = clip8(s2);
      }
    }
    return out;
  }

  function crop(source, left, top, width, height) {
    const out = picture(width, height);
    for (let y = 0; y < height; y++) {
      const start = ((top + y) * source.width + left) * 3;
      out.data.set(source.data.subarray(start, start + width * 3), y * width * 3);
    }
    return out;
  }

  // Pillow's nearest-neighbour resize: ImagingScaleAffine, positions accumulated in doubles.
  function nearest(source, outWidth, outHeight, box) {
    const a0 = Math.fround(box[2] - box[0]) / outWidth;
    const a4 = Math.fround(box[3] - box[1]) / outHeight;
    const coord = (v) => (v < 0.0 ? -1 : Math.trunc(v));
    const columns = new Int32Array(outWidth).fill(-1);
    let xo = box[0] + a0 * 0.5;
    for (let x = 0; x < outWidth; x++) {
      const xin = coord(xo);
      if (xin >= 0 && xin < source.width) columns[x] = xin;
      xo += a0;
    }
    const out = picture(outWidth, outHeight);   // zeros where nothing maps, as Pillow's fill
    let yo = box[1] + a4 * 0.5;
    for (let y = 0; y < outHeight; y++) {
      const yin = coord(yo);
      if (yin >= 0 && yin < source.height) {
        for (let x = 0; x < outWidth; x++) {
          if (columns[x] < 0) continue;
          const p = (yin * source.width + columns[x]) * 3;
          const q = (y * outWidth + x) * 3;
          out.data[q] = source.data[p];
          out.data[q + 1] = source.data[p + 1];
          out.data[q + 2] = source.data[p + 2];
        }
      }
      yo += a4;
    }
    return out;
  }

  // Which pass Pillow runs first. Up to Pillow 12 always the horizontal one; from 13 on the
  // vertical one when the height shrinks by more than twice as many pixels as the width
  // (Resample.c's horizontal_first). Rounding between the passes makes the order visible.
  function verticalFirst(source, outWidth, outHeight, pillowMajor) {
    const shrink = source.height - outHeight;
    return pillowMajor >= 13 && shrink > 0 && shrink > (source.width - outWidth) * 2;
  }

  // Image.resize((outWidth, outHeight), filter, box) of Pillow for an RGB image;
  // `pillowMajor`: the Pillow release whose pass order to follow.
  function resize(source, outWidth, outHeight, interpolation, box, pillowMajor = 13) {
    const b = (box || [0, 0, source.width, source.height]).map(Math.fround);  // C floats
    if (b[0] === Math.trunc(b[0]) && Math.fround(b[2] - b[0]) === outWidth &&
        b[1] === Math.trunc(b[1]) && Math.fround(b[3] - b[1]) === outHeight) {
      return crop(source, b[0], b[1], outWidth, outHeight);   // Pillow copies, no resampling
    }
    if (interpolation === "nearest") return nearest(source, outWidth, outHeight, b);
    const filter = FILTERS[interpolation];
    if (!filter) throw new InputError(`unknown interpolation ${JSON.stringify(interpolation)}`);
    const needHorizontal = outWidth !== source.width || b[0] !== 0 || b[2] !== outWidth;
    const needVertical = outHeight !== source.height || b[1] !== 0 || b[3] !== outHeight;
    let current = source;
    if (verticalFirst(source, outWidth, outHeight, pillowMajor)) {
      current = vertical(source, outHeight, coefficients(source.height, b[1], b[3], outHeight, filter));
      if (needHorizontal) {
        const horiz = coefficients(source.width, b[0], b[2], outWidth, filter);
        current = horizontal(current, 0, outHeight, outWidth, horiz);
      }
      return current;
    }
    const vert = coefficients(source.height, b[1], b[3], outHeight, filter);
    if (needHorizontal) {
      // Only the rows the vertical pass reads are resampled; its bounds shift with them.
      const first = vert.bounds[0];
      const last = vert.bounds[outHeight * 2 - 2] + vert.bounds[outHeight * 2 - 1];
      for (let i = 0; i < outHeight; i++) vert.bounds[i * 2] -= first;
      const horiz = coefficients(source.width, b[0], b[2], outWidth, filter);
      current = horizontal(source, first, last - first, outWidth, horiz);
    }
    if (needVertical) current = vertical(current, outHeight, vert);
    if (current === source) current = crop(source, 0, 0, source.width, source.height);
    return current;
  }

  // Python's round(): halves to even.
  function roundHalfEven(value) {
    const floor = Math.floor(value);
    const rest = value - floor;
    if (rest > 0.5) return floor + 1;
    if (rest < 0.5) return floor;
    return floor % 2 === 0 ? floor : floor + 1;
  }

  // numpy.pad's index for "edge" and "reflect" modes.
  function padIndex(i, n, mode) {
    if (i >= 0 && i < n) return i;
    if (mode === "edge" || n === 1) return i < 0 ? 0 : n - 1;
    const period = 2 * (n - 1);
    let j = ((i % period) + period) % period;
    if (j >= n) j = period - j;
    return j;
  }

  // ursa.core.preprocess.resize_image: size × size by crop, pad or squish.
  function resizeImage(source, size, method, interpolation, padMode, pillowMajor = 13) {
    const { width, height } = source;
    if (method === "squish") return resize(source, size, size, interpolation, null, pillowMajor);
    if (method === "crop") {
      const side = Math.min(width, height);
      const left = (width - side) / 2;
      const top = (height - side) / 2;
      const box = [left, top, left + side, top + side];
      return resize(source, size, size, interpolation, box, pillowMajor);
    }
    if (method !== "pad") throw new InputError(`unknown resize method ${JSON.stringify(method)}`);
    const scale = size / Math.max(width, height);
    const newWidth = Math.max(1, roundHalfEven(width * scale));
    const newHeight = Math.max(1, roundHalfEven(height * scale));
    const resized = resize(source, newWidth, newHeight, interpolation, null, pillowMajor);
    const left = Math.floor((size - newWidth) / 2);
    const top = Math.floor((size - newHeight) / 2);
    const out = picture(size, size);
    if (padMode === "zeros") {
      for (let y = 0; y < newHeight; y++) {
        const start = y * newWidth * 3;
        out.data.set(resized.data.subarray(start, start + newWidth * 3), ((top + y) * size + left) * 3);
      }
      return out;
    }
    if (padMode !== "border" && padMode !== "reflection") {
      throw new InputError(`unknown pad mode ${JSON.stringify(padMode)}`);
    }
    // Reflection needs two pixels to mirror; a one-pixel-thin image repeats its edge.
    const mode = padMode === "border" || Math.min(newWidth, newHeight) <= 1 ? "edge" : "reflect";
    for (let y = 0; y < size; y++) {
      const sy = padIndex(y - top, newHeight, mode);
      for (let x = 0; x < size; x++) {
        const sx = padIndex(x - left, newWidth, mode);
        const p = (sy * newWidth + sx) * 3;
        const q = (y * size + x) * 3;
        out.data[q] = resized.data[p];
        out.data[q + 1] = resized.data[p + 1];
        out.data[q + 2] = resized.data[p + 2];
      }
    }
    return out;
  }

  // ursa.core.preprocess.normalize: (H, W, 3) uint8 → (3, H, W) float32, in float32 steps.
  function normalize(source, mean, std) {
    const count = source.width * source.height;
    const out = new Float32Array(count * 3);
    for (let c = 0; c < 3; c++) {
      const shift = Math.fround(Math.fround(mean[c]) * 255.0);
      const scale = Math.fround(1.0 / (255.0 * std[c]));
      const base = c * count;
      for (let i = 0; i < count; i++) {
        out[base + i] = Math.fround(source.data[i * 3 + c] - shift) * scale;
      }
    }
    return out;
  }

  // The model's input for an RGB picture: (3, size, size) float32, flat. `config`: the
  // bundle's preprocess settings, with `pillow` the Pillow version ursa ran with (for
  // the resize pass order; 13 when absent).
  function tensor(source, config) {
    const pillowMajor = parseInt(config.pillow || "13", 10);
    const resized = resizeImage(source, config.size, config.resize, config.interpolation,
      config.pad_mode || "zeros", pillowMajor);
    return normalize(resized, config.mean, config.std);
  }

  // ---- orientation ---------------------------------------------------------------------

  // Pillow's transposes: out(X, Y) = in(map(X, Y)); `swap` when width and height trade places.
  const TRANSPOSES = {
    flipLeftRight: { swap: false, map: (x, y, w, h) => [w - 1 - x, y] },
    flipTopBottom: { swap: false, map: (x, y, w, h) => [x, h - 1 - y] },
    rotate180: { swap: false, map: (x, y, w, h) => [w - 1 - x, h - 1 - y] },
    rotate90: { swap: true, map: (x, y, w, h) => [w - 1 - y, x] },     // counter-clockwise
    rotate270: { swap: true, map: (x, y, w, h) => [y, h - 1 - x] },    // clockwise
    transpose: { swap: true, map: (x, y, w, h) => [y, x] },
    transverse: { swap: true, map: (x, y, w, h) => [w - 1 - y, h - 1 - x] },
  };
  // EXIF orientation → what PIL.ImageOps.exif_transpose does, and its inverse.
  const ORIENTATIONS = {
    2: ["flipLeftRight", "flipLeftRight"], 3: ["rotate180", "rotate180"],
    4: ["flipTopBottom", "flipTopBottom"], 5: ["transpose", "transpose"],
    6: ["rotate270", "rotate90"], 7: ["transverse", "transverse"], 8: ["rotate90", "rotate270"],
  };

  function transposed(source, name) {
    const { swap, map } = TRANSPOSES[name];
    const w = source.width, h = source.height;
    const out = swap ? picture(h, w) : picture(w, h);
    for (let y = 0; y < out.height; y++) {
      for (let x = 0; x < out.width; x++) {
        const [sx, sy] = map(x, y, w, h);
        const p = (sy * w + sx) * 3;
        const q = (y * out.width + x) * 3;
        out.data[q] = source.data[p];
        out.data[q + 1] = source.data[p + 1];
        out.data[q + 2] = source.data[p + 2];
      }
    }
    return out;
  }

  // ---- reduced-scale JPEG decoding (Pillow's draft mode) --------------------------------

  // The scale Pillow's JpegImageFile.draft picks for a `size` px model: 8, 4, 2 or 1.
  function draftScale(width, height, size) {
    const scale = Math.min(Math.floor(width / size), Math.floor(height / size));
    for (const s of [8, 4, 2]) if (scale >= s) return s;
    return 1;
  }

  // What libjpeg's scaled decoding gives, approximately: the mean of each s × s block,
  // blocks from the top left, the last, partial ones filled by repeating the edge pixels
  // (as the encoder filled its 8 × 8 blocks). Measured against Pillow's draft decode, this
  // is closer than an inverse DCT over the lowest frequencies (docs/web-export.md).
  function blockMeans(source, s) {
    const w = source.width, h = source.height;
    const out = picture(Math.ceil(w / s), Math.ceil(h / s));
    const sums = new Float64Array(out.width * 3);
    const area = s * s;
    for (let by = 0; by < out.height; by++) {
      sums.fill(0);
      for (let dy = 0; dy < s; dy++) {
        const row = Math.min(h - 1, by * s + dy) * w * 3;
        for (let x = 0; x < out.width * s; x++) {
          const p = row + Math.min(w - 1, x) * 3;
          const b = ((x / s) | 0) * 3;
          sums[b] += source.data[p];
          sums[b + 1] += source.data[p + 1];
          sums[b + 2] += source.data[p + 2];
        }
      }
      for (let i = 0; i < out.width * 3; i++) {
        out.data[by * out.width * 3 + i] = Math.floor(sums[i] / area + 0.5);
      }
    }
    return out;
  }

  // The reduced decode of an (already upright) JPEG picture: blocks are taken in the file's
  // stored orientation, as the decoder sees them, then the picture is turned upright again.
  function reducedDecode(source, scale, orientation) {
    const turns = ORIENTATIONS[orientation];
    if (!turns) return blockMeans(source, scale);
    const stored = transposed(source, turns[1]);
    return transposed(blockMeans(stored, scale), turns[0]);
  }

  // ---- reading file headers (before anything is decoded) --------------------------------

  const be16 = (b, i) => (b[i] << 8) | b[i + 1];
  const le16 = (b, i) => b[i] | (b[i + 1] << 8);
  const be32 = (b, i) => ((b[i] << 24) >>> 0) + ((b[i + 1] << 16) | (b[i + 2] << 8) | b[i + 3]);
  const le32 = (b, i) => ((b[i + 3] << 24) >>> 0) + ((b[i + 2] << 16) | (b[i + 1] << 8) | b[i]);
  const ascii = (b, i, n) => String.fromCharCode(...b.subarray(i, i + n));

  // The orientation tag of a TIFF block (an Exif APP1 payload after "Exif\0\0"), or 1.
  function tiffOrientation(b, start, end) {
    if (end - start < 8) return 1;
    const little = ascii(b, start, 2) === "II";
    if (!little && ascii(b, start, 2) !== "MM") return 1;
    const u16 = (i) => (little ? le16(b, i) : be16(b, i));
    const u32 = (i) => (little ? le32(b, i) : be32(b, i));
    const ifd = start + u32(start + 4);
    if (ifd + 2 > end) return 1;
    const count = u16(ifd);
    for (let n = 0; n < count; n++) {
      const entry = ifd + 2 + n * 12;
      if (entry + 12 > end) break;
      if (u16(entry) === 0x0112) {
        const value = u16(entry + 8);
        return value >= 1 && value <= 8 ? value : 1;
      }
    }
    return 1;
  }

  // How many pictures an MPF (APP2) block lists: a file of several is an MPO to Pillow.
  function mpfImages(b, start, end) {
    if (end - start < 8) return 1;
    const little = ascii(b, start, 2) === "II";
    const u16 = (i) => (little ? le16(b, i) : be16(b, i));
    const u32 = (i) => (little ? le32(b, i) : be32(b, i));
    const ifd = start + u32(start + 4);
    if (ifd + 2 > end) return 1;
    for (let n = 0; n < u16(ifd); n++) {
      const entry = ifd + 2 + n * 12;
      if (entry + 12 > end) break;
      if (u16(entry) === 0xb001) return u32(entry + 8);
    }
    return 1;
  }

  function jpegHeader(b) {
    const info = { format: "jpeg", type: "image/jpeg", width: 0, height: 0, orientation: 1,
                   mpo: false, complete: false };
    let i = 2;
    let exifSeen = false;
    while (i + 4 <= b.length) {
      if (b[i] !== 0xff) throw new InputError("a corrupt JPEG (its markers are broken)");
      const marker = b[i + 1];
      if (marker === 0xff) { i += 1; continue; }                     // fill byte
      if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
        i += 2;
        continue;
      }
      if (marker === 0xd9) break;
      const length = be16(b, i + 2);
      const start = i + 4;
      const end = i + 2 + length;
      if (length < 2 || end > b.length) break;
      const isFrame = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
      if (isFrame && length >= 7) {
        info.height = be16(b, start + 1);
        info.width = be16(b, start + 3);
      } else if (marker === 0xe1 && !exifSeen && ascii(b, start, 6) === "Exif\0\0") {
        exifSeen = true;
        info.orientation = tiffOrientation(b, start + 6, end);
      } else if (marker === 0xe2 && ascii(b, start, 4) === "MPF\0") {
        info.mpo = mpfImages(b, start + 4, end) > 1;
      } else if (marker === 0xda) {
        // Entropy-coded data follows; a complete file has an end marker (FF D9) after it:
        // inside the data, FF is always followed by 00 or a restart marker.
        for (let j = b.length - 2; j >= end; j--) {
          if (b[j] === 0xff && b[j + 1] === 0xd9) { info.complete = true; break; }
        }
        break;
      }
      i = end;
    }
    if (!info.width || !info.height) {
      throw new InputError("a corrupt or truncated JPEG (no image size in it)");
    }
    if (!info.complete) {
      throw new InputError("a truncated or corrupt JPEG (the file ends before the image does)");
    }
    return info;
  }

  function webpHeader(b) {
    const chunk = ascii(b, 12, 4);
    if (chunk === "VP8 " && b.length >= 30) {
      return { width: le16(b, 26) & 0x3fff, height: le16(b, 28) & 0x3fff };
    }
    if (chunk === "VP8L" && b.length >= 25) {
      const bits = le32(b, 21);
      return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
    }
    if (chunk === "VP8X" && b.length >= 30) {
      const w = b[24] | (b[25] << 8) | (b[26] << 16);
      const h = b[27] | (b[28] << 8) | (b[29] << 16);
      return { width: w + 1, height: h + 1 };
    }
    throw new InputError("a corrupt WebP file (no image size in it)");
  }

  // Format and size of an image file from its first bytes; InputError when it is none the
  // page reads. (Pillow also reads TIFF, PPM and others; browsers do not decode those.)
  function sniff(b) {
    if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return jpegHeader(b);
    if (b.length >= 24 && be32(b, 0) === 0x89504e47 && be32(b, 4) === 0x0d0a1a0a) {
      return { format: "png", type: "image/png", width: be32(b, 16), height: be32(b, 20) };
    }
    if (b.length >= 10 && (ascii(b, 0, 6) === "GIF87a" || ascii(b, 0, 6) === "GIF89a")) {
      return { format: "gif", type: "image/gif", width: le16(b, 6), height: le16(b, 8) };
    }
    if (b.length >= 16 && ascii(b, 0, 4) === "RIFF" && ascii(b, 8, 4) === "WEBP") {
      return { format: "webp", type: "image/webp", ...webpHeader(b) };
    }
    if (b.length >= 26 && ascii(b, 0, 2) === "BM") {
      const height = le32(b, 22) | 0;
      return { format: "bmp", type: "image/bmp", width: le32(b, 18) | 0, height: Math.abs(height) };
    }
    throw new InputError("not an image this page can read: use a JPEG, PNG, WebP, GIF or BMP file");
  }

  // ---- decoding ------------------------------------------------------------------------

  function canvasOf(width, height) {
    if (typeof OffscreenCanvas !== "undefined") return new OffscreenCanvas(width, height);
    const canvas = document.createElement("canvas");
    canvas.width = width;
    canvas.height = height;
    return canvas;
  }

  // Draw `source` at its own size onto white (transparency composited onto white, as
  // ursa.core.imageio does), then read the pixels back as RGB.
  function drawn(source, width, height) {
    const canvas = canvasOf(width, height);
    const context = canvas.getContext("2d", { willReadFrequently: true });
    context.imageSmoothingEnabled = false;   // 1:1, but never let the canvas resample
    context.fillStyle = "#ffffff";
    context.fillRect(0, 0, width, height);
    context.drawImage(source, 0, 0, width, height);
    return rgbOf(context.getImageData(0, 0, width, height));
  }

  // RGBA (not premultiplied, as ImageData is) → RGB, alpha composited onto white with
  // Pillow's alpha_composite arithmetic.
  function rgbOf(imageData) {
    const { width, height, data } = imageData;
    const out = picture(width, height);
    for (let i = 0, j = 0; i < data.length; i += 4, j += 3) {
      const a = data[i + 3];
      if (a === 255) {
        out.data[j] = data[i];
        out.data[j + 1] = data[i + 1];
        out.data[j + 2] = data[i + 2];
      } else if (a === 0) {
        out.data[j] = out.data[j + 1] = out.data[j + 2] = 255;
      } else {
        const outA255 = a * 255 + 255 * (255 - a);
        const coef1 = Math.floor((a * 255 * 255 * 128) / outA255);
        const coef2 = 255 * 128 - coef1;
        for (let c = 0; c < 3; c++) {
          const t = data[i + c] * coef1 + 255 * coef2 + (0x80 << 7);
          out.data[j + c] = (((t >> 8) + t) >> 8) >> 7;
        }
      }
    }
    return out;
  }

  // Limits of what the page decodes; model.js passes the exported site's settings.
  const DEFAULT_LIMITS = { maxPixels: 40_000_000, maxFileBytes: 100 * 1024 * 1024 };

  function number(n) { return n.toLocaleString("en-US"); }

  // A Blob or File → { picture, header }: checked from its header first (format, size,
  // completeness), then decoded by the browser, upright, onto white.
  async function decodeFile(blob, config, limits = DEFAULT_LIMITS) {
    if (!blob.size) throw new InputError("the file is empty (0 bytes)");
    if (blob.size > limits.maxFileBytes) {
      throw new InputError(`the file is ${number(blob.size)} bytes, over this page's limit of ` +
        `${number(limits.maxFileBytes)}; use a smaller image`);
    }
    const bytes = new Uint8Array(await blob.arrayBuffer());
    const header = sniff(bytes);
    const pixels = header.width * header.height;
    if (!pixels) throw new InputError(`the image has no pixels (${header.width}×${header.height})`);
    if (pixels > limits.maxPixels) {
      throw new InputError(`${header.width}×${header.height} is ${number(pixels)} pixels, over ` +
        `this page's limit of ${number(limits.maxPixels)}; resize it first`);
    }
    let bitmap;
    try {
      bitmap = await createImageBitmap(new Blob([bytes], { type: header.type }), {
        imageOrientation: "from-image", premultiplyAlpha: "none", colorSpaceConversion: "none",
      });
    } catch (error) {
      throw new InputError(`a corrupt or truncated ${header.format.toUpperCase()} file ` +
        `(the browser could not decode it)`);
    }
    let result;
    try {
      result = drawn(bitmap, bitmap.width, bitmap.height);
    } finally {
      bitmap.close();
    }
    if (header.format === "jpeg") {
      // Orientations 5–8 swap the sides: a browser that did not turn the picture gets
      // the stored size back, and the turn is made here, as PIL's exif_transpose does.
      const turns = ORIENTATIONS[header.orientation];
      const swapped = header.orientation >= 5 && header.width !== header.height;
      if (turns && swapped && result.width === header.width) {
        result = transposed(result, turns[0]);
      }
      if (config && config.reduced_decode && !header.mpo) {
        const scale = draftScale(header.width, header.height, config.size);
        if (scale > 1) result = reducedDecode(result, scale, header.orientation);
      }
    }
    return { picture: result, header };
  }

  // An <img>, <video>, <canvas>, ImageBitmap or ImageData → RGB picture (as a PIL image
  // given to ursa: no reduced decode; the pixels are taken as they are shown).
  function fromElement(source) {
    if (typeof ImageData !== "undefined" && source instanceof ImageData) return rgbOf(source);
    let width = 0, height = 0;
    if (typeof HTMLVideoElement !== "undefined" && source instanceof HTMLVideoElement) {
      width = source.videoWidth;
      height = source.videoHeight;
      if (!width || !height) throw new InputError("the video has no frame to show yet");
    } else if (typeof HTMLImageElement !== "undefined" && source instanceof HTMLImageElement) {
      if (!source.complete || !source.naturalWidth) {
        throw new InputError("the image has not loaded (or is not an image)");
      }
      width = source.naturalWidth;
      height = source.naturalHeight;
    } else if ((typeof HTMLCanvasElement !== "undefined" && source instanceof HTMLCanvasElement) ||
               (typeof OffscreenCanvas !== "undefined" && source instanceof OffscreenCanvas) ||
               (typeof ImageBitmap !== "undefined" && source instanceof ImageBitmap)) {
      width = source.width;
      height = source.height;
    } else {
      throw new InputError("predict takes a Blob or File, an <img>, <video> or <canvas>, " +
        "an ImageBitmap or ImageData");
    }
    if (width * height > DEFAULT_LIMITS.maxPixels) {
      throw new InputError(`${width}×${height} is over this page's limit of ` +
        `${number(DEFAULT_LIMITS.maxPixels)} pixels`);
    }
    return drawn(source, width, height);
  }

  global.ursaPreprocess = Object.freeze({
    InputError, DEFAULT_LIMITS, sniff, decodeFile, fromElement, tensor, resizeImage,
    resize, normalize, draftScale, reducedDecode, rgbOf, picture,
  });
})(self);
