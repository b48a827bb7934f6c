// lvunet-serve page: uploads go to the API one at a time; the probability map comes back once, and the
// threshold slider re-draws every preview from it here, without another model run. Statistics and
// downloads are asked of the server at the slider's threshold, so they match lvunet-infer exactly.
// The same page runs with no server (lvunet-serve --static): browser.js then sets window.lvunetBrowser,
// a backend with the same methods that runs the model here with ONNX Runtime Web.
"use strict";

const $ = (id) => document.getElementById(id);
// images by extension, DICOM by .dcm or by a name without one (PACS exports: IM0001)
const IMAGE_EXT = /\.(png|jpe?g|bmp|tiff?|webp|gif|dcm|dicom)$|^[^.]+$/i;
const TINT = [0, 255, 0];
const ALPHA = 0.35;
const cards = [];
let queue = Promise.resolve();

function threshold() { return $("threshold").value; }

function message(text) { $("message").textContent = text || ""; }

async function errorText(response) {
  try { return (await response.json()).error || response.statusText; }
  catch (e) { return `${response.status} ${response.statusText}`; }
}

async function api(url, options) {
  let response;
  try { response = await fetch(url, options); }
  catch (e) { throw new Error("the server cannot be reached (is lvunet-serve still running?)"); }
  if (!response.ok) throw new Error(await errorText(response));
  return response;
}

async function pixels(blob) {
  const bitmap = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  return context.getImageData(0, 0, bitmap.width, bitmap.height);
}

// Mask at threshold t: p > t. From the float map in the browser; from the server's 8-bit map otherwise
// (the server's statistics and downloads use its float map).
function maskOf(prob, t) {
  const mask = new Uint8Array(prob.width * prob.height);
  if (prob.values) {
    for (let i = 0; i < mask.length; i++) mask[i] = prob.values[i] > t ? 1 : 0;
    return mask;
  }
  const limit = t * 255, data = prob.data;
  for (let i = 0, j = 0; i < mask.length; i++, j += 4) mask[i] = data[j] > limit ? 1 : 0;
  return mask;
}

// The server as the page's backend: every method has its twin in browser.js.
const serverBackend = {
  async health() {
    const health = await (await api("/api/health")).json();
    return { runsOn: health.runs_on, detail: health.providers[0], version: health.version };
  },
  async models() { return (await api("/api/models")).json(); },
  async modelInfo(name) { return (await api(`/api/models/${encodeURIComponent(name)}`)).json(); },
  async segment(file, name, model) {
    const response = await api(`/api/segment?model=${encodeURIComponent(model)}&output=probability`, {
      method: "POST", body: file,
      headers: { "Content-Type": "application/octet-stream", "X-Image-Name": encodeURIComponent(name) },
    });
    const id = response.headers.get("X-Result-Id");
    const prob = await pixels(await response.blob());
    const image = await pixels(await (await api(`/api/results/${id}?output=image`)).blob());
    return {
      id, prob, image, model: response.headers.get("X-Model"),
      ms: response.headers.get("X-Inference-Ms"), provider: response.headers.get("X-Provider"),
      warning: response.headers.get("X-Input-Warning"),
    };
  },
  async stats(card, t) { return (await api(`/api/results/${card.id}?output=json&threshold=${t}`)).json(); },
  async file(card, output, t) { return (await api(`/api/results/${card.id}?output=${output}&threshold=${t}`)).blob(); },
  async zip(list, t) {
    const ids = list.map((c) => `ids=${c.id}`).join("&");
    return (await api(`/api/results.zip?${ids}&threshold=${t}`)).blob();
  },
  async frame(canvas, model, t) {
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.9));
    const response = await api(`/api/segment?model=${encodeURIComponent(model)}&output=mask&store=false&threshold=${t}`,
      { method: "POST", body: blob, headers: { "Content-Type": "application/octet-stream" } });
    const data = await pixels(await response.blob());
    const mask = new Uint8Array(data.width * data.height);
    for (let i = 0, j = 0; i < mask.length; i++, j += 4) mask[i] = data.data[j] > 127 ? 1 : 0;
    return { mask, width: data.width, height: data.height, ms: Number(response.headers.get("X-Inference-Ms")) };
  },
};
// The folder of lvunet-serve --static loads browser.js: if it failed, say so (there is no server to ask).
const inBrowser = Boolean(document.querySelector('script[src$="browser.js"]'));
const failedBackend = new Proxy({}, { get: () => async () => {
  throw new Error("the in-browser runtime did not load (static/browser.js); is the folder complete?");
} });
const backend = window.lvunetBrowser || (inBrowser ? failedBackend : serverBackend);

