//! `NativeTrainer`: the library's `TrainConfig` and `Trainer` as one Python
//! class, on a training thread of its own (worker.rs).

use crate::errors::{guard, to_py};
use crate::model::NativeModel;
use crate::run_args::RunArgs;
use crate::sources::NativeSource;
use crate::worker::{Held, Worker};
use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use retroprop::io::{RunNotes, SavedModel, load_checkpoint, save_checkpoint, save_noted_model};
use retroprop::train::{ResolvedRun, RunRequest, Saved};
use retroprop::{
    Dataset, EpochRecord, Error, History, Loss, Mlp, Optimizer, SharedRows, Standardizer, StopFlag,
    Targets, Trainer,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What a trainer's thread keeps between jobs.
pub struct State {
    /// The trainer.
    pub trainer: Trainer,
    /// Its network.
    pub mlp: Mlp,
    /// Its loss.
    pub loss: Loss,
    /// Its optimizer (named in checkpoints).
    pub optimizer: Optimizer,
    /// The scaling applied to inputs before the network, once known.
    pub standardizer: Option<Standardizer>,
}

/// The trainer's state as a job other than a fit sees it: all of it
/// between jobs, or, between two epochs of a fit, what the fit lends.
pub struct View<'a> {
    /// The trainer.
    pub trainer: &'a mut Trainer,
    /// Its network.
    pub mlp: &'a Mlp,
    /// Its loss.
    pub loss: Loss,
    /// Its optimizer.
    pub optimizer: Optimizer,
    /// The scaling applied to inputs first, once known.
    pub standardizer: Option<&'a Standardizer>,
}

impl Held for State {
    type View<'a> = View<'a>;
    type Report = EpochRecord;
    const ON_POOL: bool = true;

    fn view(&mut self) -> View<'_> {
        View {
            trainer: &mut self.trainer,
            mlp: &self.mlp,
            loss: self.loss,
            optimizer: self.optimizer,
            standardizer: self.standardizer.as_ref(),
        }
    }

    fn lend<'a>(view: &'a mut View<'_>) -> View<'a> {
        View {
            trainer: &mut *view.trainer,
            mlp: view.mlp,
            loss: view.loss,
            optimizer: view.optimizer,
            standardizer: view.standardizer,
        }
    }
}

/// A run's settings and the trainer built from them. Made by
/// `retroprop.Trainer` and the estimators; see their docstrings.
#[pyclass(module = "retroprop._retroprop")]
pub struct NativeTrainer {
    worker: Worker<State>,
    stop: StopFlag,
    sizes: Vec<usize>,
    loss: Loss,
    device_name: String,
    precision: retroprop::Precision,
    /// Whether `fit` scales its inputs (resolved).
    standardize: bool,
    /// The steering changes of a resume: (setting, from, to).
    resume_changes: Vec<(String, String, String)>,
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
/// goes, and only if it was before the first. NumPy lets a view become
/// writeable only while its base is: a view whose base another lock still
/// holds (the validation rows cut from the training rows' array, two fits
/// on views of one array) waits, read-only, until that lock goes, and is
/// restored then, bases before their views.
#[derive(Default)]
pub struct WriteLock<'py> {
    arrays: Vec<Bound<'py, PyAny>>,
}

/// An array some lock holds, or held and could not yet restore.
struct Locked {
    /// How many locks hold it (0: waiting for a base to be restored).
    count: usize,
    /// Whether it was writeable before the first lock.
    was: bool,
    /// The arrays it is a view of (by address), nearest first.
    bases: Vec<usize>,
    /// The array, kept alive while it waits to be restored.
    array: Py<PyAny>,
}

/// Every array some lock holds or held (by address).
static LOCKED: Mutex<BTreeMap<usize, Locked>> = Mutex::new(BTreeMap::new());

