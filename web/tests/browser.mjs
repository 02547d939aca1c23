// The browser tests: Debian's chromium, headless, on WebGPU, driven by
// puppeteer-core, against the page built by web/build.sh.
//
//   node web/tests/browser.mjs [--bench] [--only NAME,...]
//
// 1. parity: the GPU kernels against the CPU reference in the browser
//    (web/src/lib.rs `backend_parity`).
// 2. training: a few steps on WebGPU in the browser against the native CPU
//    reference (`retroprop train --device cpu`), same data, split, seed and
//    initialisation; every parameter within the GPU parity tolerance.
// 3. page: the page as a user has it: train to at least 90 % validation
//    accuracy, a drawn digit predicted, the model downloaded and loaded
//    back by `retroprop evaluate`; a screenshot in web/test-output/.
// 3b. software-webgpu: the page's auto on SwiftShader takes the CPU backend.
// 4. bench (with --bench): TensorFlow.js against retroprop, same session.
//
// Anything missing (chromium, its WebGPU, the built page, the native
// program) fails with how to get it: never a silent pass.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const web = join(here, '..');
const root = join(web, '..');
const out = join(web, 'test-output');
const args = process.argv.slice(2);
const only = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : null;
const wanted = (name) => (only ? only.includes(name) : name !== 'bench' || args.includes('--bench'));

function fail(message) {
  console.error(`browser tests: FAIL: ${message}`);
  process.exit(1);
}

const chromium = process.env.CHROMIUM ?? '/usr/bin/chromium';
if (!existsSync(chromium)) fail(`no chromium at ${chromium}: apt-get install chromium chromium-driver (or set CHROMIUM)`);
if (!existsSync(join(web, 'www/pkg/retroprop_web_bg.wasm'))) fail('the page is not built: run web/build.sh');
if (!existsSync(join(web, 'node_modules/puppeteer-core'))) fail('puppeteer-core is missing: cd web && npm ci');
const retroprop = process.env.RETROPROP ?? join(root, 'target/release/retroprop');
if (!existsSync(retroprop)) fail(`no native program at ${retroprop}: cargo build --release -p retroprop-cli`);

const { default: puppeteer } = await import('puppeteer-core');
const { serve } = await import(join(web, 'serve.mjs'));

mkdirSync(out, { recursive: true });
const server = await serve(0);
const base = `http://127.0.0.1:${server.address().port}`;
const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  // A page busy on a software GPU can answer the protocol late.
  protocolTimeout: 900_000,
  args: [
    '--headless=new',
    '--no-sandbox',
    '--enable-unsafe-webgpu',
    '--enable-features=Vulkan',
    '--use-vulkan=native',
    // SwiftShader (Chromium's own Vulkan on the CPU) unless WEBGPU_ADAPTER says
    // otherwise (`default`: whatever chromium picks; headless without a GPU it
    // still picks SwiftShader here).
    `--use-webgpu-adapter=${process.env.WEBGPU_ADAPTER ?? 'swiftshader'}`,
    '--window-size=1200,1000',
  ],
});

