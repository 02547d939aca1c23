//! `NativeMembers`: the library's `Members` (many networks of one
//! architecture trained together, each its lone run) as one Python class,
//! on a training thread of its own (worker.rs, as `NativeTrainer`), and
//! `NativeMembersModel`, what such a run trained.

use crate::errors::{guard, to_py};
use crate::model::NativeModel;
use crate::run_args::{RunArgs, parsed};
use crate::trainer::{WriteLock, dataset, history_dict, record_dict};
use crate::worker::{Held, Worker};
use numpy::{
    PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use retroprop::checkpoint::Checkpoint;
use retroprop::error::Kept;
use retroprop::io::members::{
    LoadedMembersCheckpoint, SavedMembers, load_members_checkpoint, members_bytes, parse_members,
    save_members, save_members_checkpoint,
};
use retroprop::io::onnx::{MembersOnnx, OnnxOptions, members_onnx_bytes};
use retroprop::io::{RunNotes, SavedModel};
use retroprop::train::{Member, MemberState, Members, ResolvedRun, RunRequest, Saved};
use retroprop::{
    EpochRecord, Error, Loss, LrSchedule, Mlp, Optimizer, Precision, Standardizer, StopFlag,
    TrainConfig,
};
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// What the members' thread keeps between jobs.
pub struct MembersState {
    members: Members,
    mlp: Mlp,
    loss: Loss,
    /// The run's optimizer (its kind and state layout, named in files).
    optimizer: Optimizer,
    standardizer: Option<Standardizer>,
}

/// The members as a call sees them: all of the state between jobs, or,
/// between two epochs of a fit, what the fit lends.
pub struct MembersView<'a> {
    members: &'a mut Members,
    mlp: &'a Mlp,
    loss: Loss,
    optimizer: Optimizer,
    standardizer: Option<&'a Standardizer>,
}

impl Held for MembersState {
    type View<'a> = MembersView<'a>;
    /// The records of an epoch of the run, each with its member.
    type Report = Vec<(usize, EpochRecord)>;
    const ON_POOL: bool = false;

    fn view(&mut self) -> MembersView<'_> {
        MembersView {
            members: &mut self.members,
            mlp: &self.mlp,
            loss: self.loss,
            optimizer: self.optimizer,
            standardizer: self.standardizer.as_ref(),
        }
    }

    fn lend<'a>(view: &'a mut MembersView<'_>) -> MembersView<'a> {
        MembersView {
            members: &mut *view.members,
            mlp: view.mlp,
            loss: view.loss,
            optimizer: view.optimizer,
            standardizer: view.standardizer,
        }
    }
}

impl MembersView<'_> {
    /// What the members share, with each one's parameters as given.
    fn saved(&self, params: Vec<Vec<f32>>) -> SavedMembers {
        SavedMembers {
            model: SavedModel {
                mlp: self.mlp.clone(),
                params: Vec::new(),
                buffers: Vec::new(),
                num_batches_tracked: 0,
                loss: self.loss,
                standardizer: self.standardizer.cloned(),
            },
            params,
            settings: (0..self.members.len())
                .map(|m| self.members.settings(m).text())
                .collect(),
        }
    }

    /// Every member's parameters as they stand.
    fn parameters(&mut self) -> retroprop::Result<Vec<Vec<f32>>> {
        (0..self.members.len())
            .map(|m| self.members.member_mut(m).parameters())
            .collect()
    }

    /// A checkpoint file of every member as the run stands.
    fn save_checkpoint(&mut self, path: &Path) -> retroprop::Result<()> {
        let checkpoints = self.members.checkpoint()?;
        let params = checkpoints.iter().map(|c| c.params.clone()).collect();
        let saved = self.saved(params);
        let states = self.members.states().to_vec();
        save_members_checkpoint(path, &saved, &self.optimizer, &checkpoints, &states)
    }
}

