// The page: trains the digits network with retroprop's wasm module (WebGPU,
// or the CPU backend where the browser has none), plots the losses and
// accuracies as it goes, predicts digits drawn on the pad, and hands the
// model back as safetensors. Plain JavaScript, no framework.
import init, { Session, optimizerNames } from './pkg/retroprop_web.js';

const $ = (id) => document.getElementById(id);
const state = { session: null, history: [], stop: false, busy: false, epochs: 0 };
// For the browser tests: what the page has done, readable from outside.
window.retroprop = state;

function setState(name) {
  document.body.dataset.state = name;
}

function status(text) {
  $('status').textContent = text;
}

// `?device=gpu` (WebGPU, even on a software adapter), `cpu`, or `auto`
// (default: a hardware WebGPU adapter, else the CPU backend).
const DEVICE = new URLSearchParams(location.search).get('device') ?? 'auto';

async function openSession() {
  const webgpu = 'gpu' in navigator;
  const session = await Session.create(
    $('optimizer').value,
    Number($('lr').value),
    Math.max(1, Math.round(Number($('batch').value))),
    BigInt(0),
    webgpu ? DEVICE : 'cpu',
  );
  const onGpu = session.device.startsWith('gpu');
  $('device').className = onGpu ? 'device gpu' : 'device cpu';
  $('device').textContent = onGpu
    ? `Training on WebGPU: ${session.device}`
    : webgpu
      ? `Training on the CPU backend (${session.device}): ${session.fallback ?? 'asked for'}. ?device=gpu trains on the software adapter instead.`
      : `No WebGPU here (navigator.gpu is missing): training on the CPU backend (${session.device}).`;
  state.device = session.device;
  return session;
}

async function train() {
  if (state.busy) return;
  state.busy = true;
  state.stop = false;
  $('train').disabled = true;
  $('stop').disabled = false;
  $('download').disabled = true;
  setState('training');
  try {
    state.session?.free();
    state.session = null;
    state.history = [];
    status('Opening the device…');
    const session = await openSession();
    state.session = session;
    const epochs = Math.max(1, Math.round(Number($('epochs').value)));
    state.epochs = epochs;
    const perEpoch = session.steps_per_epoch;
    const chunk = Math.max(1, Math.min(perEpoch, 16));
    const total = epochs * perEpoch;
    $('progress').max = total;
    const started = performance.now();
    let done = 0;
    const first = await session.evaluate();
    record(0, first, NaN);
    for (let epoch = 1; epoch <= epochs && !state.stop; epoch++) {
      let lossSum = 0;
      let rows = 0;
      for (let s = 0; s < perEpoch && !state.stop; s += chunk) {
        const n = Math.min(chunk, perEpoch - s);
        const loss = await session.train_steps(n);
        lossSum += loss * n;
        rows += n;
        done += n;
        $('progress').value = done;
        const seconds = (performance.now() - started) / 1000;
        status(`epoch ${epoch}/${epochs}, step ${done}/${total}, ${seconds.toFixed(1)} s`);
      }
      if (rows === 0) break;
      const m = await session.evaluate();
      record(epoch, m, lossSum / rows);
    }
    const seconds = (performance.now() - started) / 1000;
    const last = state.history[state.history.length - 1];
    status(`${state.stop ? 'stopped' : 'done'}: ${last.steps} steps in ${seconds.toFixed(1)} s, validation accuracy ${(100 * last.valAcc).toFixed(1)} %`);
    state.seconds = seconds;
    $('download').disabled = false;
    setState('trained');
    predictPad();
  } catch (e) {
    status(`error: ${e}`);
    state.error = String(e);
    setState('error');
  } finally {
    state.busy = false;
    $('train').disabled = false;
    $('stop').disabled = true;
  }
}

function record(epoch, m, stepLoss) {
  const [trainLoss, trainAcc, valLoss, valAcc, steps] = m;
  state.history.push({ epoch, trainLoss, trainAcc, valLoss, valAcc, steps, stepLoss });
  $('metrics').textContent =
    `epoch ${epoch}: training loss ${trainLoss.toFixed(4)}, accuracy ${(100 * trainAcc).toFixed(1)} %\n` +
    `          validation loss ${valLoss.toFixed(4)}, accuracy ${(100 * valAcc).toFixed(1)} %`;
  $('metrics').dataset.valAcc = valAcc;
  plot();
}

