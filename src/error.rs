//! The one error type of the library.

use std::path::PathBuf;

/// Everything that can go wrong, each variant saying what and where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two things that must agree in size do not.
    #[error("shape mismatch in {what}: expected {expected}, got {got}")]
    Shape {
        /// What was being checked, e.g. "inputs of layer 0".
        what: String,
        /// The size that was needed.
        expected: usize,
        /// The size that was found.
        got: usize,
    },
    /// A data set, batch or architecture with nothing in it.
    #[error("{what} is empty")]
    Empty {
        /// What was empty.
        what: String,
    },
    /// NaN or an infinity in inputs or targets.
    #[error("{what} row {row}, column {column} is not finite ({value})")]
    NonFinite {
        /// "inputs" or "targets" (with a file name when there is one).
        what: String,
        /// Zero-based row.
        row: usize,
        /// Zero-based column.
        column: usize,
        /// The offending value.
        value: f64,
    },
    /// A class label outside `0..classes`.
    #[error(
        "class label {label} at row {row} is out of range: the network has {classes} classes (labels 0..{classes})"
    )]
    LabelOutOfRange {
        /// Zero-based row.
        row: usize,
        /// The label found.
        label: f64,
        /// Number of classes the network outputs.
        classes: usize,
    },
    /// A target its loss cannot take: BCE's targets are probabilities.
    #[error(
        "{what}: target {value} at row {row}, target column {column} (both 0-based) is outside [0, 1]; {loss} takes probabilities"
    )]
    TargetOutOfRange {
        /// The data, e.g. "training data" or a file name.
        what: String,
        /// Zero-based row.
        row: usize,
        /// Zero-based column among the targets.
        column: usize,
        /// The value found.
        value: f64,
        /// The loss, e.g. bce_with_logits.
        loss: String,
    },
    /// A layer with zero inputs or outputs.
    #[error("layer {layer} has zero {side}; every layer needs at least one input and one output")]
    ZeroSizedLayer {
        /// Zero-based layer index.
        layer: usize,
        /// "inputs" or "outputs".
        side: &'static str,
    },
    /// A hyperparameter outside its valid range.
    #[error("invalid hyperparameter {name} = {value}: {reason}")]
    Hyperparameter {
        /// The torch-style name, e.g. "lr" or "betas.0".
        name: &'static str,
        /// The value given.
        value: f64,
        /// What a valid value looks like.
        reason: &'static str,
    },
    /// An optimizer name that is not one of the optimizers.
    #[error("unknown optimizer `{name}` (expected {expected})")]
    UnknownOptimizer {
        /// The name given.
        name: String,
        /// The names there are, in words.
        expected: String,
    },
    /// An option (torch's keyword argument) that the optimizer does not
    /// have, e.g. `momentum` for Adam.
    #[error(
        "{optimizer} has no option `{option}` ({})",
        if .owners.is_empty() {
            format!("its options: {}", .known.join(", "))
        } else {
            format!("only {} {}", .owners.join(", "), if .owners.len() == 1 { "has it" } else { "have it" })
        }
    )]
    UnknownOption {
        /// The optimizer's name, e.g. `adam`.
        optimizer: &'static str,
        /// The option given.
        option: String,
        /// The optimizers that have the option (empty when none has).
        owners: Vec<&'static str>,
        /// The options the optimizer has.
        known: Vec<&'static str>,
    },
    /// An optimizer option's value that cannot be read.
    #[error("{optimizer} option {option}: `{value}` is not {expected}")]
    OptionValue {
        /// The optimizer's name.
        optimizer: &'static str,
        /// The option, by torch's name.
        option: &'static str,
        /// The text given.
        value: String,
        /// What a value looks like, e.g. "a number".
        expected: &'static str,
    },
    /// A combination of settings that cannot work together.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// One setting, by its library name (a Python keyword; the program's
    /// flag with dashes), that does not parse or fit.
    #[error("{setting}: {message}")]
    Setting {
        /// The setting (`activations`, `lr`, …).
        setting: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A data file that cannot be parsed.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (row, column, tensor).
        message: String,
    },
    /// No GPU adapter where one was required.
    #[error(
        "no GPU adapter found ({0}). Install a Vulkan driver: your GPU vendor's, or Mesa's software Vulkan on a machine without a GPU (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers`), or use the CPU backend (device `cpu`)"
    )]
    NoAdapter(String),
    /// The BLAS library `RETROPROP_BLAS` names cannot be loaded or lacks
    /// `cblas_sgemm` / `cblas_dgemm`.
    #[error(
        "cannot use the BLAS library {library} (RETROPROP_BLAS): {reason}. Install OpenBLAS (Debian/Ubuntu: `apt-get install libopenblas0`), name another library with cblas_sgemm and cblas_dgemm, or set RETROPROP_BLAS=off for the built-in GEMM"
    )]
    Blas {
        /// The library name or path asked for.
        library: String,
        /// Why it could not be used.
        reason: String,
    },
    /// A network or buffer larger than this machine can hold or address.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The GPU device failed (lost, out of memory, validation).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// Training produced a NaN or infinite loss.
    #[error(
        "training diverged at step {step}: the loss is {loss}; lower the learning rate or clip gradients"
    )]
    Diverged {
        /// The optimizer step (1-based) at which it was detected.
        step: u64,
        /// The loss value seen.
        loss: f64,
        /// The state the run kept: everything as it was before `step`.
        kept: Kept,
    },
    /// A data-parallel run stopped because of rank `rank`: every rank of
    /// the run returns this same error (see `parallel::agree`).
    #[error("rank {rank}: {message}")]
    Rank {
        /// The lowest rank that failed.
        rank: usize,
        /// What went wrong there.
        message: String,
    },
}

/// Where a run stands after [`Error::Diverged`]: parameters, optimizer
/// state and counters are those from before the step whose loss was not
/// finite, on every backend and every rank, so that a checkpoint taken
/// then (`Trainer::checkpoint`) resumes from exactly there.
///
/// From a backend's `train_steps`, `rows_done` and `loss_sum` count the
/// rows of the order it was given and `epoch` is 0; from the trainer they
/// count from the start of the epoch, which `epoch` numbers.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Kept {
    /// Optimizer steps taken in all (the step that diverged, less one).
    pub steps: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// Rows of the current epoch trained on.
    pub rows_done: usize,
    /// Their summed loss (each batch's mean loss × its rows).
    pub loss_sum: f64,
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
