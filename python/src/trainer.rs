//! `NativeTrainer`: the library's `TrainConfig` and `Trainer` as one Python
//! class, on a training thread of its own (worker.rs).

use crate::errors::{guard, to_py};
use crate::model::NativeModel;
use crate::settings;
use crate::worker::{State, Worker};
use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use retroprop::io::{RunNotes, SavedModel, load_checkpoint, save_checkpoint, save_noted_model};
use retroprop::{
    Activation, Dataset, Device, EpochRecord, Error, GradClip, History, Init, Loss, LrSchedule,
    Mlp, SharedRows, Standardizer, StopFlag, Targets, TrainConfig, Trainer,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A run's settings and the trainer built from them. Made by
/// `retroprop.Trainer` and the estimators; see their docstrings.
#[pyclass(module = "retroprop._retroprop")]
pub struct NativeTrainer {
    worker: Worker,
    stop: StopFlag,
    sizes: Vec<usize>,
    loss: Loss,
    device_name: String,
    precision: retroprop::Precision,
    /// Where the last `fit` read its training inputs (`last_fit_rows`).
    last_rows: Arc<AtomicUsize>,
}

/// A float32 C-contiguous NumPy array's values, lent to the library
/// without a copy (`Dataset::shared`): the reference keeps the array, and
/// so its memory, alive as long as any data set holds it, on whichever
/// thread drops it last (PyO3 defers the release to the next holder of the
/// GIL). That nothing writes the values meanwhile is `WriteLock`'s part.
struct ArrayRows {
    _array: Py<PyAny>,
    start: *const f32,
    len: usize,
}

// SAFETY: the values are only read, never written through this, and the
// array they belong to is kept alive by `_array`; `WriteLock` makes it
// read-only for as long as the library reads it.
unsafe impl Send for ArrayRows {}
unsafe impl Sync for ArrayRows {}

impl AsRef<[f32]> for ArrayRows {
    fn as_ref(&self) -> &[f32] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `start` is the aligned first of `len` contiguous f32 of
        // an array `_array` keeps alive (checked in `lend_rows`).
        unsafe { std::slice::from_raw_parts(self.start, self.len) }
    }
}

/// Arrays made read-only while the library reads one of them; dropping
/// the lock restores each (on success, error and `KeyboardInterrupt`
/// alike, as it is a drop). Locks on one array nest, across trainers and
/// threads: the array becomes writeable again when the last lock on it
/// goes, and only if it was before the first.
#[derive(Default)]
pub struct WriteLock<'py> {
    arrays: Vec<Bound<'py, PyAny>>,
}

/// For each array some lock holds (by address): how many locks hold it,
/// and whether it was writeable before the first.
static LOCKED: Mutex<BTreeMap<usize, (usize, bool)>> = Mutex::new(BTreeMap::new());

impl WriteLock<'_> {
    fn set_writeable(array: &Bound<'_, PyAny>, writeable: bool) -> PyResult<()> {
        array.getattr("flags")?.setattr("writeable", writeable)
    }

    /// Makes `array` read-only until this lock drops.
    fn hold<'py>(lock: &mut WriteLock<'py>, array: Bound<'py, PyAny>) -> PyResult<()> {
        let mut locked = LOCKED.lock().unwrap_or_else(|e| e.into_inner());
        let key = array.as_ptr() as usize;
        match locked.get_mut(&key) {
            Some((count, _)) => *count += 1,
            None => {
                let was: bool = array.getattr("flags")?.getattr("writeable")?.extract()?;
                if was {
                    WriteLock::set_writeable(&array, false)?;
                }
                locked.insert(key, (1, was));
            }
        }
        lock.arrays.push(array);
        Ok(())
    }
}

impl Drop for WriteLock<'_> {
    fn drop(&mut self) {
        let mut locked = LOCKED.lock().unwrap_or_else(|e| e.into_inner());
        // The base first: NumPy lets a view become writeable again only
        // when its base is.
        for array in self.arrays.iter().rev() {
            let key = array.as_ptr() as usize;
            let Some((count, was)) = locked.get_mut(&key) else {
                continue;
            };
            *count -= 1;
            if *count == 0 {
                let was = *was;
                locked.remove(&key);
                if was {
                    let _ = WriteLock::set_writeable(array, true);
                }
            }
        }
    }
}

