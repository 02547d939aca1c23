//! retroprop in the browser: what the page (`web/www/`) calls, over
//! wasm-bindgen.
//!
//! [`Session`] trains the bundled digits network (64-64-10, ReLU,
//! softmax cross-entropy, standardised inputs, 20 % held out, as
//! `retroprop train` does with no options) on WebGPU, or on the CPU backend
//! where the browser has no WebGPU, and hands back the model as the
//! safetensors bytes `retroprop train --save` writes. [`Bench`] trains a
//! given MLP on synthetic data for the comparison with TensorFlow.js.
//!
//! Every call that reads back from the GPU returns a promise: the browser
//! never blocks on a read-back.

use retroprop::io::{SavedModel, model_bytes};
use retroprop::loss::softmax;
use retroprop::{
    Activation, Adagrad, Adam, AdamW, Dataset, Device, Loss, Mlp, Optimizer, RmsProp, Sgd,
    Standardizer, Targets, TrainConfig, Trainer,
};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use wasm_bindgen::prelude::*;

/// The bundled digits data set (UCI optical digits, CC BY 4.0; see
/// data/README.md): 8×8 images of pixel counts 0..16, and their labels.
const DIGITS: &[u8] = include_bytes!("../../data/digits.csv");

fn js(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

/// The optimizer `name` at `lr`, with torch's defaults otherwise (as
/// `retroprop train --optimizer NAME --lr LR`): the library reads the
/// name, which may also carry options (`sgd:momentum=0.9`).
fn optimizer(name: &str, lr: f64) -> Result<Optimizer, JsValue> {
    let mut optimizer: Optimizer = name.parse().map_err(js)?;
    optimizer.set_option("lr", &lr.to_string()).map_err(js)?;
    optimizer.validate().map_err(js)?;
    Ok(optimizer)
}

/// A trainer on WebGPU when `device` is `gpu`, or `auto` and the browser
/// has a hardware WebGPU adapter; else on the CPU. Returns the trainer and,
/// when `auto` fell back to the CPU, why.
async fn open(
    mlp: Mlp,
    config: TrainConfig,
    device: &str,
) -> Result<(Trainer, Option<String>), JsValue> {
    let on = |device| config.clone().device(device);
    match device {
        "cpu" => Ok((
            Trainer::new_async(mlp, on(Device::Cpu)).await.map_err(js)?,
            None,
        )),
        "gpu" => Ok((
            Trainer::new_async(mlp, on(Device::Gpu)).await.map_err(js)?,
            None,
        )),
        // As natively: a hardware GPU, else the CPU backend. A software
        // WebGPU adapter (SwiftShader, which browsers report as a fallback
        // adapter) is taken only with `gpu`: on it the CPU backend's wasm
        // SIMD GEMM trains 5-10x faster (docs/performance.md).
        "auto" => {
            let trainer = Trainer::new_async(mlp, on(Device::Auto))
                .await
                .map_err(js)?;
            let fallback = trainer.device_fallback().map(str::to_string);
            Ok((trainer, fallback))
        }
        other => Err(js(format!("unknown device `{other}` (auto, gpu or cpu)"))),
    }
}

/// A trainer shared with the promises of its calls: taken out for a call,
/// put back after, so that a second call while one runs is refused rather
/// than interleaved.
struct Slot<T>(Rc<RefCell<Option<T>>>);

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Slot<T> {
        Slot(self.0.clone())
    }
}

impl<T> Slot<T> {
    fn new(value: T) -> Slot<T> {
        Slot(Rc::new(RefCell::new(Some(value))))
    }
    fn take(&self) -> Result<T, JsValue> {
        self.0
            .borrow_mut()
            .take()
            .ok_or_else(|| js("busy: the previous call has not finished"))
    }
    fn put(&self, value: T) {
        *self.0.borrow_mut() = Some(value);
    }
}

struct Digits {
    trainer: Trainer,
    train: Dataset,
    validation: Dataset,
    standardizer: Standardizer,
}

/// One training run on the digits, driven step by step from the page.
#[wasm_bindgen]
pub struct Session {
    inner: Slot<Digits>,
    device: String,
    fallback: Option<String>,
    steps_per_epoch: u32,
    train_rows: u32,
    validation_rows: u32,
}