/// One member's own settings as the Python side gives them (`None`: the
/// run's): a dict with any of these keys.
#[derive(FromPyObject, Default)]
#[pyo3(from_item_all)]
pub struct MemberArgs<'py> {
    #[pyo3(default)]
    seed: Option<u64>,
    /// Optimizer options by torch's names, as text (given, if empty).
    options: Vec<(String, String)>,
    #[pyo3(default)]
    lr_schedule: Option<String>,
    #[pyo3(default)]
    dropout: Option<f32>,
    /// Rows of the training data it trains on, in order.
    #[pyo3(default)]
    rows: Option<PyReadonlyArray1<'py, u32>>,
    /// Rows of the validation data it is evaluated on.
    #[pyo3(default)]
    validation_rows: Option<PyReadonlyArray1<'py, u32>>,
    /// One weight a row of the training data.
    #[pyo3(default)]
    weights: Option<PyReadonlyArray1<'py, f32>>,
}

impl MemberArgs<'_> {
    /// Member `m`'s settings; what cannot be read names the member.
    fn member(&self, m: usize) -> PyResult<Member> {
        // The message alone (a PyErr displays as `ValueError: …`).
        let named = |e: PyErr| {
            let text = Python::attach(|py| e.value(py).to_string());
            PyValueError::new_err(format!("member {m}: {text}"))
        };
        let list = |a: &Option<PyReadonlyArray1<'_, u32>>| -> PyResult<Option<Vec<u32>>> {
            a.as_ref().map(|a| Ok(a.as_slice()?.to_vec())).transpose()
        };
        Ok(Member {
            seed: self.seed,
            optimizer_options: self.options.clone(),
            lr_schedule: parsed::<LrSchedule>(self.lr_schedule.as_deref()).map_err(named)?,
            dropout: self.dropout,
            rows: list(&self.rows).map_err(named)?,
            validation_rows: list(&self.validation_rows).map_err(named)?,
            weights: self
                .weights
                .as_ref()
                .map(|w| Ok::<_, PyErr>(w.as_slice()?.to_vec()))
                .transpose()
                .map_err(named)?,
        })
    }
}

/// The optimizer options a member may have of its own (numbers: the
/// options that shape the optimizer's state are the run's).
const MEMBER_OPTIONS: [&str; 9] = [
    "lr",
    "betas",
    "eps",
    "weight_decay",
    "momentum",
    "dampening",
    "alpha",
    "lr_decay",
    "initial_accumulator_value",
];

/// On resume, what `member` does not say of its own it takes from its
/// checkpoint (as a lone resume takes every setting left out): its seed,
/// its optimizer's numeric options, its schedule and dropout. The rows,
/// validation rows and weights are the data's, given again; they must be
/// the checkpoint's (compared by the count and hash in its settings text).
fn continue_member(
    m: usize,
    member: &mut Member,
    checkpoint: &Checkpoint,
    saved_text: &str,
    run_options: &[(String, String)],
) -> PyResult<()> {
    let word = |text: &str, key: &str| -> Option<String> {
        text.split(' ')
            .find(|w| w.starts_with(&format!("{key}=")))
            .map(str::to_string)
    };
    let now = member.text();
    for key in ["rows", "validation_rows", "weights"] {
        let (before, after) = (word(saved_text, key), word(&now, key));
        if before != after {
            return Err(PyValueError::new_err(format!(
                "resume: member {m}'s {key} differ from the checkpoint's ({} there, {} now): \
                 a member continues on the rows it began with",
                before.as_deref().unwrap_or("none"),
                after.as_deref().unwrap_or("none"),
            )));
        }
    }
    let Some(settings) = &checkpoint.settings else {
        return Ok(());
    };
    if member.seed.is_none() {
        member.seed = Some(settings.seed);
    }
    let given = |name: &str| {
        member.optimizer_options.iter().any(|(n, _)| n == name)
            || run_options.iter().any(|(n, _)| n == name)
    };
    let mut own = Vec::new();
    for name in settings.optimizer.options() {
        if MEMBER_OPTIONS.contains(&name)
            && !given(name)
            && let Some(value) = settings.optimizer.option(name)
        {
            own.push((name.to_string(), value));
        }
    }
    member.optimizer_options.extend(own);
    if member.lr_schedule.is_none() {
        member.lr_schedule = Some(settings.lr_schedule);
    }
    if member.dropout.is_none() {
        // Every hidden layer's rate, as `dropout=` sets it.
        member.dropout = settings.dropout.first().copied().filter(|&p| p > 0.0);
    }
    Ok(())
}