/// `x`'s values for a data set: shared without a copy when the memory is
/// NumPy's own, that is when `x` and every array it is a view of can be
/// made read-only (they are, in `lock`, until it drops); copied when the
/// chain of views ends in memory of some other object (a `bytearray`, a
/// memory map, a buffer from C), whose writers NumPy's flag cannot stop.
fn lend_rows<'py>(
    x: &Bound<'py, PyArray2<f32>>,
    lock: &mut WriteLock<'py>,
) -> PyResult<SharedRows> {
    if !x.is_c_contiguous() {
        return Err(PyValueError::new_err(
            "x must be a C-contiguous float32 array [rows, features]",
        ));
    }
    let aligned: bool = x.getattr("flags")?.getattr("aligned")?.extract()?;
    if !aligned {
        return Err(PyValueError::new_err(
            "x must be an aligned float32 array (numpy.require(x, numpy.float32, 'CA'))",
        ));
    }
    let mut chain = vec![x.as_any().clone()];
    let numpy_owns = loop {
        let base = chain.last().unwrap().getattr("base")?;
        if base.is_none() {
            break true;
        }
        if base.cast::<PyUntypedArray>().is_err() {
            break false;
        }
        chain.push(base);
    };
    if !numpy_owns {
        let copy = x.readonly().as_slice()?.to_vec();
        return Ok(Arc::new(copy));
    }
    for array in chain {
        WriteLock::hold(lock, array)?;
    }
    Ok(Arc::new(ArrayRows {
        _array: x.as_any().clone().unbind(),
        start: x.data().cast_const(),
        len: x.len(),
    }))
}

/// A data set from NumPy arrays: `x` float32 `[rows, features]`, and
/// either class indices `[rows]` or target values `[rows, width]`. The
/// inputs are shared, not copied (`lend_rows`; `lock` holds them
/// read-only until it drops); the targets are copied.
fn dataset<'py>(
    x: &Bound<'py, PyArray2<f32>>,
    classes: Option<&PyReadonlyArray1<'_, u32>>,
    values: Option<&PyReadonlyArray2<'_, f32>>,
    lock: &mut WriteLock<'py>,
) -> PyResult<Dataset> {
    let features = x.shape()[1];
    let targets = match (classes, values) {
        (Some(c), None) => Targets::Classes(c.as_slice()?.to_vec()),
        (None, Some(v)) => Targets::Values {
            values: v.as_slice()?.to_vec(),
            width: v.shape()[1],
        },
        _ => return Err(PyValueError::new_err("give either classes or values")),
    };
    let rows = lend_rows(x, lock)?;
    Dataset::shared(rows, features, targets).map_err(to_py)
}

fn record_dict<'py>(py: Python<'py>, r: &EpochRecord) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", r.epoch)?;
    d.set_item("step", r.step)?;
    d.set_item("train_loss", r.train_loss)?;
    d.set_item("val_loss", r.validation.map(|v| v.loss))?;
    d.set_item("val_accuracy", r.validation.and_then(|v| v.accuracy))?;
    d.set_item("lr", r.lr)?;
    d.set_item("seconds", r.seconds)?;
    // With norms_every: the sum over the sampled steps of every layer's
    // squared parameter norm, taken before each step's update (the
    // estimators' L2 term of scikit-learn's loss curve).
    let squares: f64 = r
        .layer_norms
        .iter()
        .map(|n| n.weight_norm * n.weight_norm)
        .sum();
    d.set_item("squared_norm_sum", squares)?;
    Ok(d)
}

fn history_dict<'py>(py: Python<'py>, h: &History) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let epochs = PyList::empty(py);
    for r in &h.epochs {
        epochs.append(record_dict(py, r)?)?;
    }
    d.set_item("epochs", epochs)?;
    d.set_item("best_epoch", h.best_epoch)?;
    d.set_item("stopped_early", h.stopped_early)?;
    d.set_item("interrupted", h.interrupted)?;
    Ok(d)
}

impl State {
    fn saved_model(&mut self) -> retroprop::Result<SavedModel> {
        Ok(SavedModel {
            mlp: self.mlp.clone(),
            params: self.trainer.parameters()?,
            loss: self.loss,
            standardizer: self.standardizer.clone(),
        })
    }
}

fn state(state: &mut Option<State>) -> retroprop::Result<&mut State> {
    state.as_mut().ok_or_else(|| {
        Error::Config("the trainer was lost to an earlier internal error; make a new one".into())
    })
}

