// Trains the same MLP with TensorFlow.js (each of its backends that this
// browser runs: WebGPU, WebGL, wasm) and with retroprop (WebGPU) in this
// page and reports samples/s and the time to the first step; the ratio is
// against TensorFlow.js's best backend at each batch size. `?seconds=N`
// sets the minimum timed span per run (default 4), `?batches=64,512` the
// batch sizes, `?chunk=N` the steps between read-backs (default 20),
// `?tfjs=webgpu,webgl,wasm` TensorFlow.js's backends, `?autorun` starts at
// once (the tests).
import init, { Bench } from './pkg/retroprop_web.js';

const params = new URLSearchParams(location.search);
const SECONDS = Number(params.get('seconds') ?? 4);
const BATCHES = (params.get('batches') ?? '64,512').split(',').map(Number);
const SIZES = [784, 256, 256, 10];
const ROWS = 8192;
const CHUNK = Number(params.get('chunk') ?? 20);
const TFJS_BACKENDS = (params.get('tfjs') ?? 'webgpu,webgl,wasm').split(',');
const RETROPROP_DEVICES = (params.get('retroprop') ?? 'gpu,cpu').split(',');
const $ = (id) => document.getElementById(id);
$('seconds').textContent = SECONDS;
const results = [];
window.benchResults = results;

function synthetic(rows, inputs, classes) {
  // Seeded, the same for both libraries.
  let s = 12345;
  const next = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const x = new Float32Array(rows * inputs).map(next);
  const y = new Int32Array(rows).map(() => Math.min(classes - 1, Math.floor(next() * classes)));
  return { x, y };
}

async function timeSteps(step, batch) {
  // Steady state: chunks of CHUNK steps, each ended by a read-back, until
  // SECONDS have passed.
  let steps = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < SECONDS * 1000) {
    await step(CHUNK);
    steps += CHUNK;
  }
  const seconds = (performance.now() - t0) / 1000;
  return { steps, samplesPerSecond: (steps * batch) / seconds };
}

async function tfjsRun(backendName, batch) {
  const tf = window.tf;
  const t0 = performance.now();
  if (!(await tf.setBackend(backendName))) throw new Error(`TensorFlow.js's ${backendName} backend does not start in this browser`);
  await tf.ready();
  const { x, y } = synthetic(ROWS, SIZES[0], SIZES[3]);
  const xs = tf.tensor2d(x, [ROWS, SIZES[0]]);
  const ys = tf.oneHot(tf.tensor1d(y, 'int32'), SIZES[3]).toFloat();
  const model = tf.sequential();
  model.add(tf.layers.dense({ inputShape: [SIZES[0]], units: SIZES[1], activation: 'relu' }));
  model.add(tf.layers.dense({ units: SIZES[2], activation: 'relu' }));
  model.add(tf.layers.dense({ units: SIZES[3] }));
  const optimizer = tf.train.adam(1e-3);
  let at = 0;
  const one = () => {
    if (at + batch > ROWS) at = 0;
    const start = at;
    at += batch;
    return optimizer.minimize(() => {
      const xb = xs.slice([start, 0], [batch, SIZES[0]]);
      const yb = ys.slice([start, 0], [batch, SIZES[3]]);
      return tf.losses.softmaxCrossEntropy(yb, model.apply(xb));
    }, true);
  };
  const step = async (n) => {
    let loss = null;
    for (let i = 0; i < n; i++) {
      loss?.dispose();
      loss = one();
    }
    const value = (await loss.data())[0];
    loss.dispose();
    return value;
  };
  await step(1);
  const first = performance.now() - t0;
  const timed = await timeSteps(step, batch);
  const backend = tf.getBackend();
  xs.dispose();
  ys.dispose();
  model.dispose();
  optimizer.dispose();
  return { library: 'TensorFlow.js ' + tf.version.tfjs, backend, batch, first, ...timed };
}

async function retropropRun(device, batch) {
  const t0 = performance.now();
  const bench = await Bench.create(Uint32Array.from(SIZES), batch, ROWS, device);
  const step = (n) => bench.steps(n);
  await step(1);
  const first = performance.now() - t0;
  const timed = await timeSteps(step, batch);
  const backend = bench.device;
  bench.free();
  return { library: 'retroprop', backend, batch, first, ...timed };
}

function show(r) {
  const row = document.createElement('tr');
  for (const v of [r.library, r.backend, r.batch, r.first.toFixed(0), r.samplesPerSecond.toFixed(0), r.steps]) {
    const td = document.createElement('td');
    td.textContent = v;
    row.append(td);
  }
  $('results').append(row);
}

async function run() {
  $('run').disabled = true;
  document.body.dataset.state = 'running';
  try {
    await init();
    const adapter = await navigator.gpu?.requestAdapter();
    const info = adapter?.info ?? {};
    window.benchAdapter = [info.vendor, info.architecture, info.description].filter(Boolean).join(' ') || 'unknown';
    $('status').textContent = `adapter: ${window.benchAdapter}`;
    tf.wasm?.setWasmPaths('/node_modules/@tensorflow/tfjs-backend-wasm/dist/');
    // TF.js's backends first at each batch size, then retroprop: each
    // starts cold (its own model), in the same page and on the same GPU.
    const runs = [...TFJS_BACKENDS.map((b) => [tfjsRun, b]), ...RETROPROP_DEVICES.map((d) => [retropropRun, d])];
    for (const batch of BATCHES) {
      for (const [fn, backend] of runs) {
        $('status').textContent = `${fn === tfjsRun ? `TensorFlow.js (${backend})` : 'retroprop'}, batch ${batch}…`;
        const r = await fn(backend, batch);
        console.log(`bench: ${r.library} batch ${r.batch}: first step ${r.first.toFixed(0)} ms, ${r.samplesPerSecond.toFixed(0)} samples/s`);
        results.push(r);
        show(r);
      }
    }
    const lines = BATCHES.map((b) => {
      const fastest = (rows) => rows.reduce((a, x) => (x.samplesPerSecond > a.samplesPerSecond ? x : a));
      const ours = fastest(results.filter((x) => x.batch === b && x.library === 'retroprop'));
      const theirs = fastest(results.filter((x) => x.batch === b && x.library !== 'retroprop'));
      return `batch ${b}: retroprop's best (${ours.backend}) ${(ours.samplesPerSecond / theirs.samplesPerSecond).toFixed(2)}× TensorFlow.js's best (${theirs.backend})`;
    });
    $('ratio').textContent = lines.join('; ');
    $('status').textContent = 'done';
    document.body.dataset.state = 'done';
  } catch (e) {
    $('status').textContent = `error: ${e}`;
    window.benchError = String(e);
    document.body.dataset.state = 'error';
  }
  $('run').disabled = false;
}

$('run').addEventListener('click', run);
document.body.dataset.state = 'ready';
if (params.has('autorun')) run();