/// A member's state by name: `training`, `stopped_early`, `stopped`,
/// `diverged`.
fn state_name(state: &MemberState) -> &'static str {
    match state {
        MemberState::Training => "training",
        MemberState::StoppedEarly => "stopped_early",
        MemberState::Stopped => "stopped",
        MemberState::Diverged { .. } => "diverged",
    }
}

/// The error a lone run that diverged where the member did raises.
fn divergence(state: &MemberState) -> Option<String> {
    match *state {
        MemberState::Diverged { step, loss } => Some(
            Error::Diverged {
                step,
                loss,
                kept: Kept::default(),
            }
            .to_string(),
        ),
        _ => None,
    }
}

/// An epoch's record as `record_dict` writes it, with `weight_norms` (a
/// float a sampled layer and step, in order) for `layer_norms`.
fn compact_record<'py>(py: Python<'py>, r: &EpochRecord) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("epoch", r.epoch)?;
    d.set_item("step", r.step)?;
    d.set_item("train_loss", r.train_loss)?;
    d.set_item("val_loss", r.validation.map(|v| v.loss))?;
    d.set_item("val_accuracy", r.validation.and_then(|v| v.accuracy))?;
    d.set_item("lr", r.lr)?;
    d.set_item("seconds", r.seconds)?;
    let norms: Vec<f64> = r.layer_norms.iter().map(|n| n.weight_norm).collect();
    d.set_item("weight_norms", norms)?;
    Ok(d)
}

/// The inputs `x` float32 `[rows, features]` as a flat vector, checked
/// against the network's inputs, with `standardizer` applied.
fn input_rows(
    x: &PyReadonlyArray2<'_, f32>,
    inputs: usize,
    standardizer: Option<&Standardizer>,
) -> PyResult<Vec<f32>> {
    let mut rows = x
        .as_slice()
        .map_err(|_| PyValueError::new_err("x must be C-contiguous float32"))?
        .to_vec();
    if x.shape()[1] != inputs {
        return Err(to_py(Error::Shape {
            what: "features of the inputs (network inputs)".into(),
            expected: inputs,
            got: x.shape()[1],
        }));
    }
    if let Some(s) = standardizer {
        s.apply_rows(&mut rows).map_err(to_py)?;
    }
    Ok(rows)
}

/// The members of a run: their shared settings, each one's own, and the
/// library's `Members` built from them. Made by `retroprop.Trainer(...,
/// members=k)` and `retroprop.GridSearchCV`; see their docstrings.
#[pyclass(module = "retroprop._retroprop")]
pub struct NativeMembers {
    worker: Worker<MembersState>,
    stop: StopFlag,
    sizes: Vec<usize>,
    loss: Loss,
    count: usize,
    device_name: String,
    precision: Precision,
    standardize: bool,
    /// The changes of a resume: (setting, from, to), each member's named.
    resume_changes: Vec<(String, String, String)>,
}