function plot() {
  const canvas = $('chart');
  const g = canvas.getContext('2d');
  const W = canvas.width;
  const H = canvas.height;
  const pad = { l: 46, r: 46, t: 12, b: 30 };
  g.clearRect(0, 0, W, H);
  const h = state.history;
  const maxEpoch = Math.max(state.epochs, 1);
  const maxLoss = Math.max(...h.map((r) => Math.max(r.trainLoss, r.valLoss)), 0.1);
  const x = (e) => pad.l + (e / maxEpoch) * (W - pad.l - pad.r);
  const yLoss = (v) => H - pad.b - (v / maxLoss) * (H - pad.t - pad.b);
  const yAcc = (v) => H - pad.b - v * (H - pad.t - pad.b);
  g.strokeStyle = '#999';
  g.fillStyle = '#444';
  g.font = '11px sans-serif';
  g.beginPath();
  g.moveTo(pad.l, pad.t);
  g.lineTo(pad.l, H - pad.b);
  g.lineTo(W - pad.r, H - pad.b);
  g.lineTo(W - pad.r, pad.t);
  g.stroke();
  for (let i = 0; i <= 4; i++) {
    const f = i / 4;
    g.textAlign = 'right';
    g.fillText((maxLoss * f).toFixed(2), pad.l - 4, yLoss(maxLoss * f) + 4);
    g.textAlign = 'left';
    g.fillText(`${Math.round(100 * f)}%`, W - pad.r + 4, yAcc(f) + 4);
  }
  g.textAlign = 'center';
  const tick = Math.max(1, Math.ceil(maxEpoch / 10));
  for (let e = 0; e <= maxEpoch; e += tick) g.fillText(String(e), x(e), H - pad.b + 14);
  g.fillText('epoch', (W + pad.l - pad.r) / 2, H - 4);
  const line = (key, y, colour, dash) => {
    g.strokeStyle = colour;
    g.setLineDash(dash);
    g.lineWidth = 2;
    g.beginPath();
    h.forEach((r, i) => (i ? g.lineTo(x(r.epoch), y(r[key])) : g.moveTo(x(r.epoch), y(r[key]))));
    g.stroke();
    g.setLineDash([]);
    g.lineWidth = 1;
  };
  line('trainLoss', yLoss, '#1f77b4', []);
  line('valLoss', yLoss, '#d62728', []);
  line('trainAcc', yAcc, '#2ca02c', [5, 3]);
  line('valAcc', yAcc, '#ff7f0e', [5, 3]);
}

// The drawing pad: white ink on black, turned into what the digits data
// set holds: the ink's bounding box scaled into 32×32 (aspect kept,
// centred), thresholded, then the count of ink pixels in each 4×4 block
// (0..16), row by row: 64 numbers.
const pad = $('pad');
const ink = pad.getContext('2d');
let drawing = false;
let drawn = false;

function clearPad() {
  ink.fillStyle = '#000';
  ink.fillRect(0, 0, pad.width, pad.height);
  drawn = false;
  $('prediction').textContent = 'Draw a digit 0–9.';
  $('bars').textContent = '';
}

function at(e) {
  const r = pad.getBoundingClientRect();
  return [((e.clientX - r.left) * pad.width) / r.width, ((e.clientY - r.top) * pad.height) / r.height];
}

pad.addEventListener('pointerdown', (e) => {
  drawing = true;
  pad.setPointerCapture(e.pointerId);
  const [px, py] = at(e);
  ink.strokeStyle = '#fff';
  ink.lineWidth = 18;
  ink.lineCap = 'round';
  ink.lineJoin = 'round';
  ink.beginPath();
  ink.moveTo(px, py);
  ink.lineTo(px + 0.01, py);
  ink.stroke();
  drawn = true;
});
pad.addEventListener('pointermove', (e) => {
  if (!drawing) return;
  const [px, py] = at(e);
  ink.lineTo(px, py);
  ink.stroke();
});
const finish = () => {
  if (!drawing) return;
  drawing = false;
  predictPad();
};
pad.addEventListener('pointerup', finish);
pad.addEventListener('pointercancel', finish);
$('clear').addEventListener('click', clearPad);