function drawView(card) {
  if (!card.prob) return;
  const { width, height } = card.prob;
  const canvas = card.element.querySelector(".view");
  canvas.width = width; canvas.height = height;
  const context = canvas.getContext("2d");
  const mask = maskOf(card.prob, Number(threshold()));
  const out = context.createImageData(width, height);
  const base = card.image.data, data = out.data;
  const maskOnly = $("show-mask").checked, tint = $("show-overlay").checked;
  for (let i = 0, j = 0; i < mask.length; i++, j += 4) {
    if (maskOnly) {
      const v = mask[i] ? 255 : 0;
      data[j] = data[j + 1] = data[j + 2] = v;
    } else {
      for (let c = 0; c < 3; c++) {
        data[j + c] = mask[i] && tint ? base[j + c] * (1 - ALPHA) + TINT[c] * ALPHA + 0.5 : base[j + c];
      }
    }
    data[j + 3] = 255;
  }
  if ($("show-outline").checked && !maskOnly) {
    const reach = Math.max(1, Math.round(Math.max(width, height) / 400));
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        if (!mask[y * width + x]) continue;
        let edge = false;
        for (let d = 1; d <= reach && !edge; d++) {
          edge = x < d || y < d || x + d >= width || y + d >= height ||
            !mask[y * width + x - d] || !mask[y * width + x + d] ||
            !mask[(y - d) * width + x] || !mask[(y + d) * width + x];
        }
        if (edge) { const j = 4 * (y * width + x); data[j] = TINT[0]; data[j + 1] = TINT[1]; data[j + 2] = TINT[2]; }
      }
    }
  }
  context.putImageData(out, 0, 0);
  card.element.querySelector(".view-caption").textContent =
    maskOnly ? `Mask at ${threshold()}` : `Segmentation at ${threshold()}`;
}

function showStats(card, stats) {
  const element = card.element;
  element.querySelector(".area").textContent =
    `${stats.area_px.toLocaleString("en")} px (${(100 * stats.area_fraction).toFixed(2)} %)`;
  element.querySelector(".regions").textContent = String(stats.regions);
  element.dataset.area = String(stats.area_px);
  element.dataset.threshold = String(stats.threshold);
}

// Statistics at the slider's threshold. Every arrow key or drag step asks again; answers can come back out
// of order, so only the answer to a card's latest question is shown.
async function refreshStats(card) {
  if (!card.id) return;
  const asked = (card.asked = (card.asked || 0) + 1);
  try {
    const stats = await backend.stats(card, threshold());
    if (asked === card.asked) showStats(card, stats);
  } catch (e) { if (asked === card.asked) card.element.querySelector(".status").textContent = e.message; }
}

function newCard(name) {
  const element = $("card-template").content.firstElementChild.cloneNode(true);
  element.querySelector(".name").textContent = name;
  $("results").appendChild(element);
  const card = { name, element };
  cards.push(card);
  for (const button of element.querySelectorAll(".download")) {
    button.addEventListener("click", () => download(card, button.dataset.output));
  }
  return card;
}