#[pymethods]
impl NativeMembers {
    /// The run `run` (a dict of `RunArgs`: the settings every member
    /// shares, resolved by the library as a lone trainer's) with one
    /// member for each dict of `members` (`MemberArgs`). `standardization`:
    /// `(mean, std)` to apply first. `resume`: a checkpoint of every member
    /// to continue from: the shared settings resolved against member 0's
    /// checkpoint, each member's own taken from its checkpoint where not
    /// given; a change the saved state cannot carry is a `ValueError`.
    #[new]
    #[pyo3(signature = (run, members, standardization = None, resume = None))]
    fn new(
        py: Python<'_>,
        run: RunArgs,
        members: Vec<MemberArgs<'_>>,
        standardization: Option<(Vec<f32>, Vec<f32>)>,
        resume: Option<PathBuf>,
    ) -> PyResult<NativeMembers> {
        guard(|| {
            let run_options = run.optimizer_options.clone();
            let given = run.request()?;
            let mut own: Vec<Member> = members
                .iter()
                .enumerate()
                .map(|(m, member)| member.member(m))
                .collect::<PyResult<_>>()?;
            let path_text = resume
                .as_ref()
                .map_or(String::new(), |p| p.display().to_string());
            let resumed: Option<LoadedMembersCheckpoint> = resume
                .as_deref()
                .map(load_members_checkpoint)
                .transpose()
                .map_err(to_py)?;
            if let Some(r) = &resumed {
                if r.checkpoints.len() != own.len() {
                    return Err(PyValueError::new_err(format!(
                        "resume {path_text}: the checkpoint holds {} members, the run has {}",
                        r.checkpoints.len(),
                        own.len()
                    )));
                }
                for (m, member) in own.iter_mut().enumerate() {
                    continue_member(
                        m,
                        member,
                        &r.checkpoints[m],
                        &r.members.settings[m],
                        &run_options,
                    )?;
                }
            }
            let saved = resumed.as_ref().map(|r| Saved {
                checkpoint: &r.checkpoints[0],
                standardized: r.members.members[0].standardizer.is_some(),
                optimizer_name: &r.optimizer,
            });
            let resolved = given
                .resolve(&RunRequest::default(), saved)
                .map_err(to_py)?;
            if let Some(refused) = resolved.refusal() {
                return Err(PyValueError::new_err(format!(
                    "resume {path_text}: {refused}"
                )));
            }
            let standardizer = match (&resumed, standardization) {
                (Some(r), _) => r.members.members[0].standardizer.clone(),
                (None, Some((mean, std))) => Some(Standardizer::new(mean, std).map_err(to_py)?),
                (None, None) => None,
            };
            let stop = StopFlag::new();
            let ResolvedRun {
                mlp,
                config,
                standardize,
                ..
            } = resolved;
            let config = config.stop_flag(stop.clone());
            let (loss, optimizer, precision) = (config.loss, config.optimizer, config.precision);
            let sizes = mlp.sizes();
            let count = own.len();
            let worker = Worker::start();
            worker.init(py, move || {
                let members = match &resumed {
                    Some(r) => {
                        let params = r.checkpoints.iter().map(|c| c.params.clone()).collect();
                        let mut members =
                            Members::with_parameters(mlp.clone(), config, own, params)?;
                        members.restore(&r.checkpoints, &r.states)?;
                        members
                    }
                    None => Members::new(mlp.clone(), config, own)?,
                };
                Ok(MembersState {
                    members,
                    mlp,
                    loss,
                    optimizer,
                    standardizer,
                })
            })?;
            let (device_name, resume_changes) = worker.call(py, |view| {
                let mut changes = Vec::new();
                for m in 0..view.members.len() {
                    for c in view.members.member(m).resume_changes() {
                        changes.push((
                            format!("member {m}: {}", c.setting),
                            c.from.clone(),
                            c.to.clone(),
                        ));
                    }
                }
                Ok((view.members.device_name(), changes))
            })?;
            worker.set_forkable(device_name.starts_with("cpu"));
            Ok(NativeMembers {
                worker,
                stop,
                sizes,
                loss,
                count,
                device_name,
                precision,
                standardize,
                resume_changes,
            })
        })
    }

    /// The settings a resume changed from the checkpoints', each only
    /// steering the rest of a member's run: (`member M: setting`, from,
    /// to), as text.
    #[getter]
    fn resume_changes(&self) -> Vec<(String, String, String)> {
        self.resume_changes.clone()
    }