impl WriteLock<'_> {
    fn set_writeable(array: &Bound<'_, PyAny>, writeable: bool) -> PyResult<()> {
        array.getattr("flags")?.setattr("writeable", writeable)
    }

    /// Makes `array` read-only until this lock drops; `bases`: the arrays
    /// it is a view of, nearest first.
    fn hold<'py>(
        lock: &mut WriteLock<'py>,
        array: Bound<'py, PyAny>,
        bases: Vec<usize>,
    ) -> PyResult<()> {
        let mut locked = LOCKED.lock().unwrap_or_else(|e| e.into_inner());
        let key = array.as_ptr() as usize;
        match locked.get_mut(&key) {
            Some(held) => held.count += 1,
            None => {
                let was: bool = array.getattr("flags")?.getattr("writeable")?.extract()?;
                if was {
                    WriteLock::set_writeable(&array, false)?;
                }
                locked.insert(
                    key,
                    Locked {
                        count: 1,
                        was,
                        bases,
                        array: array.clone().unbind(),
                    },
                );
            }
        }
        lock.arrays.push(array);
        Ok(())
    }
}

/// Restores every array no lock holds, bases before views; one whose base
/// a lock still holds waits for it.
fn restore_released(py: Python<'_>, locked: &mut BTreeMap<usize, Locked>) {
    let mut released: Vec<usize> = locked
        .iter()
        .filter(|(_, held)| held.count == 0)
        .map(|(&key, _)| key)
        .collect();
    released.sort_by_key(|key| locked[key].bases.len());
    for key in released {
        let held = &locked[&key];
        let restored = !held.was || WriteLock::set_writeable(held.array.bind(py), true).is_ok();
        // A base still held: try again when it goes. Otherwise (a base
        // made read-only by its owner) NumPy will never allow it.
        let waits = !restored && held.bases.iter().any(|base| locked.contains_key(base));
        if !waits {
            locked.remove(&key);
        }
    }
}

impl Drop for WriteLock<'_> {
    fn drop(&mut self) {
        let Some(first) = self.arrays.first() else {
            return;
        };
        let py = first.py();
        let mut locked = LOCKED.lock().unwrap_or_else(|e| e.into_inner());
        for array in &self.arrays {
            if let Some(held) = locked.get_mut(&(array.as_ptr() as usize)) {
                held.count = held.count.saturating_sub(1);
            }
        }
        restore_released(py, &mut locked);
    }
}

/// `x`'s values for a data set: shared without a copy when the memory is
/// NumPy's own, that is when `x` and every array it is a view of can be
/// made read-only (they are, in `lock`, until it drops), or a memory map's
/// (`numpy.memmap`, `numpy.load(mmap_mode=...)`: a file larger than memory
/// is read where it lies, its pages loaded as they are read; its arrays
/// are made read-only as NumPy's own, but a writer of the file itself, or
/// of another map of it, is not stopped); copied when the chain of views
/// ends in memory of some other object (a `bytearray`, a buffer from C),
/// whose writers NumPy's flag cannot stop.
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
            break is_memory_map(&base)?;
        }
        chain.push(base);
    };
    if !numpy_owns {
        let copy = x.readonly().as_slice()?.to_vec();
        return Ok(Arc::new(copy));
    }
    let keys: Vec<usize> = chain.iter().map(|a| a.as_ptr() as usize).collect();
    for (i, array) in chain.into_iter().enumerate() {
        WriteLock::hold(lock, array, keys[i + 1..].to_vec())?;
    }
    Ok(Arc::new(ArrayRows {
        _array: x.as_any().clone().unbind(),
        start: x.data().cast_const(),
        len: x.len(),
    }))
}

/// Whether `object` is a memory map (`mmap.mmap`, what `numpy.memmap`
/// and `numpy.load(mmap_mode=...)` arrays end in).
fn is_memory_map(object: &Bound<'_, PyAny>) -> PyResult<bool> {
    let mmap = object.py().import("mmap")?.getattr("mmap")?;
    object.is_instance(&mmap)
}

/// A data set from NumPy arrays: `x` float32 `[rows, features]`, and
/// either class indices `[rows]` or target values `[rows, width]`. The
/// inputs are shared, not copied (`lend_rows`; `lock` holds them
/// read-only until it drops); the targets are copied.
pub(crate) fn dataset<'py>(
    x: &Bound<'py, PyArray2<f32>>,
    classes: Option<&PyReadonlyArray1<'_, u32>>,
    values: Option<&PyReadonlyArray2<'_, f32>>,
    weights: Option<&PyReadonlyArray1<'_, f32>>,
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
    let data = Dataset::shared(rows, features, targets).map_err(to_py)?;
    match weights {
        Some(w) => data.with_weights(w.as_slice()?.to_vec()).map_err(to_py),
        None => Ok(data),
    }
}