async function segment(file, name) {
  const card = newCard(name);
  const model = $("model").value;
  try {
    const result = await backend.segment(file, name, model);
    Object.assign(card, { id: result.id, model: result.model, prob: result.prob, image: result.image });
    const original = card.element.querySelector(".original");
    original.width = card.image.width; original.height = card.image.height;
    original.getContext("2d").putImageData(card.image, 0, 0);
    drawView(card);
    card.element.querySelector(".card-model").textContent = card.model;
    card.element.querySelector(".latency").textContent = `${result.ms} ms (${result.provider})`;
    card.element.dataset.ms = String(result.ms);
    await refreshStats(card);
    const warning = result.warning;
    card.element.querySelector(".status").textContent =
      `${card.image.width}x${card.image.height}` + (warning ? ` · warning: ${warning}` : "");
    if (warning) card.element.dataset.warning = "yes";
    card.element.dataset.id = card.id;
    card.element.dataset.state = "done";
    for (const button of card.element.querySelectorAll(".download")) button.disabled = false;
  } catch (e) {
    card.element.dataset.state = "error";
    card.element.querySelector(".status").textContent = `Not segmented: ${e.message}`;
  }
  updateButtons();
}

// files: [{file, name, inFolder}]; files found inside a folder are taken only if they look like images.
function addFiles(files) {
  const list = files.filter((f) => !f.inFolder || IMAGE_EXT.test(f.name));
  if (!list.length) { message(files.length ? "No images there." : "No files."); return; }
  message(list.length < files.length ? `${files.length - list.length} file(s) that are not images were left out.` : "");
  for (const { file, name } of list) queue = queue.then(() => segment(file, name));
}

function picked(input) {
  return Array.from(input.files).map((file) => ({
    file, name: file.webkitRelativePath || file.name, inFolder: Boolean(file.webkitRelativePath),
  }));
}