let failures = 0;
const results = {};
async function test(name, body) {
  if (!wanted(name)) return;
  const t0 = Date.now();
  const page = await browser.newPage();
  page.setDefaultTimeout(300_000);
  page.on('console', (m) => (m.type() === 'error' || m.text().startsWith('bench:')) && console.log(`  [${name} console] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`  [${name} page error] ${e.message}`));
  try {
    await body(page);
    console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failures += 1;
    console.log(`FAIL ${name}: ${e.stack ?? e}`);
  } finally {
    await page.close();
  }
}

// Opens a blank page of this origin with the wasm module loaded as `window.rp`.
async function withModule(page) {
  await page.goto(`${base}/tests.html`);
  await page.waitForFunction(() => window.rp !== undefined || window.rpError !== undefined);
  const error = await page.evaluate(() => window.rpError);
  if (error) throw new Error(`the wasm module did not load: ${error}`);
  const gpu = await page.evaluate(async () => 'gpu' in navigator && (await navigator.gpu.requestAdapter()) !== null);
  if (!gpu) throw new Error('this chromium offers no WebGPU adapter (flags: --enable-unsafe-webgpu --use-webgpu-adapter=swiftshader)');
}

// A safetensors file's float32 tensors, by name.
function tensors(bytes) {
  const n = Number(Buffer.from(bytes.subarray(0, 8)).readBigUInt64LE());
  const header = JSON.parse(Buffer.from(bytes.subarray(8, 8 + n)).toString());
  const map = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [a, b] = t.data_offsets;
    const slice = bytes.slice(8 + n + a, 8 + n + b);
    map[name] = new Float32Array(slice.buffer, slice.byteOffset, (b - a) / 4);
  }
  return { map, metadata: header.__metadata__ ?? {} };
}

await test('parity', async (page) => {
  await withModule(page);
  const report = await page.evaluate(() => window.rp.backend_parity().then((r) => ({ ok: true, r }), (e) => ({ ok: false, r: String(e) })));
  console.log(report.r.replace(/^/gm, '     '));
  if (!report.ok) throw new Error('a GPU kernel differs from the CPU reference (above)');
});

await test('training', async (page) => {
  await withModule(page);
  const [steps, seed, lr, batch] = [12, 3, 0.003, 32];
  const reference = join(out, 'reference-cpu.safetensors');
  rmSync(reference, { force: true });
  const native = spawnSync(retroprop, ['train', '--device', 'cpu', '--optimizer', 'adam', '--lr', String(lr), '--batch-size', String(batch),
    '--steps', String(steps), '--seed', String(seed), '--save', reference, '--quiet'], { encoding: 'utf8' });
  if (native.status !== 0) throw new Error(`retroprop train failed: ${native.stderr}`);
  const got = await page.evaluate(async (steps, seed, lr, batch) => {
    const s = await window.rp.Session.create('adam', lr, batch, BigInt(seed), 'gpu');
    await s.train_steps(steps);
    const bytes = await s.model();
    return { device: s.device, bytes: Array.from(bytes) };
  }, steps, seed, lr, batch);
  if (!got.device.startsWith('gpu')) throw new Error(`trained on ${got.device}, not WebGPU`);
  const browserModel = tensors(Uint8Array.from(got.bytes));
  const cpuModel = tensors(new Uint8Array(readFileSync(reference)));
  let worst = { e: 0, at: '' };
  for (const [name, c] of Object.entries(cpuModel.map)) {
    const g = browserModel.map[name];
    if (!g || g.length !== c.length) throw new Error(`tensor ${name} missing or of another size in the browser's model`);
    for (let i = 0; i < c.length; i++) {
      const e = Math.abs(g[i] - c[i]) / Math.max(Math.abs(g[i]), Math.abs(c[i]), 1e-2);
      if (!(e <= worst.e)) worst = { e, at: `${name}[${i}]: browser ${g[i]} vs native cpu ${c[i]}` };
    }
  }
  for (const key of ['retroprop.mean', 'retroprop.std', 'retroprop.arch']) {
    if (browserModel.metadata[key] !== cpuModel.metadata[key]) throw new Error(`metadata ${key} differs: ${browserModel.metadata[key]} vs ${cpuModel.metadata[key]}`);
  }
  console.log(`     ${steps} Adam steps on ${got.device} vs native cpu: max parameter relative error ${worst.e.toExponential(2)} (${worst.at})`);
  results.training = { steps, maxRelativeError: worst.e, device: got.device };
  if (!(worst.e < 1e-4)) throw new Error(`parameters differ beyond 1e-4: ${worst.at}`);
});