    /// Whether `fit` scales the inputs (as resolved).
    #[getter]
    fn standardize(&self) -> bool {
        self.standardize
    }

    /// How many members the run has.
    #[getter]
    fn count(&self) -> usize {
        self.count
    }

    /// The device in words (which one `auto` chose).
    #[getter]
    fn device_name(&self) -> String {
        self.device_name.clone()
    }

    /// The loss by name.
    #[getter]
    fn loss(&self) -> String {
        self.loss.to_string()
    }

    /// Trains every member (see `NativeTrainer.fit` for the arrays):
    /// `callback(records)` runs after each epoch of the run with a list of
    /// `(member, record)`, those of the members that ended an epoch, on
    /// this thread, and may call the run meanwhile (`stop_member(m)` ends
    /// that member after the epoch just reported, `stop()` every member at
    /// the next step boundary). `weight_norms_only`: each record has
    /// `weight_norms`, the sampled steps' weight norms layer by layer as a
    /// list of floats, instead of `layer_norms`' dicts (the estimators'
    /// L2 term needs no more, and a dict a layer and step was most of a
    /// small epoch's record). `checkpoint`: a checkpoint of every member,
    /// written every `checkpoint_every` epochs of the run and where it
    /// stops early. Returns `{"members": [history, …], "states": [name,
    /// …], "errors": [message or None, …], "interrupted": bool}`, where a
    /// member's error is what its lone run would have raised (a
    /// divergence). Ctrl-C stops every member at the next step boundary,
    /// keeps the steps taken, writes the checkpoint, and raises
    /// `KeyboardInterrupt`.
    #[pyo3(signature = (
        x, classes, values, x_val, classes_val, values_val, standardize, callback,
        checkpoint, checkpoint_every, sample_weight = None, sample_weight_val = None,
        weight_norms_only = false
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
        weight_norms_only: bool,
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
                    // Where each member stands after the epoch last
                    // reported: the periodic checkpoints' states (the
                    // library hands `on_checkpoint` the checkpoints alone).
                    let states = RefCell::new(state.members.states().to_vec());
                    let settings: Vec<String> = (0..state.members.len())
                        .map(|m| state.members.settings(m).text())
                        .collect();
                    let MembersState {
                        members,
                        mlp,
                        loss,
                        optimizer,
                        standardizer,
                    } = state;
                    let history = members.fit_epoch_by_epoch(
                        &train,
                        validation.as_ref(),
                        |members, records| {
                            *states.borrow_mut() = members.states().to_vec();
                            if records.is_empty() {
                                return;
                            }
                            let view = MembersView {
                                members,
                                mlp,
                                loss: *loss,
                                optimizer: *optimizer,
                                standardizer: standardizer.as_ref(),
                            };
                            epochs.report(records.to_vec(), view)
                        },
                        every,
                        |checkpoints| {
                            let saved = SavedMembers {
                                model: SavedModel {
                                    mlp: mlp.clone(),
                                    params: Vec::new(),
                                    buffers: Vec::new(),
                                    num_batches_tracked: 0,
                                    loss: *loss,
                                    standardizer: standardizer.clone(),
                                },
                                params: checkpoints.iter().map(|c| c.params.clone()).collect(),
                                settings: settings.clone(),
                            };
                            let path = checkpoint.as_ref().expect("every > 0 with a checkpoint");
                            save_members_checkpoint(
                                path,
                                &saved,
                                optimizer,
                                &checkpoints,
                                &states.borrow(),
                            )
                        },
                    )?;
                    let cut = history.members.iter().any(|h| h.cut_mid_epoch);
                    if (history.interrupted || cut)
                        && let Some(path) = &checkpoint
                    {
                        state.view().save_checkpoint(path)?;
                    }
                    Ok(history)
                },
                |py, records| match &callback {
                    Some(f) => {
                        let list = PyList::empty(py);
                        for (m, record) in records {
                            let d = if weight_norms_only {
                                compact_record(py, record)?
                            } else {
                                record_dict(py, record)?
                            };
                            list.append((*m, d))?;
                        }
                        f.call1(py, (list,)).map(|_| ())
                    }
                    None => Ok(()),
                },
            )?;
            let d = PyDict::new(py);
            let list = PyList::empty(py);
            for h in &history.members {
                list.append(history_dict(py, h)?)?;
            }
            d.set_item("members", list)?;
            d.set_item(
                "states",
                history.states.iter().map(state_name).collect::<Vec<_>>(),
            )?;
            d.set_item(
                "errors",
                history.states.iter().map(divergence).collect::<Vec<_>>(),
            )?;
            d.set_item("interrupted", history.interrupted)?;
            Ok(d)
        })
    }

    /// Asks a running `fit` to stop every member at the next step
    /// boundary (from a callback or another thread); the steps taken are
    /// kept.
    fn stop(&self) {
        self.stop.request();
    }

    /// Ends member `m` where it stands (from the callback: after the epoch
    /// just reported), as a lone fit's `stop()` from its callback: it takes
    /// no more steps and keeps its last parameters; the others go on.
    fn stop_member(&self, py: Python<'_>, m: usize) -> PyResult<()> {
        guard(|| {
            self.worker
                .call(py, move |view| view.members.stop_member(m))
        })
    }

    /// Where each member stands: `training`, `stopped_early`, `stopped`,
    /// `diverged`.
    fn states(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        guard(|| {
            self.worker.call(py, |view| {
                Ok(view
                    .members
                    .states()
                    .iter()
                    .map(|s| state_name(s).to_string())
                    .collect())
            })
        })
    }

    /// Optimizer steps each member has taken.
    fn steps(&self, py: Python<'_>) -> PyResult<Vec<u64>> {
        guard(|| {
            self.worker.call(py, |view| {
                Ok((0..view.members.len())
                    .map(|m| view.members.member(m).steps())
                    .collect())
            })
        })
    }

    /// What the members trained, as they stand.
    fn model(&self, py: Python<'_>) -> PyResult<NativeMembersModel> {
        let precision = self.precision;
        guard(|| {
            let saved = self.worker.call(py, |mut view| {
                let params = view.parameters()?;
                Ok(view.saved(params))
            })?;
            Ok(NativeMembersModel {
                saved,
                precision: Some(precision),
            })
        })
    }

    /// Writes the model file of every member to `path`.
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let precision = self.precision;
        guard(|| {
            self.worker.call(py, move |mut view| {
                let params = view.parameters()?;
                let notes = RunNotes {
                    precision: Some(precision),
                    ..RunNotes::default()
                };
                save_members(&path, &view.saved(params), &notes)
            })
        })
    }

    /// Writes a checkpoint of every member that `resume=` continues from.
    fn save_checkpoint(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        guard(|| {
            self.worker
                .call(py, move |mut view| view.save_checkpoint(&path))
        })
    }

    /// For `x` float32 `[rows, inputs]` (the saved standardisation
    /// applied first), on the run's device: member `member`'s outputs
    /// (logits for the classification losses), or with `member` None the
    /// ensemble's prediction (the mean of the members' probabilities for
    /// the classification losses, of their outputs for the others).
    #[pyo3(signature = (x, member = None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        member: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        guard(|| {
            let n = x.shape()[0];
            let (inputs, outputs) = (self.sizes[0], *self.sizes.last().unwrap());
            let mut rows = input_rows(&x, inputs, None)?;
            let out = self.worker.call(py, move |view| {
                if let Some(s) = view.standardizer {
                    s.apply_rows(&mut rows)?;
                }
                match member {
                    Some(m) => member_trainer(view.members, m)?.predict(&rows),
                    None => view.members.predict_ensemble(&rows),
                }
            })?;
            Ok(PyArray1::from_vec(py, out)
                .reshape([n, outputs])?
                .into_any())
        })
    }

    /// Each member's mean loss and (for classification) accuracy on a
    /// data set, a tuple a member.
    #[pyo3(signature = (x, classes, values))]
    fn evaluate(
        &self,
        py: Python<'_>,
        x: Bound<'_, PyArray2<f32>>,
        classes: Option<PyReadonlyArray1<'_, u32>>,
        values: Option<PyReadonlyArray2<'_, f32>>,
    ) -> PyResult<Vec<(f64, Option<f64>)>> {
        guard(|| {
            let mut lock = WriteLock::default();
            let mut data = dataset(&x, classes.as_ref(), values.as_ref(), None, &mut lock)?;
            self.worker.call(py, move |view| {
                if let Some(s) = view.standardizer {
                    s.apply(&mut data)?;
                }
                (0..view.members.len())
                    .map(|m| {
                        let e = view.members.member_mut(m).evaluate(&data)?;
                        Ok((e.loss, e.accuracy))
                    })
                    .collect()
            })
        })
    }
}