// Dropped items: files as they are; folders walked (all levels) through the File System Entry API.
async function dropped(items) {
  const out = [];
  const walk = async (entry, prefix) => {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      out.push({ file, name: prefix + file.name, inFolder: prefix !== "" });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${prefix}${entry.name}/`);
      }
    }
  };
  const taken = Array.from(items).filter((i) => i.kind === "file")  // read now: the list empties later
    .map((i) => ({ entry: i.webkitGetAsEntry && i.webkitGetAsEntry(), file: i.getAsFile() }));
  for (const { entry, file } of taken) {
    if (entry) await walk(entry, "");
    else if (file) out.push({ file, name: file.name, inFolder: false });
  }
  return out;
}

function stemOf(name) {
  const base = name.split(/[\\/]/).pop();
  return base.includes(".") ? base.slice(0, base.lastIndexOf(".")) : base;
}

async function save(made, filename) {
  try {
    const blob = await made;
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = filename;
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(link.href), 60000);
    message("");
  } catch (e) { message(`Download failed: ${e.message}`); }
}

function download(card, output) {
  const suffix = output === "mask" ? "_mask.png" : ".json";
  save(backend.file(card, output, threshold()), stemOf(card.name) + suffix);
}

function updateButtons() {
  $("download-zip").disabled = !cards.some((c) => c.id);
  $("clear").disabled = !cards.length;
}

let drawPending = false;
function redrawAll() {
  if (drawPending) return;
  drawPending = true;
  requestAnimationFrame(() => { drawPending = false; for (const card of cards) drawView(card); });
}

// ---- camera: one frame in flight; frames that arrive meanwhile are shown but not sent (dropped) ----
const live = { stream: null, busy: false, mask: null, done: [], sent: 0, dropped: 0, ms: 0 };

function liveMask(result) {
  const overlay = new OffscreenCanvas(result.width, result.height);
  const context = overlay.getContext("2d");
  const out = context.createImageData(result.width, result.height);
  for (let i = 0, j = 0; i < result.mask.length; i++, j += 4) {
    if (result.mask[i]) { out.data[j + 1] = 255; out.data[j + 3] = Math.round(255 * ALPHA); }
  }
  context.putImageData(out, 0, 0);
  return overlay;
}

async function sendFrame(canvas) {
  live.busy = true;
  live.sent++;
  const start = performance.now();
  try {
    const result = await backend.frame(canvas, $("model").value, threshold());
    live.mask = liveMask(result);
    live.ms = result.ms;
    const now = performance.now();
    live.done.push(now);
    live.done = live.done.filter((t) => now - t < 2000);
    live.round = now - start;
  } catch (e) { message(`Camera: ${e.message}`); stopCamera(); }
  live.busy = false;
}

function liveLoop() {
  if (!live.stream) return;
  const video = $("video"), canvas = $("live-canvas");
  if (video.videoWidth) {
    if (canvas.width !== video.videoWidth) { canvas.width = video.videoWidth; canvas.height = video.videoHeight; }
    const context = canvas.getContext("2d");
    context.drawImage(video, 0, 0);
    if (!live.busy) sendFrame(canvas); else live.dropped++;
    if (live.mask) context.drawImage(live.mask, 0, 0, canvas.width, canvas.height);
    const fps = live.done.length > 1 ? 1000 * (live.done.length - 1) / (live.done.at(-1) - live.done[0]) : 0;
    $("live-stats").textContent =
      `${fps.toFixed(1)} frames/s segmented (round trip ${(live.round || 0).toFixed(0)} ms, model ` +
      `${live.ms.toFixed(0)} ms), ${live.dropped} frames dropped`;
    $("live-stats").dataset.fps = fps.toFixed(2);
    $("live-stats").dataset.frames = String(live.sent);
  }
  requestAnimationFrame(liveLoop);
}

async function startCamera() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    message("The camera needs this page opened as http://localhost or over https; browsers block it elsewhere.");
    return;
  }
  try {
    live.stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (e) { message(`Camera not available: ${e.message}`); return; }
  Object.assign(live, { busy: false, mask: null, done: [], sent: 0, dropped: 0, ms: 0 });
  const video = $("video");
  video.srcObject = live.stream;
  await video.play();
  $("live").hidden = false;
  $("camera").textContent = "Stop camera";
  requestAnimationFrame(liveLoop);
}

function stopCamera() {
  if (live.stream) for (const track of live.stream.getTracks()) track.stop();
  live.stream = null;
  $("camera").textContent = "Start camera";
}

// ---- wiring ----
async function start() {
  try {
    const health = await backend.health();
    // where the model runs, in plain words; the provider's name in the tooltip
    $("provider").textContent = health.runsOn;
    $("provider").title = health.detail;
    $("version").textContent = health.version;
    const models = await backend.models();
    const shown = [...$("model").options].map((o) => o.value).join("\n");
    if (shown !== models.models.map((m) => m.name).join("\n")) {  // the server's first paint, or anew
      $("model").replaceChildren();
      for (const m of models.models) {
        $("model").add(new Option(m.source === "bundled" ? m.name : `${m.name} (folder)`, m.name));
      }
      $("model").value = models.default;
    }
    await modelChanged();
  } catch (e) { message(e.message); }
}

async function modelChanged() {
  try {
    const info = await backend.modelInfo($("model").value);
    const metrics = info.test_metrics ? `, test Dice ${info.test_metrics.dice.toFixed(3)}` : "";
    $("model-info").textContent = `${info.label}, ${info.input_size.join("x")}${metrics}`;
    $("threshold").value = info.threshold;
    $("threshold-value").textContent = Number(info.threshold).toFixed(2);
    message("");
  } catch (e) { message(e.message); }
  redrawAll();
}

$("model").addEventListener("change", modelChanged);
$("threshold").addEventListener("input", () => {
  $("threshold-value").textContent = Number(threshold()).toFixed(2);
  redrawAll();
});
$("threshold").addEventListener("change", () => { for (const card of cards) refreshStats(card); });
for (const id of ["show-overlay", "show-outline", "show-mask"]) $(id).addEventListener("change", redrawAll);
$("files").addEventListener("change", (e) => { addFiles(picked(e.target)); e.target.value = ""; });
$("folder").addEventListener("change", (e) => { addFiles(picked(e.target)); e.target.value = ""; });
$("camera").addEventListener("click", () => (live.stream ? stopCamera() : startCamera()));
$("clear").addEventListener("click", () => { cards.length = 0; $("results").textContent = ""; updateButtons(); });
$("download-zip").addEventListener("click", () => {
  save(backend.zip(cards.filter((c) => c.id), threshold()), "lvunet-results.zip");
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", async (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  const items = e.dataTransfer.items;
  addFiles(items && items.length ? await dropped(items) : Array.from(e.dataTransfer.files).map(
    (file) => ({ file, name: file.name, inFolder: false })));
});
start();