function features() {
  const { width: W, height: H } = pad;
  const pixels = ink.getImageData(0, 0, W, H).data;
  let [x0, y0, x1, y1] = [W, H, -1, -1];
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      if (pixels[(y * W + x) * 4] > 127) {
        x0 = Math.min(x0, x);
        x1 = Math.max(x1, x);
        y0 = Math.min(y0, y);
        y1 = Math.max(y1, y);
      }
    }
  }
  if (x1 < 0) return null;
  const side = Math.max(x1 - x0 + 1, y1 - y0 + 1);
  const small = document.createElement('canvas');
  small.width = small.height = 32;
  const s = small.getContext('2d');
  s.fillStyle = '#000';
  s.fillRect(0, 0, 32, 32);
  const scale = 32 / side;
  const w = (x1 - x0 + 1) * scale;
  const h = (y1 - y0 + 1) * scale;
  s.drawImage(pad, x0, y0, x1 - x0 + 1, y1 - y0 + 1, (32 - w) / 2, (32 - h) / 2, w, h);
  const bits = s.getImageData(0, 0, 32, 32).data;
  const counts = new Float32Array(64);
  for (let y = 0; y < 32; y++) {
    for (let x = 0; x < 32; x++) {
      if (bits[(y * 32 + x) * 4] > 96) counts[(y >> 2) * 8 + (x >> 2)] += 1;
    }
  }
  // Show what the network sees.
  const seen = $('seen').getContext('2d');
  for (let i = 0; i < 64; i++) {
    const v = Math.round((counts[i] / 16) * 255);
    seen.fillStyle = `rgb(${v},${v},${v})`;
    seen.fillRect((i % 8) * 8, Math.floor(i / 8) * 8, 8, 8);
  }
  return counts;
}

async function predictPad() {
  if (!drawn || !state.session || state.busy && document.body.dataset.state === 'training') {
    if (drawn && !state.session) $('prediction').textContent = 'Train the network first.';
    return;
  }
  const x = features();
  if (!x) return;
  try {
    const probs = await state.session.predict(x);
    let best = 0;
    probs.forEach((p, i) => (p > probs[best] ? (best = i) : 0));
    $('prediction').innerHTML = `It looks like a <b>${best}</b> (${(100 * probs[best]).toFixed(0)} %)`;
    $('prediction').dataset.digit = best;
    $('bars').innerHTML = Array.from(probs)
      .map((p, i) => `<span>${i}</span><div class="bar" style="width:${(100 * p).toFixed(1)}%"></div>`)
      .join('');
    state.prediction = { digit: best, probs: Array.from(probs), features: Array.from(x) };
  } catch (e) {
    $('prediction').textContent = `error: ${e}`;
  }
}

async function download() {
  if (!state.session) return;
  const bytes = await state.session.model();
  const blob = new Blob([bytes], { type: 'application/octet-stream' });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob);
  a.download = 'digits-model.safetensors';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}

$('train').addEventListener('click', train);
$('stop').addEventListener('click', () => (state.stop = true));
$('download').addEventListener('click', download);

clearPad();
plot();
try {
  await init();
  // The optimizers the library knows, by its names; Adam first chosen.
  for (const name of optimizerNames()) {
    const option = document.createElement('option');
    option.value = name;
    option.textContent = name;
    option.selected = name === 'adam';
    $('optimizer').append(option);
  }
  $('device').textContent = 'gpu' in navigator
    ? 'Ready: press Train (WebGPU found).'
    : 'Ready: press Train. This browser has no WebGPU: training will run on the CPU backend.';
  $('train').disabled = false;
  setState('ready');
} catch (e) {
  $('device').textContent = `Could not load the wasm module (${e}): build it with web/build.sh`;
  setState('error');
}