#[wasm_bindgen]
impl Session {
    /// Opens a run: `optimizer` (sgd, adam, adamw, rmsprop, adagrad) at
    /// `lr`, `batch_size` rows a step, `seed` for the split, the
    /// initialisation and the shuffles, on `device` (auto, gpu or cpu).
    /// The same split, standardisation, network and initialisation as
    /// `retroprop train --seed SEED` with no data file.
    pub async fn create(
        optimizer_name: String,
        lr: f64,
        batch_size: u32,
        seed: u64,
        device: String,
    ) -> Result<Session, JsValue> {
        let all = Dataset::from_csv_reader(DIGITS, Path::new("<bundled digits.csv>"), 1, true)
            .map_err(js)?;
        let (mut train, mut validation) = all.split(0.2, seed).map_err(js)?;
        let standardizer = Standardizer::fit(&train);
        standardizer.apply(&mut train).map_err(js)?;
        standardizer.apply(&mut validation).map_err(js)?;
        let classes = match train.targets() {
            Targets::Classes(labels) => labels.iter().max().map_or(2, |&m| m as usize + 1),
            Targets::Values { width, .. } => *width,
        };
        let sizes = [train.features(), 64, classes];
        let activations = Activation::parse_list("relu", sizes.len() - 1).map_err(js)?;
        let mlp = Mlp::with_activations(&sizes, &activations).map_err(js)?;
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(optimizer(&optimizer_name, lr)?)
            .batch_size(batch_size.max(1) as usize)
            .seed(seed);
        let (trainer, fallback) = open(mlp, config, &device).await?;
        let rows = train.rows();
        Ok(Session {
            device: trainer.device_name(),
            fallback,
            steps_per_epoch: rows.div_ceil(batch_size.max(1) as usize) as u32,
            train_rows: rows as u32,
            validation_rows: validation.rows() as u32,
            inner: Slot::new(Digits {
                trainer,
                train,
                validation,
                standardizer,
            }),
        })
    }

    /// The backend in words (`gpu: …` or `cpu: …`).
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        self.device.clone()
    }

    /// Why the run is on the CPU when WebGPU was asked for and missing.
    #[wasm_bindgen(getter)]
    pub fn fallback(&self) -> Option<String> {
        self.fallback.clone()
    }

    /// Optimizer steps in one epoch.
    #[wasm_bindgen(getter)]
    pub fn steps_per_epoch(&self) -> u32 {
        self.steps_per_epoch
    }

    /// Rows trained on.
    #[wasm_bindgen(getter)]
    pub fn train_rows(&self) -> u32 {
        self.train_rows
    }

    /// Rows held out.
    #[wasm_bindgen(getter)]
    pub fn validation_rows(&self) -> u32 {
        self.validation_rows
    }

    /// Runs `steps` optimizer steps from where training stands (crossing
    /// epochs as needed); resolves to their mean training loss.
    pub fn train_steps(&self, steps: u32) -> js_sys::Promise {
        let slot = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut run = slot.take()?;
            let result = run
                .trainer
                .train_steps_async(&run.train, steps as u64)
                .await;
            slot.put(run);
            Ok(JsValue::from_f64(result.map_err(js)?))
        })
    }

    /// Resolves to `[train loss, train accuracy, validation loss,
    /// validation accuracy, steps so far]`.
    pub fn evaluate(&self) -> js_sys::Promise {
        let slot = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut run = slot.take()?;
            let train = run.trainer.evaluate_async(&run.train).await;
            let validation = run.trainer.evaluate_async(&run.validation).await;
            let steps = run.trainer.steps();
            slot.put(run);
            let (train, validation) = (train.map_err(js)?, validation.map_err(js)?);
            let out = [
                train.loss,
                train.accuracy.unwrap_or(f64::NAN),
                validation.loss,
                validation.accuracy.unwrap_or(f64::NAN),
                steps as f64,
            ];
            Ok(js_sys::Float64Array::from(&out[..]).into())
        })
    }

    /// Class probabilities for one 8×8 image of pixel counts 0..16 (row by
    /// row, 64 values): standardised as the training data was, through
    /// the network, then a softmax.
    pub fn predict(&self, pixels: Vec<f32>) -> js_sys::Promise {
        let slot = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut run = slot.take()?;
            let features = run.standardizer.features();
            if pixels.len() != features {
                slot.put(run);
                return Err(js(format!("predict takes {features} pixels")));
            }
            let mut x = pixels;
            let logits = match run.standardizer.apply_rows(&mut x) {
                Ok(()) => run.trainer.predict_async(&x).await,
                Err(e) => Err(e),
            };
            slot.put(run);
            let probs = softmax(&logits.map_err(js)?);
            Ok(js_sys::Float32Array::from(&probs[..]).into())
        })
    }

    /// The trained model as the safetensors file `retroprop train --save`
    /// writes: PyTorch's `state_dict` names, with the architecture,
    /// activations, loss and standardisation in the metadata, so that
    /// `retroprop evaluate` and PyTorch load it.
    pub fn model(&self) -> js_sys::Promise {
        let slot = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let mut run = slot.take()?;
            let params = run.trainer.parameters_async().await;
            let buffers = run.trainer.buffers_async().await;
            let steps = run.trainer.steps();
            let model = params.and_then(|params| {
                Ok(SavedModel {
                    mlp: run.trainer.mlp().clone(),
                    params,
                    buffers: buffers?,
                    num_batches_tracked: steps,
                    loss: Loss::CrossEntropy,
                    standardizer: Some(run.standardizer.clone()),
                })
            });
            slot.put(run);
            let bytes =
                model_bytes(Path::new("model.safetensors"), &model.map_err(js)?).map_err(js)?;
            Ok(js_sys::Uint8Array::from(&bytes[..]).into())
        })
    }
}