/// An epoch's record as Python reads it, by the names of the program's
/// metrics file: `epoch`, `step`, `train_loss`, `val_loss`,
/// `val_accuracy`, `lr`, `seconds`, and `layer_norms`, one dict a layer
/// and sampled step (`step`, `layer`, `grad_norm`, `weight_norm`; empty
/// without `norms_every`).
pub(crate) fn record_dict<'py>(py: Python<'py>, r: &EpochRecord) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", r.epoch)?;
    d.set_item("step", r.step)?;
    d.set_item("train_loss", r.train_loss)?;
    d.set_item("val_loss", r.validation.map(|v| v.loss))?;
    d.set_item("val_accuracy", r.validation.and_then(|v| v.accuracy))?;
    d.set_item("lr", r.lr)?;
    d.set_item("seconds", r.seconds)?;
    let norms = PyList::empty(py);
    for n in &r.layer_norms {
        let norm = PyDict::new(py);
        norm.set_item("step", n.step)?;
        norm.set_item("layer", n.layer)?;
        norm.set_item("grad_norm", n.grad_norm)?;
        norm.set_item("weight_norm", n.weight_norm)?;
        norms.append(norm)?;
    }
    d.set_item("layer_norms", norms)?;
    Ok(d)
}

pub(crate) fn history_dict<'py>(py: Python<'py>, h: &History) -> PyResult<Bound<'py, PyDict>> {
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

/// The model as the trainer holds it now.
pub(crate) fn saved_model(view: &mut View<'_>) -> retroprop::Result<SavedModel> {
    Ok(SavedModel {
        mlp: view.mlp.clone(),
        params: view.trainer.parameters()?,
        buffers: view.trainer.buffers()?,
        num_batches_tracked: view.trainer.steps(),
        loss: view.loss,
        standardizer: view.standardizer.cloned(),
    })
}

/// The model a checkpoint `c` of a run on `mlp` holds, for the file that
/// carries it.
fn checkpoint_model(
    mlp: &Mlp,
    c: &retroprop::Checkpoint,
    loss: Loss,
    standardizer: Option<&Standardizer>,
) -> SavedModel {
    SavedModel {
        mlp: mlp.clone(),
        params: c.params.clone(),
        buffers: c.buffers.clone(),
        num_batches_tracked: c.step,
        loss,
        standardizer: standardizer.cloned(),
    }
}