/// Member `m`'s trainer, or an error naming the run's size.
fn member_trainer(members: &mut Members, m: usize) -> retroprop::Result<&mut retroprop::Trainer> {
    let count = members.len();
    if m >= count {
        return Err(Error::Config(format!(
            "member {m}: the run has {count} members"
        )));
    }
    Ok(members.member_mut(m))
}

/// What the members of a run trained: the network, loss and
/// standardisation they share, each one's parameters and settings.
#[pyclass(module = "retroprop._retroprop", frozen)]
pub struct NativeMembersModel {
    saved: SavedMembers,
    precision: Option<Precision>,
}

impl NativeMembersModel {
    /// Member `m`'s model alone.
    fn member_model(&self, m: usize) -> retroprop::Result<SavedModel> {
        let count = self.saved.params.len();
        let params =
            self.saved.params.get(m).ok_or_else(|| {
                Error::Config(format!("member {m}: the model has {count} members"))
            })?;
        Ok(SavedModel {
            params: params.clone(),
            ..self.saved.model.clone()
        })
    }
}

#[pymethods]
impl NativeMembersModel {
    /// Members from a members model file's bytes; `name` names it in
    /// errors.
    #[staticmethod]
    fn from_bytes(bytes: &[u8], name: PathBuf) -> PyResult<NativeMembersModel> {
        guard(|| {
            let loaded = parse_members(bytes, &name).map_err(to_py)?;
            let precision = loaded.members.first().and_then(|m| m.precision);
            let models = loaded
                .members
                .into_iter()
                .map(|m| m.complete(&name))
                .collect::<retroprop::Result<Vec<_>>>()
                .map_err(to_py)?;
            let first = models[0].clone();
            Ok(NativeMembersModel {
                saved: SavedMembers {
                    params: models.into_iter().map(|m| m.params).collect(),
                    model: SavedModel {
                        params: Vec::new(),
                        ..first
                    },
                    settings: loaded.settings,
                },
                precision,
            })
        })
    }