/// An MLP trained on synthetic data for the speed comparison with
/// TensorFlow.js: `sizes` (e.g. 784,256,256,10), ReLU, softmax
/// cross-entropy, Adam at 1e-3, `batch` rows a step.
#[wasm_bindgen]
pub struct Bench {
    inner: Slot<(Trainer, Dataset)>,
    device: String,
}

#[wasm_bindgen]
impl Bench {
    /// Builds the network and `rows` rows of seeded synthetic data (inputs
    /// uniform in [0, 1), labels uniform over the classes), on `device`.
    pub async fn create(
        sizes: Vec<u32>,
        batch: u32,
        rows: u32,
        device: String,
    ) -> Result<Bench, JsValue> {
        let sizes: Vec<usize> = sizes.iter().map(|&s| s as usize).collect();
        let (inputs, classes) = (sizes[0], *sizes.last().unwrap_or(&2));
        // A small linear congruential generator: the data need only be
        // the same on every run, not good.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let x: Vec<f32> = (0..rows as usize * inputs).map(|_| next()).collect();
        let y: Vec<u32> = (0..rows)
            .map(|_| ((next() * classes as f32) as u32).min(classes as u32 - 1))
            .collect();
        let data = Dataset::new(x, inputs, Targets::Classes(y)).map_err(js)?;
        let activations = Activation::parse_list("relu", sizes.len() - 1).map_err(js)?;
        let mlp = Mlp::with_activations(&sizes, &activations).map_err(js)?;
        let config = TrainConfig::default()
            .loss(Loss::CrossEntropy)
            .optimizer(Adam::default().lr(1e-3))
            .batch_size(batch as usize);
        let (trainer, _) = open(mlp, config, &device).await?;
        Ok(Bench {
            device: trainer.device_name(),
            inner: Slot::new((trainer, data)),
        })
    }

    /// The backend in words.
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        self.device.clone()
    }

    /// Runs `steps` steps and resolves to their mean loss, once the GPU
    /// has finished them (the loss is read back).
    pub fn steps(&self, steps: u32) -> js_sys::Promise {
        let slot = self.inner.clone();
        wasm_bindgen_futures::future_to_promise(async move {
            let (mut trainer, data) = slot.take()?;
            let loss = trainer.train_steps_async(&data, steps as u64).await;
            slot.put((trainer, data));
            Ok(JsValue::from_f64(loss.map_err(js)?))
        })
    }
}

/// Every optimizer's name, as the library reads it (`Optimizer::NAMES`):
/// the page's menu lists these, so that it names no optimizer itself.
#[wasm_bindgen(js_name = optimizerNames)]
pub fn optimizer_names() -> Vec<String> {
    Optimizer::NAMES.iter().map(|n| n.to_string()).collect()
}

