// The page's in-browser backend (lvunet-serve --static): the model runs here with ONNX Runtime Web,
// WebGPU when the browser has a GPU adapter, WASM otherwise; images never leave this device. Every
// method has its twin in app.js's serverBackend. Pre- and post-processing: process.js, read from each
// model's contract in models.json (written at --static time from the .onnx file's own metadata).
// ?backend=wasm forces WASM; ?threads=N sets WASM threads (they need cross-origin isolation).
"use strict";

(function () {
  const P = window.lvunetProcess;
  const params = new URLSearchParams(location.search);
  const state = { catalog: null, sessions: new Map(), results: new Map(), next: 1, ep: "wasm", note: "" };
  const GREY_TOLERANCE = 8, GREY_SHARE = 0.99;

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = src;
      script.onload = resolve;
      script.onerror = () => reject(new Error(`${src} could not be loaded (is the folder complete?)`));
      document.head.appendChild(script);
    });
  }

  // Which backend, said on the page: a requested WebGPU that fails is reported, never dropped quietly.
  const ready = (async () => {
    if (location.protocol === "file:") {
      throw new Error("opened as a file: browsers do not run WebAssembly from file://. Serve this folder " +
        "from a web server, e.g. python3 -m http.server -d THIS_FOLDER, then open http://127.0.0.1:8000/");
    }
    const catalog = await (await fetch("models/models.json")).json();
    state.catalog = catalog;
    let webgpu = false;
    if (params.get("backend") === "wasm") state.note = "WASM asked for";
    else if (!catalog.ort_web.webgpu) state.note = "the folder was written without WebGPU";
    else if (!navigator.gpu) state.note = "this browser has no WebGPU";
    else {
      try {
        webgpu = Boolean(await navigator.gpu.requestAdapter());
        if (!webgpu) state.note = "WebGPU has no adapter here (no GPU)";
      } catch (e) { state.note = `WebGPU: ${e.message}`; }
    }
    await loadScript(webgpu ? "static/ort/ort.webgpu.min.js" : "static/ort/ort.wasm.min.js");
    const ort = window.ort;
    ort.env.wasm.wasmPaths = new URL("static/ort/", location.href).href;
    const asked = Number(params.get("threads")) || Math.min(4, navigator.hardwareConcurrency || 1);
    ort.env.wasm.numThreads = window.crossOriginIsolated ? asked : 1;
    state.ep = webgpu ? "webgpu" : "wasm";
    return catalog;
  })();

  function words() {
    if (state.ep === "webgpu") return "this browser, WebGPU";
    const threads = window.ort.env.wasm.numThreads;
    const why = window.crossOriginIsolated ? "" : ", not cross-origin isolated";
    return `this browser, WASM (${threads} thread${threads === 1 ? "" : "s"}${why})` +
      (state.note ? `; ${state.note}` : "");
  }

  async function session(name) {
    await ready;
    if (state.sessions.has(name)) return state.sessions.get(name);
    const entry = state.catalog.models.find((m) => m.name === name);
    if (!entry) throw new Error(`no model named ${name} in this folder`);
    const url = `models/${entry.file}`;
    let made;
    try {
      made = await window.ort.InferenceSession.create(url, { executionProviders: [state.ep] });
    } catch (e) {
      if (state.ep !== "webgpu") throw new Error(`the model could not be loaded: ${e.message}`);
      state.ep = "wasm";  // said on the page, with the reason
      state.note = `WebGPU failed (${e.message}), running on WASM`;
      made = await window.ort.InferenceSession.create(url, { executionProviders: ["wasm"] });
    }
    const item = { session: made, contract: entry.contract, entry };
    state.sessions.set(name, item);
    document.getElementById("provider").textContent = words();
    return item;
  }

  async function decode(file) {
    let bitmap;
    try {
      bitmap = await createImageBitmap(file, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    } catch (e) {
      throw new Error("not an image this browser can open (DICOM and some TIFFs need lvunet-serve)");
    }
    const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
    const context = canvas.getContext("2d");
    context.drawImage(bitmap, 0, 0);
    return context.getImageData(0, 0, bitmap.width, bitmap.height);
  }

  function rgbOf(image) {
    const rgb = new Uint8Array(image.width * image.height * 3), data = image.data;
    for (let i = 0, j = 0; i < rgb.length; i += 3, j += 4) {
      rgb[i] = data[j]; rgb[i + 1] = data[j + 1]; rgb[i + 2] = data[j + 2];
    }
    return rgb;
  }

  // contract.image_colour and input_warning, as the runtime says them
  function inputWarning(contract, rgb, w, h) {
    if (!contract.input_colour) return null;
    const step = Math.max(1, Math.floor(Math.sqrt((w * h) / 65536)));
    let grey = 0, total = 0;
    for (let y = 0; y < h; y += step) {
      for (let x = 0; x < w; x += step) {
        const i = (y * w + x) * 3, r = rgb[i], g = rgb[i + 1], b = rgb[i + 2];
        if (Math.max(r, g, b) - Math.min(r, g, b) <= GREY_TOLERANCE) grey++;
        total++;
      }
    }
    const seen = grey / total >= GREY_SHARE ? "grey" : "colour";
    if (seen === contract.input_colour) return null;
    const trained = contract.training_dataset || contract.label;
    return `a ${seen} image sent to a model trained on ${contract.input_colour} images (${trained}); ` +
      "its masks may mean nothing: check --model";
  }

  // image (w x h RGB) -> probability map at (ow x oh), as Segmenter.predict
  async function run(item, rgb, w, h, ow, oh) {
    const c = item.contract, size = [c.input_height, c.input_width];
    const resized = P.resizeArea(rgb, w, h, size[1], size[0]);
    const input = new window.ort.Tensor("float32", P.toInput(resized, c), [1, 3, size[0], size[1]]);
    const output = await item.session.run({ [c.input_name]: input });
    const prob = P.toProbability(output[c.output_name].data, c.output_meaning);
    return P.resizeLinear(prob, size[1], size[0], ow, oh);
  }

  function maskAt(result, t) {
    const mask = new Uint8Array(result.values.length);
    for (let i = 0; i < mask.length; i++) mask[i] = result.values[i] > t ? 1 : 0;
    return mask;
  }

  function statsOf(result, t) {
    const mask = maskAt(result, t), list = P.regions(mask, result.values, result.width, result.height);
    const area = list.reduce((sum, r) => sum + r.area_px, 0);
    return { mask, list, area_px: area, area_fraction: area / mask.length, regions: list.length, threshold: Number(t) };
  }

  function maskPng(result, t) {
    const { width, height } = result, mask = maskAt(result, t);
    const canvas = new OffscreenCanvas(width, height), context = canvas.getContext("2d");
    const out = context.createImageData(width, height);
    for (let i = 0, j = 0; i < mask.length; i++, j += 4) {
      out.data[j] = out.data[j + 1] = out.data[j + 2] = mask[i] ? 255 : 0;
      out.data[j + 3] = 255;
    }
    context.putImageData(out, 0, 0);
    return canvas.convertToBlob({ type: "image/png" });
  }

  function jsonOf(result, t) {
    const s = statsOf(result, t);
    const body = {
      input: result.name, model: result.model, model_sha256: result.sha256, threshold: Number(t),
      height: result.height, width: result.width, area_px: s.area_px, area_fraction: s.area_fraction,
      regions: s.regions, region_list: s.list, runs_on: words(),
    };
    return new Blob([JSON.stringify(body, null, 1) + "\n"], { type: "application/json" });
  }

  // a STORED zip (no compression: PNG and JSON are small), CRC-32 per entry
  const CRC = new Uint32Array(256).map((_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  function crc32(bytes) {
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) c = CRC[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }
  function zipOf(entries) {
    const parts = [], central = [];
    let offset = 0;
    for (const { name, bytes } of entries) {
      const fileName = new TextEncoder().encode(name), crc = crc32(bytes);
      const local = new DataView(new ArrayBuffer(30));
      [[0, 0x04034b50, 4], [4, 20, 2], [6, 0x0800, 2], [8, 0, 2], [14, crc, 4], [18, bytes.length, 4],
        [22, bytes.length, 4], [26, fileName.length, 2]].forEach(([at, v, n]) => (n === 4 ? local.setUint32(at, v, true) : local.setUint16(at, v, true)));
      const head = new DataView(new ArrayBuffer(46));
      [[0, 0x02014b50, 4], [4, 20, 2], [6, 20, 2], [8, 0x0800, 2], [16, crc, 4], [20, bytes.length, 4],
        [24, bytes.length, 4], [28, fileName.length, 2], [42, offset, 4]].forEach(([at, v, n]) => (n === 4 ? head.setUint32(at, v, true) : head.setUint16(at, v, true)));
      parts.push(local, fileName, bytes);
      central.push(head, fileName);
      offset += 30 + fileName.length + bytes.length;
    }
    const size = central.reduce((sum, p) => sum + p.byteLength, 0);
    const end = new DataView(new ArrayBuffer(22));
    end.setUint32(0, 0x06054b50, true);
    end.setUint16(8, entries.length, true);
    end.setUint16(10, entries.length, true);
    end.setUint32(12, size, true);
    end.setUint32(16, offset, true);
    return new Blob([...parts, ...central, end], { type: "application/zip" });
  }

  function stemOf(name) {
    const base = name.split(/[\\/]/).pop();
    return base.includes(".") ? base.slice(0, base.lastIndexOf(".")) : base;
  }

  window.lvunetBrowser = {
    async health() {
      const catalog = await ready;
      return { runsOn: words(), detail: `onnxruntime-web ${catalog.ort_web.version} (${state.ep})`, version: catalog.version };
    },
    async models() {
      const catalog = await ready;
      return { models: catalog.models.map((m) => ({ name: m.name, source: "bundled" })), default: catalog.default };
    },
    async modelInfo(name) {
      const catalog = await ready;
      const entry = catalog.models.find((m) => m.name === name);
      if (!entry) throw new Error(`no model named ${name} in this folder`);
      const c = entry.contract;
      return { label: c.label, input_size: [c.input_height, c.input_width], threshold: c.threshold,
        test_metrics: Object.keys(c.test_metrics || {}).length ? c.test_metrics : null };
    },
    async segment(file, name, model) {
      const item = await session(model);
      const image = await decode(file);
      const { width, height } = image, rgb = rgbOf(image);
      const started = performance.now();
      const values = await run(item, rgb, width, height, width, height);
      const ms = performance.now() - started;
      const id = String(state.next++);
      state.results.set(id, { name, model, sha256: item.entry.sha256, values, width, height });
      return {
        id, image, prob: { width, height, values }, model, ms: ms.toFixed(1), provider: words(),
        warning: inputWarning(item.contract, rgb, width, height),
      };
    },
    async stats(card, t) {
      const s = statsOf(state.results.get(card.id), t);
      return { area_px: s.area_px, area_fraction: s.area_fraction, regions: s.regions, threshold: s.threshold };
    },
    async file(card, output, t) {
      const result = state.results.get(card.id);
      return output === "mask" ? maskPng(result, t) : jsonOf(result, t);
    },
    async zip(list, t) {
      const entries = [], used = new Set();
      for (const card of list) {
        const result = state.results.get(card.id);
        let stem = stemOf(result.name), number = 1;
        while (used.has(stem)) stem = `${stemOf(result.name)}-${++number}`;
        used.add(stem);
        entries.push({ name: `${stem}_mask.png`, bytes: new Uint8Array(await (await maskPng(result, t)).arrayBuffer()) });
        entries.push({ name: `${stem}.json`, bytes: new Uint8Array(await jsonOf(result, t).arrayBuffer()) });
      }
      return zipOf(entries);
    },
    async frame(canvas, model, t) {
      const image = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);  // now
      const item = await session(model);
      const started = performance.now();
      const values = await run(item, rgbOf(image), image.width, image.height, image.width, image.height);
      const mask = maskAt({ values }, t);
      return { mask, width: image.width, height: image.height, ms: performance.now() - started };
    },
  };
})();