    /// Whether a safetensors file's bytes hold the members of a run.
    #[staticmethod]
    fn is_members(bytes: &[u8], name: PathBuf) -> PyResult<bool> {
        guard(|| retroprop::io::members::is_members(bytes, &name).map_err(to_py))
    }

    /// The members model file's bytes (safetensors).
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        guard(|| {
            let notes = RunNotes {
                precision: self.precision,
                ..RunNotes::default()
            };
            let bytes = members_bytes(Path::new("members"), &self.saved, &notes).map_err(to_py)?;
            Ok(PyBytes::new(py, &bytes))
        })
    }

    /// An ONNX file's bytes: member `member`'s network (with `probabilities`
    /// and `both_classes` as a lone model's), or with `member` None the
    /// ensemble's mean probabilities (outputs for regression).
    #[pyo3(signature = (member, probabilities, both_classes = false))]
    fn onnx_bytes<'py>(
        &self,
        py: Python<'py>,
        member: Option<usize>,
        probabilities: bool,
        both_classes: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        guard(|| {
            let what = MembersOnnx {
                member,
                options: OnnxOptions {
                    probabilities,
                    both_classes,
                },
            };
            let bytes = members_onnx_bytes(&self.saved, &what).map_err(to_py)?;
            Ok(PyBytes::new(py, &bytes))
        })
    }

    /// `{"members.{m}.layers.{i}.weight": [out, in], "members.{m}.layers.{i}.bias":
    /// [out]}` as float32 arrays: the members file's names.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        guard(|| {
            let d = PyDict::new(py);
            let mlp = &self.saved.model.mlp;
            for (m, params) in self.saved.params.iter().enumerate() {
                for (l, layer) in mlp.layers().iter().enumerate() {
                    let weight = PyArray1::from_slice(py, &params[mlp.weight_range(l)])
                        .reshape([layer.outputs, layer.inputs])?;
                    let bias = PyArray1::from_slice(py, &params[mlp.bias_range(l)]);
                    d.set_item(format!("members.{m}.layers.{l}.weight"), weight)?;
                    d.set_item(format!("members.{m}.layers.{l}.bias"), bias)?;
                }
            }
            Ok(d)
        })
    }

    /// Member `m` as a model of its own.
    fn member(&self, m: usize) -> PyResult<NativeModel> {
        guard(|| {
            let saved = self.member_model(m).map_err(to_py)?;
            Ok(NativeModel::with_precision(saved, self.precision))
        })
    }

    /// How many members.
    #[getter]
    fn count(&self) -> usize {
        self.saved.params.len()
    }

    /// Each member's own settings in words (`seed=3 lr=0.01 rows=45#…`).
    #[getter]
    fn settings(&self) -> Vec<String> {
        self.saved.settings.clone()
    }

    /// Layer sizes, input first.
    #[getter]
    fn sizes(&self) -> Vec<usize> {
        self.saved.model.mlp.sizes()
    }

    /// One activation name per layer.
    #[getter]
    fn activations(&self) -> Vec<String> {
        self.saved
            .model
            .mlp
            .layers()
            .iter()
            .map(|l| l.activation.to_string())
            .collect()
    }

    /// The loss they were trained with.
    #[getter]
    fn loss(&self) -> String {
        self.saved.model.loss.to_string()
    }

    /// The standardisation applied first, `(mean, std)`, or `None`.
    #[getter]
    fn standardization(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        self.saved
            .model
            .standardizer
            .as_ref()
            .map(|s| (s.mean.clone(), s.std.clone()))
    }

    /// For `x` float32 `[rows, inputs]`, on `device`, after the saved
    /// standardisation: with `member` None the ensemble's prediction (as
    /// `NativeMembers.predict`); member `member`'s outputs, or with
    /// `probabilities` what its loss implies.
    #[pyo3(signature = (x, device, probabilities, member = None))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        x: PyReadonlyArray2<'py, f32>,
        device: &str,
        probabilities: bool,
        member: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        guard(|| {
            let device: retroprop::Device = device.parse().map_err(PyValueError::new_err)?;
            let n = x.shape()[0];
            let model = &self.saved.model;
            let rows = input_rows(&x, model.mlp.inputs(), model.standardizer.as_ref())?;
            let width = model.mlp.outputs();
            let saved = &self.saved;
            let out = py
                .detach(|| -> retroprop::Result<Vec<f32>> {
                    let config = TrainConfig::default().loss(model.loss).device(device);
                    let count = saved.params.len();
                    let mut members = Members::with_parameters(
                        model.mlp.clone(),
                        config,
                        vec![Member::default(); count],
                        saved.params.clone(),
                    )?;
                    match member {
                        None => members.predict_ensemble(&rows),
                        Some(m) => {
                            let out = member_trainer(&mut members, m)?.predict(&rows)?;
                            Ok(if probabilities {
                                model.loss.probabilities(&out, width)
                            } else {
                                out
                            })
                        }
                    }
                })
                .map_err(to_py)?;
            Ok(PyArray1::from_vec(py, out).reshape([n, width])?.into_any())
        })
    }
}