await test('page', async (page) => {
  const downloads = join(out, 'downloads');
  rmSync(downloads, { recursive: true, force: true });
  mkdirSync(downloads, { recursive: true });
  const cdp = await page.createCDPSession();
  await cdp.send('Browser.setDownloadBehavior', { behavior: 'allow', downloadPath: downloads });
  await page.setViewport({ width: 1200, height: 1000 });
  // SwiftShader is a fallback adapter, which `auto` passes over for the CPU
  // backend (the 'software-webgpu' test): ask for WebGPU by name.
  await page.goto(`${base}/?device=gpu`);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state));
  if ((await page.evaluate(() => document.body.dataset.state)) !== 'ready') {
    throw new Error(`the page did not load: ${await page.$eval('#device', (e) => e.textContent)}`);
  }
  await page.click('#train');
  await page.waitForFunction(() => ['trained', 'error'].includes(document.body.dataset.state), { timeout: 600_000 });
  const state = await page.evaluate(() => ({ s: document.body.dataset.state, device: window.retroprop.device, history: window.retroprop.history, error: window.retroprop.error, seconds: window.retroprop.seconds }));
  if (state.s !== 'trained') throw new Error(`training failed: ${state.error}`);
  const last = state.history[state.history.length - 1];
  console.log(`     ${state.history.length - 1} epochs on ${state.device} in ${state.seconds.toFixed(1)} s: validation accuracy ${(100 * last.valAcc).toFixed(1)} %`);
  if (!state.device.startsWith('gpu')) throw new Error(`the page trained on ${state.device}, not WebGPU`);
  if (!(last.valAcc >= 0.9)) throw new Error(`validation accuracy ${last.valAcc} < 0.9`);
  const chart = await page.$eval('#chart', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let coloured = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && !(d[i] === d[i + 1] && d[i + 1] === d[i + 2])) coloured++;
    return coloured;
  });
  if (chart < 200) throw new Error(`the chart shows no curves (${chart} coloured pixels)`);
  // Draw a 0: an ellipse on the pad.
  const box = await (await page.$('#pad')).boundingBox();
  const [cx, cy] = [box.x + box.width / 2, box.y + box.height / 2];
  await page.mouse.move(cx + 60, cy);
  await page.mouse.down();
  for (let a = 0; a <= 2 * Math.PI + 0.2; a += 0.15) await page.mouse.move(cx + 60 * Math.cos(a), cy + 90 * Math.sin(a));
  await page.mouse.up();
  await page.waitForFunction(() => document.getElementById('prediction').dataset.digit !== undefined);
  const prediction = await page.evaluate(() => window.retroprop.prediction);
  console.log(`     drawn 0 predicted as ${prediction.digit} (${(100 * prediction.probs[prediction.digit]).toFixed(0)} %)`);
  results.page = { epochs: state.history.length - 1, seconds: state.seconds, validationAccuracy: last.valAcc, drawn0: prediction.digit };
  await page.screenshot({ path: join(out, 'page.png'), fullPage: true });
  await page.click('#download');
  let file = null;
  for (let i = 0; i < 100 && !file; i++) {
    await new Promise((r) => setTimeout(r, 100));
    file = readdirSync(downloads).find((f) => f.endsWith('.safetensors'));
  }
  if (!file) throw new Error('no model was downloaded');
  const model = join(downloads, file);
  const evaluated = spawnSync(retroprop, ['evaluate', '--model', model, '--data', join(root, 'data/digits.csv'), '--device', 'cpu'], { encoding: 'utf8' });
  if (evaluated.status !== 0) throw new Error(`retroprop evaluate failed on the download: ${evaluated.stderr}`);
  console.log(`     retroprop evaluate ${file}: ${evaluated.stdout.trim().replace(/\n/g, '; ')}`);
  const accuracy = /accuracy[^0-9]*([0-9.]+)/i.exec(evaluated.stdout);
  if (!accuracy) throw new Error(`no accuracy in retroprop evaluate's output: ${evaluated.stdout}`);
  // The whole data set, training rows included: at least the validation bar.
  if (!(Number(accuracy[1]) >= 90)) throw new Error(`retroprop evaluate: accuracy ${accuracy[1]} % < 90 %`);
  results.page.evaluateAccuracy = Number(accuracy[1]);
  // PyTorch loads the download as the state_dict of nn.Linear layers.
  // TORCH_PYTHON names a python that has torch and safetensors (CI passes
  // the Python step's virtual environment): then a missing torch, or one
  // that fails to load the file, fails the test. Without it, python3 is
  // tried and the check is skipped, saying so, where it has no torch.
  const named = process.env.TORCH_PYTHON;
  const python = named || 'python3';
  const hasTorch = spawnSync(python, ['-c', 'import torch, safetensors.torch'], { encoding: 'utf8' }).status === 0;
  if (!hasTorch && named) {
    throw new Error(`TORCH_PYTHON=${named} has no torch and safetensors: ${named} -m pip install torch safetensors`);
  }
  if (!hasTorch) {
    console.log(`     PyTorch check not run: ${python} has no torch and safetensors (TORCH_PYTHON=/path/to/python to run it)`);
    return;
  }
  const torch = spawnSync(python, ['-c', `
import sys, torch, safetensors.torch as st
sd = st.load_file(sys.argv[1])
sizes = [sd['layers.0.weight'].shape[1]] + [sd[f'layers.{i}.weight'].shape[0] for i in range(len(sd) // 2)]
net = torch.nn.ModuleDict({'layers': torch.nn.ModuleList([torch.nn.Linear(a, b) for a, b in zip(sizes, sizes[1:])])})
net.load_state_dict(sd)
print('PyTorch loaded', sizes)`, model], { encoding: 'utf8' });
  if (torch.status !== 0) throw new Error(`PyTorch could not load the download: ${torch.stderr}`);
  console.log(`     ${torch.stdout.trim()}`);
});