#[pymethods]
impl NativeTrainer {
    /// Builds the network and the trainer, every setting resolved by the
    /// library (`RunRequest::resolve`): a setting given as `None` takes
    /// the checkpoint's value on `resume`, else the library's default.
    /// `activations`: one name for every hidden layer (the output layer
    /// identity) or one per layer, comma separated. `optimizer_options`:
    /// (torch option name, value as text). `batch_size` 0: the whole data
    /// set. `params`: flat parameters to start from, else drawn by `init`
    /// with `seed`. `resume`: a checkpoint to continue from (epochs and
    /// max_steps then count from the original run's start); a setting its
    /// state cannot carry is a `ValueError` naming each, and the ones that
    /// steer are listed by `resume_changes`. `precision`: `f32` or `mixed`.
    #[new]
    #[pyo3(signature = (
        sizes, activations, loss, optimizer, optimizer_options, batch_size, epochs,
        max_steps, shuffle, seed, init, device, lr_schedule, clip_grad_norm,
        clip_grad_value, dropout, early_stopping, min_delta, norms_every,
        standardize, standardization, params, resume, precision = None, blocks = None,
        norm = None, block_multiplier = None, k = None, arch_type = None, num_embeddings = None,
        chunks = None
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        sizes: Vec<usize>,
        activations: Option<String>,
        loss: Option<&str>,
        optimizer: Option<&str>,
        optimizer_options: Vec<(String, String)>,
        batch_size: Option<usize>,
        epochs: Option<usize>,
        max_steps: Option<u64>,
        shuffle: Option<bool>,
        seed: Option<u64>,
        init: Option<&str>,
        device: Option<&str>,
        lr_schedule: Option<&str>,
        clip_grad_norm: Option<f64>,
        clip_grad_value: Option<f64>,
        dropout: Option<f32>,
        early_stopping: Option<usize>,
        min_delta: Option<f64>,
        norms_every: Option<u64>,
        standardize: Option<bool>,
        standardization: Option<(Vec<f32>, Vec<f32>)>,
        params: Option<PyReadonlyArray1<'_, f32>>,
        resume: Option<PathBuf>,
        precision: Option<&str>,
        blocks: Option<usize>,
        norm: Option<String>,
        block_multiplier: Option<f64>,
        k: Option<usize>,
        arch_type: Option<String>,
        num_embeddings: Option<String>,
        chunks: Option<Vec<usize>>,
    ) -> PyResult<NativeTrainer> {
        guard(|| {
            let given = RunArgs {
                sizes,
                activations,
                blocks,
                norm,
                block_multiplier,
                k,
                arch_type,
                num_embeddings,
                chunks,
                loss: loss.map(str::to_string),
                optimizer: optimizer.map(str::to_string),
                optimizer_options,
                batch_size,
                epochs,
                max_steps,
                shuffle,
                seed,
                init: init.map(str::to_string),
                device: device.map(str::to_string),
                lr_schedule: lr_schedule.map(str::to_string),
                clip_grad_norm,
                clip_grad_value,
                dropout,
                early_stopping,
                min_delta,
                norms_every,
                standardize,
                precision: precision.map(str::to_string),
            }
            .request()?;
            let resumed = resume
                .as_deref()
                .map(load_checkpoint)
                .transpose()
                .map_err(to_py)?;
            let saved = resumed.as_ref().map(|(model, name, checkpoint)| Saved {
                checkpoint,
                standardized: model.standardizer.is_some(),
                optimizer_name: name,
            });
            let run = given
                .resolve(&RunRequest::default(), saved)
                .map_err(to_py)?;
            if let Some(refused) = run.refusal() {
                let path = resume
                    .as_ref()
                    .map_or("".into(), |p| p.display().to_string());
                return Err(PyValueError::new_err(format!("resume {path}: {refused}")));
            }
            let standardizer = match (&resumed, standardization) {
                (Some((model, _, _)), _) => model.standardizer.clone(),
                (None, Some((mean, std))) => Some(Standardizer::new(mean, std).map_err(to_py)?),
                (None, None) => None,
            };
            let (params, checkpoint) = match (resumed, params) {
                (Some((model, _, c)), _) => (Some(model.params), Some(c)),
                (None, Some(p)) => (Some(p.as_slice()?.to_vec()), None),
                (None, None) => (None, None),
            };
            let stop = StopFlag::new();
            let ResolvedRun {
                mlp,
                config,
                standardize,
                steering,
                ..
            } = run;
            let config = config.stop_flag(stop.clone());
            let (loss, optimizer, precision) = (config.loss, config.optimizer, config.precision);
            let sizes = mlp.sizes();
            let worker = Worker::start();
            worker.init(py, move || {
                let mut trainer = match params {
                    Some(p) => Trainer::with_parameters(mlp.clone(), p, config)?,
                    None => Trainer::new(mlp.clone(), config)?,
                };
                if let Some(c) = &checkpoint {
                    trainer.restore(c)?;
                }
                Ok(State {
                    trainer,
                    mlp,
                    loss,
                    optimizer,
                    standardizer,
                })
            })?;
            let device_name = worker.call(py, |view| Ok(view.trainer.device_name()))?;
            worker.set_forkable(device_name.starts_with("cpu"));
            Ok(NativeTrainer {
                worker,
                stop,
                sizes,
                loss,
                device_name,
                precision,
                standardize,
                resume_changes: steering
                    .into_iter()
                    .map(|c| (c.setting.to_string(), c.from, c.to))
                    .collect(),
                last_rows: Arc::default(),
            })
        })
    }

    /// The settings a resume changed from the checkpoint's, each only
    /// steering the rest of the run: (setting, from, to), as text.
    #[getter]
    fn resume_changes(&self) -> Vec<(String, String, String)> {
        self.resume_changes.clone()
    }

    /// Whether `fit` scales the inputs by the training rows' mean and
    /// deviation (as resolved: a resumed run as its start did).
    #[getter]
    fn standardize(&self) -> bool {
        self.standardize
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
        checkpoint, checkpoint_every, sample_weight = None, sample_weight_val = None
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
        sample_weight: Option<PyReadonlyArray1<'py, f32>>,
        sample_weight_val: Option<PyReadonlyArray1<'py, f32>>,
    ) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            // Dropped last, after the training thread has let go of the
            // rows: the arrays are read-only until then.
            let mut lock = WriteLock::default();
            let mut train = dataset(
                &x,
                classes.as_ref(),
                values.as_ref(),
                sample_weight.as_ref(),
                &mut lock,
            )?;
            let mut validation = match &x_val {
                Some(xv) => Some(dataset(
                    xv,
                    classes_val.as_ref(),
                    values_val.as_ref(),
                    sample_weight_val.as_ref(),
                    &mut lock,
                )?),
                None => None,
            };
            self.stop.clear();
            let last_rows = self.last_rows.clone();
            let history = self.worker.fit(
                py,
                &self.stop,
                move |state, epochs| {
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
                    last_rows.store(train.x().as_ptr() as usize, Ordering::Relaxed);
                    let State {
                        trainer,
                        mlp,
                        loss,
                        optimizer,
                        standardizer,
                    } = state;
                    let history = trainer.fit_between_epochs(
                        &train,
                        validation.as_ref(),
                        |trainer, record| {
                            let view = View {
                                trainer,
                                mlp,
                                loss: *loss,
                                optimizer: *optimizer,
                                standardizer: standardizer.as_ref(),
                            };
                            epochs.report(record.clone(), view)
                        },
                        every,
                        |c| {
                            let model = checkpoint_model(mlp, &c, *loss, standardizer.as_ref());
                            save_checkpoint(checkpoint.as_ref().unwrap(), &model, optimizer, &c)
                        },
                    )?;
                    if (history.interrupted || history.cut_mid_epoch)
                        && let Some(path) = &checkpoint
                    {
                        let mut view = state.view();
                        let c = view.trainer.checkpoint()?;
                        let model = saved_model(&mut view)?;
                        save_checkpoint(path, &model, &view.optimizer, &c)?;
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

    /// `fit` on rows read a part at a time (`NativeSource`: a file, a
    /// table, a memory map), never held whole: the library's
    /// `fit_streamed`, which gives the bits `fit` gives the same rows held
    /// in memory. `validation`: a source too. The callback gets each
    /// epoch's record, but the trainer answers no call until the fit
    /// returns (the streamed loop holds it); `stop()` works. Standardising
    /// takes two passes over the training rows first.
    #[pyo3(signature = (train, validation, standardize, callback, checkpoint, checkpoint_every))]
    #[allow(clippy::too_many_arguments)]
    fn fit_stream<'py>(
        &self,
        py: Python<'py>,
        train: PyRef<'py, NativeSource>,
        validation: Option<PyRef<'py, NativeSource>>,
        standardize: bool,
        callback: Option<Py<PyAny>>,
        checkpoint: Option<PathBuf>,
        checkpoint_every: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            let train = train.streamed();
            let validation = validation.map(|v| v.streamed());
            self.stop.clear();
            self.last_rows.store(0, Ordering::Relaxed);
            let history = self.worker.fit(
                py,
                &self.stop,
                move |state, epochs| {
                    if standardize && state.standardizer.is_none() {
                        state.standardizer = Some(train.fit_standardizer()?);
                    }
                    let train = train.with_standardizer(state.standardizer.clone());
                    let validation =
                        validation.map(|v| v.with_standardizer(state.standardizer.clone()));
                    let every = if checkpoint.is_some() {
                        checkpoint_every.max(1)
                    } else {
                        0
                    };
                    let State {
                        trainer,
                        mlp,
                        loss,
                        optimizer,
                        standardizer,
                    } = state;
                    let history = trainer.fit_streamed(
                        &train,
                        validation.as_ref(),
                        |record| epochs.report_busy(record.clone()),
                        every,
                        |c| {
                            let model = checkpoint_model(mlp, &c, *loss, standardizer.as_ref());
                            save_checkpoint(checkpoint.as_ref().unwrap(), &model, optimizer, &c)
                        },
                    )?;
                    if (history.interrupted || history.cut_mid_epoch)
                        && let Some(path) = &checkpoint
                    {
                        let mut view = state.view();
                        let c = view.trainer.checkpoint()?;
                        let model = saved_model(&mut view)?;
                        save_checkpoint(path, &model, &view.optimizer, &c)?;
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

    /// `predict` on inputs read a part at a time: `[rows, outputs]`.
    fn predict_stream<'py>(
        &self,
        py: Python<'py>,
        inputs: PyRef<'py, NativeSource>,
    ) -> PyResult<Bound<'py, PyAny>> {
        guard(|| {
            let inputs = inputs.streamed();
            let rows = inputs.rows();
            let outputs = *self.sizes.last().unwrap();
            let out = self.worker.call(py, move |view| {
                let inputs = inputs.with_standardizer(view.standardizer.cloned());
                let mut out = Vec::with_capacity(rows * outputs);
                view.trainer.predict_streamed(&inputs, |part| {
                    out.extend_from_slice(part);
                    Ok(())
                })?;
                Ok(out)
            })?;
            Ok(PyArray1::from_vec(py, out)
                .reshape([rows, outputs])?
                .into_any())
        })
    }

    /// `evaluate` on rows read a part at a time: `(loss, accuracy)`.
    fn evaluate_stream(
        &self,
        py: Python<'_>,
        data: PyRef<'_, NativeSource>,
    ) -> PyResult<(f64, Option<f64>)> {
        guard(|| {
            let data = data.streamed();
            self.worker.call(py, move |view| {
                let data = data.with_standardizer(view.standardizer.cloned());
                let e = view.trainer.evaluate_streamed(&data)?;
                Ok((e.loss, e.accuracy))
            })
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
            let saved = self.worker.call(py, |mut view| saved_model(&mut view))?;
            Ok(NativeModel::trained(saved, self.precision))
        })
    }

    /// Writes the model to `path` as safetensors; `interrupted`: mark it as
    /// stopped at the current step, as the program does after Ctrl-C.
    fn save(&self, py: Python<'_>, path: PathBuf, interrupted: bool) -> PyResult<()> {
        let precision = self.precision;
        guard(|| {
            self.worker.call(py, move |mut view| {
                let model = saved_model(&mut view)?;
                let notes = RunNotes {
                    interrupted_at_step: interrupted.then(|| view.trainer.steps()),
                    changed_on_resume: view.trainer.changes().to_vec(),
                    precision: Some(precision),
                    ..RunNotes::default()
                };
                save_noted_model(&path, &model, &notes)
            })
        })
    }

    /// Writes a checkpoint (parameters, optimizer state, position, scheduler)
    /// that `resume=` continues from.
    fn save_checkpoint(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        guard(|| {
            self.worker.call(py, move |mut view| {
                let c = view.trainer.checkpoint()?;
                let model = saved_model(&mut view)?;
                save_checkpoint(&path, &model, &view.optimizer, &c)
            })
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
            let out = self.worker.call(py, move |view| {
                if let Some(s) = view.standardizer {
                    s.apply_rows(&mut rows)?;
                }
                view.trainer.predict(&rows)
            })?;
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
            let mut data = dataset(&x, classes.as_ref(), values.as_ref(), None, &mut lock)?;
            self.worker.call(py, move |view| {
                if let Some(s) = view.standardizer {
                    s.apply(&mut data)?;
                }
                let e = view.trainer.evaluate(&data)?;
                Ok((e.loss, e.accuracy))
            })
        })
    }

    /// The device in words (which one `auto` chose).
    #[getter]
    fn device_name(&self) -> String {
        self.device_name.clone()
    }

    /// Optimizer steps taken.
    fn steps(&self, py: Python<'_>) -> PyResult<u64> {
        guard(|| self.worker.call(py, |view| Ok(view.trainer.steps())))
    }

    /// The loss by name.
    #[getter]
    fn loss(&self) -> String {
        self.loss.to_string()
    }
}
