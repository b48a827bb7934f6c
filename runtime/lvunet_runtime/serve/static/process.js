// The runtime's pre- and post-processing in JavaScript, for the page's in-browser mode (lvunet-serve
// --static): the same pixels as lvunet-infer, read from the model's contract (models.json).
//   input:  OpenCV's cv2.resize(INTER_AREA) of the 8-bit RGB image, bit for bit: its three paths (the
//           true area average when both sides shrink, the integer-ratio fast path, and the bilinear-like
//           emulation with 11-bit fixed-point weights when a side grows); then x * scale - shift in
//           float32, NCHW.
//   output: sigmoid, the probability map resized with INTER_LINEAR (float32, half-pixel centres,
//           edges replicated), then foreground where probability > threshold (contract v6,
//           output_resize "linear": resize first, threshold second).
// tests/browser/test_static.py checks the masks against lvunet-infer's in Chromium.
"use strict";

(function (root) {
  const f32 = Math.fround;

  // cvRound of a float: round half to even
  function roundEven(x) {
    const r = Math.round(x);
    return (Math.abs(x % 1) === 0.5 && r % 2 !== 0) ? r - 1 : r;
  }
  const clamp8 = (v) => (v < 0 ? 0 : v > 255 ? 255 : v);

  // INTER_AREA when a side grows: OpenCV emulates area with linear weights (fixed point, 2048 = 1.0)
  function areaUpTable(ssize, dsize) {
    const inv = dsize / ssize, scale = 1 / inv;  // as OpenCV: scale = 1 / (dsize / ssize)
    const ofs = new Int32Array(dsize), a0 = new Int32Array(dsize), a1 = new Int32Array(dsize);
    let xmax = dsize;
    for (let dx = 0; dx < dsize; dx++) {
      let sx = Math.floor(dx * scale);
      let fx = f32((dx + 1) - (sx + 1) * inv);
      fx = fx <= 0 ? 0 : f32(fx - Math.floor(fx));
      if (sx < 0) { fx = 0; sx = 0; }
      if (sx + 1 >= ssize) {
        xmax = Math.min(xmax, dx);
        if (sx >= ssize - 1) { fx = 0; sx = ssize - 1; }
      }
      ofs[dx] = sx;
      a0[dx] = roundEven(f32(f32(1 - fx) * 2048));
      a1[dx] = roundEven(f32(fx * 2048));
    }
    return { ofs, a0, a1, xmax };
  }

  function resizeAreaUp(src, w, h, dw, dh) {
    const x = areaUpTable(w, dw), y = areaUpTable(h, dh);
    const rows = new Int32Array(h * dw * 3);  // the horizontal pass, every source row
    for (let r = 0; r < h; r++) {
      for (let dx = 0; dx < dw; dx++) {
        const s = (r * w + x.ofs[dx]) * 3, d = (r * dw + dx) * 3;
        for (let c = 0; c < 3; c++) {
          rows[d + c] = dx < x.xmax ? src[s + c] * x.a0[dx] + src[s + 3 + c] * x.a1[dx] : src[s + c] * 2048;
        }
      }
    }
    const out = new Uint8Array(dw * dh * 3), n = dw * 3;
    for (let dy = 0; dy < dh; dy++) {
      const r0 = y.ofs[dy] * n, r1 = Math.min(y.ofs[dy] + 1, h - 1) * n, b0 = y.a0[dy], b1 = y.a1[dy];
      for (let i = 0; i < n; i++) {  // OpenCV's SIMD vertical pass: mulhi((S >> 4), beta), then (t + 2) >> 2
        const t = (((rows[r0 + i] >> 4) * b0) >> 16) + (((rows[r1 + i] >> 4) * b1) >> 16);
        out[dy * n + i] = clamp8((t + 2) >> 2);
      }
    }
    return out;
  }

  // the true area average (both sides shrink, not by whole numbers): float32 weights per cell
  function areaTable(ssize, dsize) {
    const scale = 1 / (dsize / ssize), tab = [];
    for (let dx = 0; dx < dsize; dx++) {
      const fsx1 = dx * scale, fsx2 = fsx1 + scale, cell = Math.min(scale, ssize - fsx1);
      let sx1 = Math.ceil(fsx1), sx2 = Math.floor(fsx2);
      sx2 = Math.min(sx2, ssize - 1);
      sx1 = Math.min(sx1, sx2);
      if (sx1 - fsx1 > 1e-3) tab.push([dx, sx1 - 1, f32((sx1 - fsx1) / cell)]);
      for (let sx = sx1; sx < sx2; sx++) tab.push([dx, sx, f32(1.0 / cell)]);
      if (fsx2 - sx2 > 1e-3) tab.push([dx, sx2, f32(Math.min(Math.min(fsx2 - sx2, 1), cell) / cell)]);
    }
    return tab;
  }

  function resizeAreaDown(src, w, h, dw, dh) {
    const xt = areaTable(w, dw), yt = areaTable(h, dh), n = dw * 3;
    const out = new Uint8Array(dw * dh * 3), buf = new Float32Array(n), sum = new Float32Array(n);
    let prev = 0, started = false;
    const flush = (dy) => { for (let i = 0; i < n; i++) out[dy * n + i] = clamp8(roundEven(sum[i])); };
    for (const [dy, sy, beta] of yt) {
      buf.fill(0);
      for (const [dx, sx, alpha] of xt) {
        const s = (sy * w + sx) * 3, d = dx * 3;
        for (let c = 0; c < 3; c++) buf[d + c] = f32(buf[d + c] + f32(src[s + c] * alpha));
      }
      if (started && dy !== prev) {
        flush(prev);
        for (let i = 0; i < n; i++) sum[i] = f32(beta * buf[i]);
        prev = dy;
      } else if (!started) {
        for (let i = 0; i < n; i++) sum[i] = f32(beta * buf[i]);
        started = true; prev = dy;
      } else {
        for (let i = 0; i < n; i++) sum[i] = f32(sum[i] + f32(beta * buf[i]));
      }
    }
    flush(prev);
    return out;
  }

  // whole-number ratios: box sums; 2x2 as (a+b+c+d+2)>>2, others rounded from sum * (1/area) in float32
  function resizeAreaFast(src, w, kx, ky, dw, dh) {
    const out = new Uint8Array(dw * dh * 3), scale = f32(1 / (kx * ky));
    for (let dy = 0; dy < dh; dy++) {
      for (let dx = 0; dx < dw; dx++) {
        for (let c = 0; c < 3; c++) {
          let total = 0;
          for (let j = 0; j < ky; j++) for (let i = 0; i < kx; i++) total += src[((dy * ky + j) * w + dx * kx + i) * 3 + c];
          out[(dy * dw + dx) * 3 + c] = kx === 2 && ky === 2 ? (total + 2) >> 2 : clamp8(roundEven(f32(total * scale)));
        }
      }
    }
    return out;
  }

  // cv2.resize(rgb, (dw, dh), interpolation=cv2.INTER_AREA) of interleaved 8-bit RGB (w x h)
  function resizeArea(src, w, h, dw, dh) {
    if (w === dw && h === dh) return src.slice();
    const sx = 1 / (dw / w), sy = 1 / (dh / h);
    if (sx >= 1 && sy >= 1) {
      const kx = Math.round(sx), ky = Math.round(sy);
      if (Math.abs(sx - kx) < Number.EPSILON && Math.abs(sy - ky) < Number.EPSILON) {
        return resizeAreaFast(src, w, kx, ky, dw, dh);
      }
      return resizeAreaDown(src, w, h, dw, dh);
    }
    return resizeAreaUp(src, w, h, dw, dh);
  }

  function linearTable(ssize, dsize) {
    const scale = 1 / (dsize / ssize);
    const ofs = new Int32Array(dsize), a0 = new Float32Array(dsize), a1 = new Float32Array(dsize);
    let xmax = dsize;
    for (let dx = 0; dx < dsize; dx++) {
      let fx = f32((dx + 0.5) * scale - 0.5);
      let sx = Math.floor(fx);
      fx = f32(fx - sx);
      if (sx < 0) { fx = 0; sx = 0; }
      if (sx + 1 >= ssize) {
        xmax = Math.min(xmax, dx);
        if (sx >= ssize - 1) { fx = 0; sx = ssize - 1; }
      }
      ofs[dx] = sx; a0[dx] = f32(1 - fx); a1[dx] = fx;
    }
    return { ofs, a0, a1, xmax };
  }

  // cv2.resize(prob, (dw, dh), interpolation=cv2.INTER_LINEAR) of a float32 map (to ~1e-5: OpenCV's own
  // kernels round apart; masks flip only at pixels that close to the threshold)
  function resizeLinear(src, w, h, dw, dh) {
    if (w === dw && h === dh) return Float32Array.from(src);
    const x = linearTable(w, dw), y = linearTable(h, dh);
    const rows = new Float32Array(h * dw);
    for (let r = 0; r < h; r++) {
      for (let dx = 0; dx < dw; dx++) {
        const s = r * w + x.ofs[dx];
        rows[r * dw + dx] = dx < x.xmax ? f32(f32(src[s] * x.a0[dx]) + f32(src[s + 1] * x.a1[dx])) : src[s];
      }
    }
    const out = new Float32Array(dw * dh);
    for (let dy = 0; dy < dh; dy++) {
      const r0 = y.ofs[dy] * dw, r1 = Math.min(y.ofs[dy] + 1, h - 1) * dw, b0 = y.a0[dy], b1 = y.a1[dy];
      for (let i = 0; i < dw; i++) out[dy * dw + i] = f32(f32(rows[r0 + i] * b0) + f32(rows[r1 + i] * b1));
    }
    return out;
  }

  // resized RGB (size x size) -> the graph's float32 NCHW input: pixel * (pixel_scale / std) - mean / std
  function toInput(rgb, contract) {
    const h = contract.input_height, w = contract.input_width, plane = h * w;
    const order = contract.channel_order === "RGB" ? [0, 1, 2] : [2, 1, 0];
    const out = new Float32Array(3 * plane);
    for (let c = 0; c < 3; c++) {
      const channel = order[c];
      const scale = f32(f32(contract.pixel_scale) / f32(contract.std[c]));
      const shift = f32(f32(contract.mean[c]) / f32(contract.std[c]));
      for (let i = 0; i < plane; i++) out[c * plane + i] = f32(f32(rgb[i * 3 + channel] * scale) - shift);
    }
    return out;
  }

  // the model's raw output -> probabilities (float32), as the runtime: 0.5 * (tanh(0.5 x) + 1)
  function toProbability(output, meaning) {
    const out = new Float32Array(output.length);
    for (let i = 0; i < output.length; i++) {
      out[i] = meaning === "logits" ? f32(0.5 * (Math.tanh(0.5 * output[i]) + 1)) : Math.min(1, Math.max(0, output[i]));
    }
    return out;
  }

  // 8-connected regions of a 0/1 mask: [{area_px, bbox_xywh, mean_probability}], largest first
  function regions(mask, prob, w, h) {
    const label = new Int32Array(w * h), found = [], stack = [];
    for (let start = 0; start < mask.length; start++) {
      if (!mask[start] || label[start]) continue;
      const id = found.length + 1;
      let area = 0, sum = 0, x0 = w, y0 = h, x1 = -1, y1 = -1;
      label[start] = id; stack.push(start);
      while (stack.length) {
        const i = stack.pop(), x = i % w, y = (i - x) / w;
        area++; sum += prob[i];
        x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
        for (let dy = -1; dy <= 1; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            const nx = x + dx, ny = y + dy, j = ny * w + nx;
            if (nx < 0 || ny < 0 || nx >= w || ny >= h || !mask[j] || label[j]) continue;
            label[j] = id; stack.push(j);
          }
        }
      }
      found.push({ area_px: area, bbox_xywh: [x0, y0, x1 - x0 + 1, y1 - y0 + 1], mean_probability: sum / area });
    }
    return found.sort((a, b) => b.area_px - a.area_px);
  }

  root.lvunetProcess = { resizeArea, resizeLinear, toInput, toProbability, regions };
})(typeof window !== "undefined" ? window : globalThis);