await test('no-webgpu', async (page) => {
  // A browser without WebGPU: the page trains on the CPU backend and says so.
  await page.evaluateOnNewDocument(() => {
    delete Navigator.prototype.gpu;
  });
  await page.goto(`${base}/`);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state));
  await page.$eval('#epochs', (e) => (e.value = '2'));
  await page.click('#train');
  await page.waitForFunction(() => ['trained', 'error'].includes(document.body.dataset.state), { timeout: 300_000 });
  const r = await page.evaluate(() => ({ s: document.body.dataset.state, device: document.getElementById('device').textContent, history: window.retroprop.history, error: window.retroprop.error }));
  if (r.s !== 'trained') throw new Error(`training failed: ${r.error}`);
  const last = r.history[r.history.length - 1];
  console.log(`     ${r.device} → validation accuracy ${(100 * last.valAcc).toFixed(1)} % after 2 epochs`);
  if (!/No WebGPU/.test(r.device) || !/cpu/.test(r.device)) throw new Error(`the page does not say it fell back to the CPU: ${r.device}`);
});

await test('software-webgpu', async (page) => {
  // Only a software WebGPU adapter (SwiftShader, a fallback adapter): the
  // page's default, auto, trains on the CPU backend and says why.
  await page.goto(`${base}/`);
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.state));
  await page.$eval('#epochs', (e) => (e.value = '1'));
  await page.click('#train');
  await page.waitForFunction(() => ['trained', 'error'].includes(document.body.dataset.state), { timeout: 300_000 });
  const r = await page.evaluate(() => ({ s: document.body.dataset.state, device: document.getElementById('device').textContent, error: window.retroprop.error, on: window.retroprop.device }));
  if (r.s !== 'trained') throw new Error(`training failed: ${r.error}`);
  console.log(`     ${r.device}`);
  if (!r.on.startsWith('cpu') || !/no hardware GPU/.test(r.device)) throw new Error(`auto on a software adapter did not take the CPU and say why: ${r.device}`);
});

await test('bench', async (page) => {
  for (const f of ['tfjs/dist/tf.min.js', 'tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js', 'tfjs-backend-wasm/dist/tf-backend-wasm.min.js']) {
    if (!existsSync(join(web, 'node_modules/@tensorflow', f))) throw new Error(`TensorFlow.js is missing (${f}): cd web && npm ci`);
  }
  const seconds = process.env.BENCH_SECONDS ?? 3;
  const chunk = process.env.BENCH_CHUNK ?? 20;
  // BENCH_TFJS / BENCH_RETROPROP: which backends and devices (all by default).
  const pick = [['tfjs', process.env.BENCH_TFJS], ['retroprop', process.env.BENCH_RETROPROP]].filter(([, v]) => v).map(([k, v]) => `&${k}=${v}`).join('');
  await page.goto(`${base}/bench.html?autorun&seconds=${seconds}&chunk=${chunk}${pick}`);
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), { timeout: 600_000 });
  const r = await page.evaluate(() => ({ rows: window.benchResults, error: window.benchError, ratio: document.getElementById('ratio').textContent, adapter: window.benchAdapter }));
  console.log(`     WebGPU adapter: ${r.adapter}`);
  if (r.error) throw new Error(r.error);
  for (const x of r.rows) {
    console.log(`     ${x.library.padEnd(22)} batch ${String(x.batch).padStart(3)}: first step ${x.first.toFixed(0).padStart(6)} ms, ${x.samplesPerSecond.toFixed(0).padStart(7)} samples/s (${x.steps} steps; ${x.backend})`);
  }
  console.log(`     ${r.ratio}`);
  results.bench = r.rows;
  await page.screenshot({ path: join(out, 'bench.png'), fullPage: true });
});

writeFileSync(join(out, 'results.json'), JSON.stringify(results, null, 2));
await browser.close();
server.close();
if (failures) fail(`${failures} test(s) failed`);
console.log('browser tests: all passed');