#[pymethods]
impl NativeTrainer {
    /// Builds the network and the trainer on `device`. `activations`: one
    /// name for every hidden layer (the output layer identity) or one per
    /// layer, comma separated. `optimizer_options`: (torch option name,
    /// value as text). `params`: flat parameters to start from, else drawn
    /// by `init` with `seed`. `resume`: a checkpoint to continue from
    /// (epochs and max_steps then count from the original run's start).
    /// `precision`: `f32` or `mixed` (f16 operands in the GPU's products).
    #[new]
    #[pyo3(signature = (
        sizes, activations, loss, optimizer, optimizer_options, batch_size, epochs,
        max_steps, shuffle, seed, init, device, lr_schedule, clip_grad_norm,
        clip_grad_value, dropout, early_stopping, min_delta, norms_every,
        standardization, params, resume, precision = "f32"
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        sizes: Vec<usize>,
        activations: &str,
        loss: &str,
        optimizer: &str,
        optimizer_options: Vec<(String, String)>,
        batch_size: Option<usize>,
        epochs: usize,
        max_steps: Option<u64>,
        shuffle: bool,
        seed: u64,
        init: &str,
        device: &str,
        lr_schedule: &str,
        clip_grad_norm: Option<f64>,
        clip_grad_value: Option<f64>,
        dropout: Option<f32>,
        early_stopping: Option<usize>,
        min_delta: f64,
        norms_every: Option<u64>,
        standardization: Option<(Vec<f32>, Vec<f32>)>,
        params: Option<PyReadonlyArray1<'_, f32>>,
        resume: Option<PathBuf>,
        precision: &str,
    ) -> PyResult<NativeTrainer> {
        guard(|| {
            let layers = sizes.len().saturating_sub(1);
            let activations =
                Activation::parse_list(activations, layers).map_err(PyValueError::new_err)?;
            let mlp = Mlp::with_activations(&sizes, &activations).map_err(to_py)?;
            let loss: Loss = loss.parse().map_err(PyValueError::new_err)?;
            let optimizer = settings::optimizer(optimizer, &optimizer_options).map_err(to_py)?;
            let init: Init = init.parse().map_err(PyValueError::new_err)?;
            let device: Device = device.parse().map_err(PyValueError::new_err)?;
            let lr_schedule: LrSchedule = lr_schedule.parse().map_err(PyValueError::new_err)?;
            let precision: retroprop::Precision =
                precision.parse().map_err(PyValueError::new_err)?;
            let stop = StopFlag::new();
            let mut config = TrainConfig::default()
                .loss(loss)
                .optimizer(optimizer)
                .epochs(epochs)
                .shuffle(shuffle)
                .seed(seed)
                .init(init)
                .device(device)
                .lr_schedule(lr_schedule)
                .precision(precision)
                .stop_flag(stop.clone());
            config.batch_size = batch_size;
            config.max_steps = max_steps;
            config.grad_clip = GradClip {
                max_norm: clip_grad_norm,
                max_value: clip_grad_value,
            };
            config.norms_every = norms_every;
            if let Some(p) = dropout {
                config = config.dropout(p);
            }
            if let Some(patience) = early_stopping {
                config = config.early_stopping(patience, min_delta);
            }
            let standardizer = standardization
                .map(|(mean, std)| Standardizer::new(mean, std))
                .transpose()
                .map_err(to_py)?;
            let resumed = resume
                .as_deref()
                .map(load_checkpoint)
                .transpose()
                .map_err(to_py)?;
            let params = match (&resumed, params) {
                (Some((model, name, _)), _) => {
                    if name != optimizer.name() {
                        return Err(PyValueError::new_err(format!(
                            "resume {}: the checkpoint was written with optimizer {name}, not {}",
                            resume.as_ref().unwrap().display(),
                            optimizer.name()
                        )));
                    }
                    if model.sizes != sizes {
                        return Err(PyValueError::new_err(format!(
                            "resume {}: the checkpoint's layer sizes {:?} are not {sizes:?}",
                            resume.as_ref().unwrap().display(),
                            model.sizes
                        )));
                    }
                    Some(model.params.clone())
                }
                (None, Some(p)) => Some(p.as_slice()?.to_vec()),
                (None, None) => None,
            };
            let standardizer = match &resumed {
                Some((model, _, _)) => model.standardizer.clone().or(standardizer),
                None => standardizer,
            };
            if let Some((_, _, checkpoint)) = &resumed {
                // Epochs count from the start of the original run.
                config.epochs = config.epochs.saturating_sub(checkpoint.epoch as usize);
            }
            let checkpoint = resumed.map(|(_, _, c)| c);
            let worker = Worker::start();
            let sizes_kept = sizes.clone();
            let device_name = worker.call(
                py,
                None,
                move |slot, _| {
                    let mut trainer = match params {
                        Some(p) => Trainer::with_parameters(mlp.clone(), p, config)?,
                        None => Trainer::new(mlp.clone(), config)?,
                    };
                    if let Some(c) = &checkpoint {
                        trainer.restore(c)?;
                    }
                    let name = trainer.device_name();
                    *slot = Some(State {
                        trainer,
                        mlp,
                        loss,
                        optimizer,
                        standardizer,
                    });
                    Ok(name)
                },
                |_, _| Ok(()),
            )?;
            Ok(NativeTrainer {
                worker,
                stop,
                sizes: sizes_kept,
                loss,
                device_name,
                precision,
                last_rows: Arc::default(),
            })
        })
    }

    /// Trains on `x` with class indices `classes` or target values
    /// `values` for the configured epochs (or until stopped), evaluating on
    /// the validation arrays after each epoch when given. `standardize`:
    /// compute the training rows' mean and deviation first (once; later
    /// fits reuse them) and apply them to every input. `callback(record)`
    /// runs after each epoch, on this thread; `stop()` from it ends the run
    /// before the next step. `checkpoint`: written every
    /// `checkpoint_every` epochs and where the run stops. Returns the
    /// history as a dict. Ctrl-C stops at the next step boundary, keeps
    /// the steps taken, writes the checkpoint, and raises
    /// `KeyboardInterrupt`.
    #[pyo3(signature = (
        x, classes, values, x_val, classes_val, values_val, standardize, callback,
        checkpoint, checkpoint_every
    ))]
    #[allow(clippy::too_many_arguments)]
    fn fit<'py>(
        &self,
        py: Python<'py>,
        x: Bound<'py, PyArray2<f32>>,
        classes: Option<PyReadonlyArray1<'py, u32>>,
        values: Option<PyReadonlyArray2<'py, f32>>,
        x_val: Option<Bound<'py, PyArray2<f32>>>,
        classes_val: Option<PyReadonlyArray1<'py, u32>>,
        values_val: Option<PyReadonlyArray2<'py, f32>>,
        standardize: bool,
        callback: Option<Py<PyAny>>,
        checkpoint: Option<PathBuf>,
        checkpoint_every: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            // Dropped last, after the training thread has let go of the
            // rows: the arrays are read-only until then.
            let mut lock = WriteLock::default();
            let mut train = dataset(&x, classes.as_ref(), values.as_ref(), &mut lock)?;
            let mut validation = match &x_val {
                Some(xv) => Some(dataset(
                    xv,
                    classes_val.as_ref(),
                    values_val.as_ref(),
                    &mut lock,
                )?),
                None => None,
            };
            self.stop.clear();
            let last_rows = self.last_rows.clone();
            let history = self.worker.call(
                py,
                Some(&self.stop),
                move |slot, epochs| {
                    let state = state(slot)?;
                    if standardize && state.standardizer.is_none() {
                        state.standardizer = Some(Standardizer::fit(&train));
                    }
                    if let Some(s) = &state.standardizer {
                        s.apply(&mut train)?;
                        if let Some(v) = &mut validation {
                            s.apply(v)?;
                        }
                    }
                    let every = if checkpoint.is_some() {
                        checkpoint_every.max(1)
                    } else {
                        0
                    };
                    let (mlp, loss, optimizer, standardizer) = (
                        state.mlp.clone(),
                        state.loss,
                        state.optimizer,
                        state.standardizer.clone(),
                    );
                    let path = checkpoint.clone();
                    last_rows.store(train.x().as_ptr() as usize, Ordering::Relaxed);
                    let history = state.trainer.fit_checkpointed(
                        &train,
                        validation.as_ref(),
                        |record| epochs.report(record),
                        every,
                        |c| {
                            let model = SavedModel {
                                mlp: mlp.clone(),
                                params: c.params.clone(),
                                loss,
                                standardizer: standardizer.clone(),
                            };
                            save_checkpoint(path.as_ref().unwrap(), &model, &optimizer, &c)
                        },
                    )?;
                    if (history.interrupted || history.cut_mid_epoch)
                        && let Some(path) = &checkpoint
                    {
                        let c = state.trainer.checkpoint()?;
                        let model = state.saved_model()?;
                        save_checkpoint(path, &model, &state.optimizer, &c)?;
                    }
                    Ok(history)
                },
                |py, record| match &callback {
                    Some(f) => f.call1(py, (record_dict(py, record)?,)).map(|_| ()),
                    None => Ok(()),
                },
            )?;
            history_dict(py, &history)
        })
    }

    /// The address of the training inputs the last `fit` read (after any
    /// standardisation), 0 before one: the test that `fit` does not copy
    /// float32 C-contiguous inputs compares it with the array's own.
    fn last_fit_rows(&self) -> usize {
        self.last_rows.load(Ordering::Relaxed)
    }

    /// Asks a running `fit` to stop at the next step boundary (from a
    /// callback or another thread). The steps taken are kept.
    fn stop(&self) {
        self.stop.request();
    }

    /// The trained model as it stands.
    fn model(&self, py: Python<'_>) -> PyResult<NativeModel> {
        guard(|| {
            let saved = self.worker.call(
                py,
                None,
                |slot, _| state(slot)?.saved_model(),
                |_, _| Ok(()),
            )?;
            Ok(NativeModel::trained(saved, self.precision))
        })
    }

    /// Writes the model to `path` as safetensors; `interrupted`: mark it as
    /// stopped at the current step, as the program does after Ctrl-C.
    fn save(&self, py: Python<'_>, path: PathBuf, interrupted: bool) -> PyResult<()> {
        let precision = self.precision;
        guard(|| {
            self.worker.call(
                py,
                None,
                move |slot, _| {
                    let state = state(slot)?;
                    let model = state.saved_model()?;
                    let notes = RunNotes {
                        interrupted_at_step: interrupted.then(|| state.trainer.steps()),
                        precision: Some(precision),
                        ..RunNotes::default()
                    };
                    save_noted_model(&path, &model, &notes)
                },
                |_, _| Ok(()),
            )
        })
    }

    /// Writes a checkpoint (parameters, optimizer state, position, scheduler)
    /// that `resume=` continues from.
    fn save_checkpoint(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        guard(|| {
            self.worker.call(
                py,
                None,
                move |slot, _| {
                    let state = state(slot)?;
                    let c = state.trainer.checkpoint()?;
                    let model = state.saved_model()?;
                    save_checkpoint(&path, &model, &state.optimizer, &c)
                },
                |_, _| Ok(()),
            )
        })
    }

    /// The network's outputs for `x` float32 `[rows, inputs]` (the saved
    /// standardisation applied first): `[rows, outputs]`, logits for the
    /// classification losses.
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
    ) -> PyResult<Bound<'py, PyAny>> {
        guard(|| {
            let mut rows = x
                .as_slice()
                .map_err(|_| PyValueError::new_err("x must be C-contiguous float32"))?
                .to_vec();
            let (n, features) = (x.shape()[0], x.shape()[1]);
            if features != self.sizes[0] {
                return Err(to_py(Error::Shape {
                    what: "features of the inputs (network inputs)".into(),
                    expected: self.sizes[0],
                    got: features,
                }));
            }
            let outputs = *self.sizes.last().unwrap();
            let out = self.worker.call(
                py,
                None,
                move |slot, _| {
                    let state = state(slot)?;
                    if let Some(s) = &state.standardizer {
                        s.apply_rows(&mut rows)?;
                    }
                    state.trainer.predict(&rows)
                },
                |_, _| Ok(()),
            )?;
            Ok(PyArray1::from_vec(py, out)
                .reshape([n, outputs])?
                .into_any())
        })
    }

    /// Mean loss and (for classification) accuracy on a data set, as a
    /// tuple.
    #[pyo3(signature = (x, classes, values))]
    fn evaluate(
        &self,
        py: Python<'_>,
        x: Bound<'_, PyArray2<f32>>,
        classes: Option<PyReadonlyArray1<'_, u32>>,
        values: Option<PyReadonlyArray2<'_, f32>>,
    ) -> PyResult<(f64, Option<f64>)> {
        guard(|| {
            let mut lock = WriteLock::default();
            let mut data = dataset(&x, classes.as_ref(), values.as_ref(), &mut lock)?;
            self.worker.call(
                py,
                None,
                move |slot, _| {
                    let state = state(slot)?;
                    if let Some(s) = &state.standardizer {
                        s.apply(&mut data)?;
                    }
                    let e = state.trainer.evaluate(&data)?;
                    Ok((e.loss, e.accuracy))
                },
                |_, _| Ok(()),
            )
        })
    }

    /// The device in words (which one `auto` chose).
    #[getter]
    fn device_name(&self) -> String {
        self.device_name.clone()
    }

    /// Optimizer steps taken.
    fn steps(&self, py: Python<'_>) -> PyResult<u64> {
        guard(|| {
            self.worker.call(
                py,
                None,
                |slot, _| Ok(state(slot)?.trainer.steps()),
                |_, _| Ok(()),
            )
        })
    }

    /// The loss by name.
    #[getter]
    fn loss(&self) -> String {
        self.loss.to_string()
    }
}