/// Logs panics to the browser console with their message.
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys_log(&info.to_string());
    }));
}

fn web_sys_log(message: &str) {
    js_sys::Reflect::get(&js_sys::global(), &JsValue::from_str("console"))
        .ok()
        .and_then(|console| {
            let error = js_sys::Reflect::get(&console, &JsValue::from_str("error")).ok()?;
            let error: js_sys::Function = error.dyn_into().ok()?;
            error.call1(&console, &JsValue::from_str(message)).ok()
        });
}

/// The largest relative error between `a` and `b`, each difference divided
/// by the larger magnitude or `floor` (the GPU parity tests' measure), and
/// where it is.
fn max_rel_error(a: &[f32], b: &[f32], floor: f64) -> (f64, usize) {
    let mut worst = (if a.len() == b.len() { 0.0 } else { f64::NAN }, 0);
    for (i, (&x, &y)) in a.iter().zip(b).enumerate() {
        let (x, y) = (x as f64, y as f64);
        let e = (x - y).abs() / x.abs().max(y.abs()).max(floor);
        if e > worst.0 || e.is_nan() {
            worst = (e, i);
        }
    }
    worst
}

/// The GPU's kernels against the CPU reference, in this browser, through
/// the backend seam: for several networks (activations, losses, widths
/// that are not multiples of the tiles), the forward pass (`predict`), the
/// loss and gradients of a batch (`forward_backward`), every optimizer's
/// update, evaluation, and a few fused training steps. Each is compared
/// within the native GPU parity tests' tolerances (relative 1e-4 against a
/// floor of 1e-2 for parameters and outputs, 1e-3 for gradients). Resolves
/// to a report, one line a check; rejects with the report when a check
/// fails or there is no WebGPU.
#[wasm_bindgen]
pub async fn backend_parity() -> Result<String, JsValue> {
    use retroprop::Init;
    use retroprop::backend::{Backend, BackendConfig, BatchShare};
    use retroprop::cpu::CpuBackend;
    use retroprop::gpu::{GpuBackend, GpuOptions};

    let cases: [(&[usize], &str, Loss); 4] = [
        (&[5, 7, 3], "tanh,identity", Loss::Mse),
        (&[64, 33, 10], "relu,identity", Loss::CrossEntropy),
        (
            &[17, 129, 65, 4],
            "sigmoid,leaky_relu,identity",
            Loss::BceWithLogits,
        ),
        (&[40, 70, 1], "gelu,identity", Loss::HalfMse),
    ];
    let optimizers: Vec<Optimizer> = vec![
        Sgd::default().lr(0.05).momentum(0.9).nesterov(true).into(),
        Adam::default().lr(1e-2).into(),
        AdamW::default().lr(1e-2).weight_decay(1e-2).into(),
        RmsProp::default()
            .lr(1e-3)
            .momentum(0.5)
            .centered(true)
            .into(),
        Adagrad::default().lr(0.1).into(),
    ];
    let report = RefCell::new(Vec::new());
    let failed = std::cell::Cell::new(false);
    let check = |what: String, err: f64, limit: f64| {
        let ok = err < limit;
        failed.set(failed.get() | !ok);
        report.borrow_mut().push(format!(
            "{} {what}: max relative error {err:.2e} (limit {limit:.0e})",
            if ok { "ok  " } else { "FAIL" }
        ));
    };
    for (case, &(sizes, activations, loss)) in cases.iter().enumerate() {
        let layers = sizes.len() - 1;
        let mlp = Mlp::with_activations(
            sizes,
            &Activation::parse_list(activations, layers).map_err(js)?,
        )
        .map_err(js)?;
        let rows = 150;
        let (inputs, outputs) = (sizes[0], sizes[layers]);
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ case as u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32
        };
        let x: Vec<f32> = (0..rows * inputs).map(|_| next() * 2.0 - 1.0).collect();
        let targets = match loss {
            Loss::CrossEntropy => Targets::Classes(
                (0..rows)
                    .map(|_| ((next() * outputs as f32) as u32).min(outputs as u32 - 1))
                    .collect(),
            ),
            Loss::BceWithLogits => Targets::Values {
                values: (0..rows * outputs)
                    .map(|_| (next() > 0.5) as u8 as f32)
                    .collect(),
                width: outputs,
            },
            _ => Targets::Values {
                values: (0..rows * outputs).map(|_| next()).collect(),
                width: outputs,
            },
        };
        let data = Dataset::new(x.clone(), inputs, targets).map_err(js)?;
        let params = mlp.init(Init::TorchDefault, case as u64 + 1);
        let name = format!("{sizes:?} {activations} {loss}");
        for (o, optimizer) in optimizers.iter().enumerate() {
            let mut config = BackendConfig::new(loss, *optimizer);
            config.batch_rows = Some(64);
            let mut gpu =
                GpuBackend::new_async(&mlp, params.clone(), &config, GpuOptions::default(), false)
                    .await
                    .map_err(js)?;
            let mut cpu = CpuBackend::new(&mlp, params.clone(), &config);
            if o == 0 {
                let (g, c) = (
                    gpu.predict_async(&x).await.map_err(js)?,
                    cpu.predict_async(&x).await.map_err(js)?,
                );
                check(
                    format!("{name}: forward"),
                    max_rel_error(&g, &c, 1e-2).0,
                    1e-4,
                );
                let (g, c) = (
                    gpu.evaluate_async(&data).await.map_err(js)?,
                    cpu.evaluate_async(&data).await.map_err(js)?,
                );
                let gap = (g.0 - c.0).abs() / c.0.abs().max(1e-3);
                check(format!("{name}: evaluation loss"), gap, 1e-4);
                if g.1 != c.1 {
                    check(
                        format!("{name}: evaluation right {:?} vs {:?}", g.1, c.1),
                        1.0,
                        0.5,
                    );
                }
            }
            let (gd, cd) = (
                gpu.upload(&data).map_err(js)?,
                cpu.upload(&data).map_err(js)?,
            );
            let batch: Vec<u32> = (0..64).collect();
            let gl = gpu
                .forward_backward_async(&gd, BatchShare::whole(&batch))
                .await
                .map_err(js)?;
            let cl = cpu
                .forward_backward_async(&cd, BatchShare::whole(&batch))
                .await
                .map_err(js)?;
            let (gg, cg) = (
                gpu.gradients_async().await.map_err(js)?,
                cpu.gradients_async().await.map_err(js)?,
            );
            if o == 0 {
                check(
                    format!("{name}: batch loss"),
                    (gl - cl).abs() / cl.abs().max(1e-3),
                    1e-4,
                );
                check(
                    format!("{name}: gradients"),
                    max_rel_error(&gg, &cg, 1e-2).0,
                    1e-3,
                );
            }
            // The same gradients into both, then three updates.
            gpu.set_gradients(&cg).map_err(js)?;
            for _ in 0..3 {
                gpu.update(optimizer.lr()).map_err(js)?;
                cpu.update(optimizer.lr()).map_err(js)?;
            }
            let (gp, cp) = (
                gpu.parameters_async().await.map_err(js)?,
                cpu.parameters_async().await.map_err(js)?,
            );
            check(
                format!("{name}: {} update", optimizer.name()),
                max_rel_error(&gp, &cp, 1e-2).0,
                1e-4,
            );
            // Fused steps from there over the whole data set, shuffled.
            let order: Vec<u32> = (0..rows as u32).rev().collect();
            let gs = gpu
                .train_steps_async(&gd, &order, 32, 5, optimizer.lr())
                .await
                .map_err(js)?;
            let cs = cpu
                .train_steps_async(&cd, &order, 32, 5, optimizer.lr())
                .await
                .map_err(js)?;
            let (gp, cp) = (
                gpu.parameters_async().await.map_err(js)?,
                cpu.parameters_async().await.map_err(js)?,
            );
            let steps_ok = gs.steps == cs.steps && gs.steps == 5;
            check(
                format!("{name}: {} 5 training steps", optimizer.name()),
                if steps_ok {
                    max_rel_error(&gp, &cp, 1e-2).0
                } else {
                    f64::INFINITY
                },
                1e-4,
            );
            if o == 0 {
                report.borrow_mut().push(format!("     on {}", gpu.name()));
            }
        }
    }
    let text = report.into_inner().join("\n");
    if failed.get() {
        Err(js(text))
    } else {
        Ok(text)
    }
}
