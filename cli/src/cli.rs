//! Command-line arguments.

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use retroprop::data::ShuffleWindow;
use retroprop::{Device, Init, Loss, LrSchedule, Optimizer, Precision};
use std::path::PathBuf;

/// Train dense neural networks by backpropagation on the GPU (WGSL compute
/// shaders through wgpu) or the CPU.
#[derive(Debug, Parser)]
#[command(name = "retroprop", version, about, long_about = None, after_help = "Run `retroprop train` with no options to train on the bundled digits data set.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a network on a CSV, Parquet, NumPy or safetensors file (or the
    /// bundled digits).
    #[command(
        allow_negative_numbers = true,
        after_help = "Examples:
  retroprop train
  retroprop train --data iris.csv --arch 4,16,3 --activations relu --epochs 100 --save iris.safetensors
  retroprop train --data house.csv --targets 2 --loss mse --standardize --val-split 0.2 --metrics run.csv --plot run.png
  retroprop train --data sales.parquet --target price --exclude store_id --fill-null 0
  retroprop train --data digits.csv --optimizer sgd --lr 0.1 --momentum 0.9 --nesterov --device gpu
  retroprop train --data iris.csv --members 8 --save ensemble.safetensors
  retroprop train --data iris.csv --lr 1e-3,3e-3,1e-2 --weight-decay 0,1e-4 --folds 5 --save best.safetensors --save-all all.safetensors"
    )]
    Train(Box<TrainArgs>),
    /// Write a model's predictions for a data file (CSV or Parquet).
    #[command(
        after_help = "Examples:\n  retroprop predict --model iris.safetensors --data new.csv --out predictions.csv\n  retroprop predict --model sales.safetensors --data new.parquet --features a,b,c --out predictions.parquet"
    )]
    Predict(PredictArgs),
    /// Print a model's loss and accuracy on a labelled data file.
    Evaluate(EvaluateArgs),
    /// Write a model file as a standard ONNX graph (opset 17).
    #[command(
        after_help = "Example:\n  retroprop export --model iris.safetensors --onnx iris.onnx --probabilities"
    )]
    Export(ExportArgs),
    /// List the GPU adapters wgpu sees and which one `auto` picks.
    Devices,
    /// Measure training speed (headless).
    Bench(BenchArgs),
}

/// Which columns of a Parquet file are features and targets.
#[derive(Debug, Clone, Default, Args)]
pub struct ColumnArgs {
    /// Parquet: the feature columns by name, comma separated, in this order
    /// [default: every column but the targets and --exclude].
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub features: Option<Vec<String>>,
    /// Parquet: the target column(s) by name, comma separated [default: the
    /// last --targets N columns].
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub target: Option<Vec<String>>,
    /// Parquet: columns left out of the default features (an identifier, a
    /// text column), comma separated.
    #[arg(
        long,
        value_name = "NAMES",
        value_delimiter = ',',
        conflicts_with = "features"
    )]
    pub exclude: Vec<String>,
    /// Parquet: read a null in a feature column as this number [default: a
    /// null is an error naming its column, row group and row]. A null
    /// target is always an error.
    #[arg(long, value_name = "VALUE", allow_negative_numbers = true)]
    pub fill_null: Option<f64>,
}

impl ColumnArgs {
    /// How to read a data file with these flags and `targets` trailing
    /// target columns (what CSV and .npy go by, and Parquet without
    /// --target).
    pub fn spec(&self, targets: usize) -> crate::data::DataSpec {
        use retroprop::io::parquet::TargetColumns;
        let mut spec = crate::data::DataSpec::last(targets);
        spec.columns.features = self.features.clone();
        if let Some(names) = &self.target {
            spec.columns.targets = TargetColumns::Named(names.clone());
        }
        spec.columns.exclude = self.exclude.clone();
        spec.columns.fill_null = self.fill_null;
        spec
    }
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training data, by extension: .parquet (columns by name: --target,
    /// --features), .npz (arrays x [rows, features] and y), .npy (one array,
    /// the targets last), .safetensors (tensors x and y), else CSV (header
    /// row optional). Default: the bundled digits data set.
    #[arg(long, value_name = "FILE")]
    pub data: Option<PathBuf>,
    /// The last N columns (of a CSV, Parquet or .npy file) are targets
    /// [default: 1; with --resume, the model's outputs, or one column of
    /// class labels for cross-entropy].
    #[arg(long, value_name = "N", conflicts_with = "target")]
    pub targets: Option<usize>,
    #[command(flatten)]
    pub columns: ColumnArgs,
    /// CSV: read these feature columns as categorical (header names or
    /// 1-based indices, comma separated), besides every column with no
    /// number in it, which is always categorical. Each is one-hot encoded
    /// after the numeric features, its categories (the distinct values
    /// seen, sorted) kept in the model file; an empty cell is an error.
    #[arg(long, value_name = "COLS", value_delimiter = ',')]
    pub categorical: Vec<String>,
    /// Train from the --data file without holding it (Parquet or .npy):
    /// a thread reads the next window of rows (--shuffle-window) while this
    /// one trains, so memory holds about two windows, not the file. The
    /// same run as without --stream, bit for bit. --standardize takes two
    /// passes over the file first; --val streams too (a CSV --val is read
    /// whole); --val-split is refused (give --val FILE).
    #[arg(long)]
    pub stream: bool,
    /// Validation data file (same format as --data).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["val_split", "folds"])]
    pub val: Option<PathBuf>,
    /// Hold out this fraction of the training rows for validation (seeded)
    /// [default: none, or 0.2 of the bundled digits without --folds].
    #[arg(long, value_name = "FRACTION", conflicts_with = "folds")]
    pub val_split: Option<f64>,
    /// Scale features by the training set's mean and standard deviation
    /// (saved with the model and applied again at predict time).
    #[arg(long)]
    pub standardize: bool,
    /// All layer sizes, input and output included, e.g. 64,32,10. Default:
    /// FEATURES,64,OUTPUTS.
    #[arg(long, value_name = "SIZES")]
    pub arch: Option<String>,
    /// One activation for every hidden layer (the output layer is identity),
    /// or a comma list with one per layer: identity, sigmoid, tanh, relu,
    /// leaky_relu[:SLOPE], gelu, gelu_tanh.
    #[arg(long, value_name = "LIST")]
    pub activations: Option<String>,
    /// Residual blocks ("Revisiting Deep Learning Models for Tabular
    /// Data", rtdl's ResNet) at the width of --arch's one hidden size:
    /// `--arch 64,32,10 --blocks 50` is an input layer 64 → 32, 50 blocks
    /// x + Dropout(Linear(Dropout(Act(Linear(Norm(x)))))) of hidden width
    /// 32 × --block-multiplier, and a head Norm → Act → Linear 32 → 10,
    /// Act from --activations and dropout from --dropout. Trains on the
    /// CPU backend; its model file is rtdl's ResNet state_dict (running
    /// statistics included), and --resume continues its blocks unasked.
    #[arg(long, value_name = "N")]
    pub blocks: Option<usize>,
    /// The model: mlp (one network), or TabM (the tabm package's TabM:
    /// k MLPs of --arch trained at once as one network, the mean of their
    /// predictions): `tabm` (32 members, BatchEnsemble layers),
    /// `tabm:k=8,arch=tabm-mini` (one scaling a member before a shared
    /// MLP) or `arch=tabm-packed` (independent members), on the CPU or
    /// the GPU; its model file is the tabm package's TabM state_dict.
    #[arg(long, value_name = "MODEL", default_value = "mlp")]
    pub model: String,
    /// The blocks' and head's normalisation: batch (torch's BatchNorm1d,
    /// as the paper), layer (LayerNorm) or none [default: batch].
    #[arg(long, value_name = "NORM", requires = "blocks")]
    pub norm: Option<String>,
    /// A block's hidden width as a multiple of its width [default: 2].
    #[arg(long, value_name = "M", requires = "blocks")]
    pub block_multiplier: Option<f64>,
    /// The loss. Default: cross_entropy when the single target column holds
    /// class indices 0, 1, 2, …, otherwise mse.
    #[arg(long, value_parser = parse_loss)]
    pub loss: Option<Loss>,
    /// The optimizer (torch.optim semantics and defaults): a name, or a
    /// name with options by torch's names, e.g.
    /// adam:lr=0.001,betas=0.9/0.999,amsgrad=true. The flags below set one
    /// option each, over what this says [default: adam].
    #[arg(long, value_name = "OPTIMIZER", value_parser = OptimizerParser)]
    pub optimizer: Option<Optimizer>,
    /// Learning rate (default: the optimizer's torch default).
    #[arg(long, value_name = "X[,X…]", value_parser = parse_values::<f64>)]
    pub lr: Option<Values<f64>>,
    /// Momentum (sgd, rmsprop).
    #[arg(long, value_name = "X[,X…]", value_parser = parse_values::<f64>)]
    pub momentum: Option<Values<f64>>,
    /// Dampening for momentum (sgd).
    #[arg(long, value_name = "X[,X…]", value_parser = parse_values::<f64>)]
    pub dampening: Option<Values<f64>>,
    /// Nesterov momentum (sgd).
    #[arg(long)]
    pub nesterov: bool,
    /// Weight decay: L2 added to the gradient, decoupled for adamw.
    #[arg(long, value_name = "X[,X…]", value_parser = parse_values::<f64>)]
    pub weight_decay: Option<Values<f64>>,
    /// Adam's betas, e.g. 0.9,0.999 (or 0.9/0.999); a list of pairs, each
    /// written B1/B2: 0.9/0.999,0.8/0.99.
    #[arg(long, value_name = "B1,B2")]
    pub betas: Option<String>,
    /// Term added to denominators.
    #[arg(long, value_name = "X[,X…]", value_parser = parse_values::<f64>)]
    pub eps: Option<Values<f64>>,
    /// AMSGrad variant (adam, adamw).
    #[arg(long)]
    pub amsgrad: bool,
    /// Smoothing constant (rmsprop).
    #[arg(long, value_name = "X[,X…]", value_parser = parse_values::<f64>)]
    pub alpha: Option<Values<f64>>,
    /// Centered RMSprop.
    #[arg(long)]
    pub centered: bool,
    /// Learning-rate decay (adagrad).
    #[arg(long, value_name = "X[,X…]", value_parser = parse_values::<f64>)]
    pub lr_decay: Option<Values<f64>>,
    /// Initial accumulator value (adagrad).
    #[arg(long, alias = "initial-accumulator", value_name = "X[,X…]", value_parser = parse_values::<f64>)]
    pub initial_accumulator_value: Option<Values<f64>>,
    /// Learning-rate schedule, stepped per epoch (torch.optim.lr_scheduler):
    /// constant, step:STEP_SIZE:GAMMA, exponential:GAMMA,
    /// cosine:T_MAX[:ETA_MIN], warmup:EPOCHS[:START_FACTOR],
    /// plateau[:FACTOR[:PATIENCE]] [default: constant].
    #[arg(long, value_name = "SCHEDULE[,SCHEDULE…]", value_parser = parse_values::<LrSchedule>)]
    pub lr_schedule: Option<Values<LrSchedule>>,
    /// Stop when the validation loss has not improved for PATIENCE epochs,
    /// keeping the best parameters (needs --val or --val-split).
    #[arg(long, value_name = "PATIENCE")]
    pub early_stopping: Option<usize>,
    /// Smallest validation-loss decrease that counts for --early-stopping
    /// [default: 0].
    #[arg(long)]
    pub min_delta: Option<f64>,
    /// Clip the gradient's global L2 norm to this (torch's clip_grad_norm_).
    #[arg(long, value_name = "MAX_NORM")]
    pub clip_grad_norm: Option<f64>,
    /// Clip every gradient element to ±this (torch's clip_grad_value_).
    #[arg(long, value_name = "MAX_VALUE")]
    pub clip_grad_value: Option<f64>,
    /// Measure every layer's gradient and weight norms every N steps (on
    /// the GPU when training there), warn when a layer's gradient vanishes
    /// or explodes, and write them to a JSON-lines --metrics file.
    #[arg(long, value_name = "N")]
    pub norms_every: Option<u64>,
    /// Dropout probability after every hidden layer while training
    /// (inverted scaling; off in evaluation and prediction).
    #[arg(long, value_name = "P[,P…]", value_parser = parse_values::<f32>)]
    pub dropout: Option<Values<f32>>,
    /// Rows per step; 0 means the whole data set (full-batch descent)
    /// [default: 32].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Passes over the training data [default: 20, or no bound with
    /// --steps].
    #[arg(long, value_name = "N")]
    pub epochs: Option<usize>,
    /// Stop after N optimizer steps (an --epochs given too bounds it).
    #[arg(long, value_name = "N")]
    pub steps: Option<u64>,
    /// Visit rows in file order instead of a new random order each epoch.
    #[arg(long)]
    pub no_shuffle: bool,
    /// How far the shuffle moves a row: full (anywhere), or ROWS[:CHUNK]:
    /// each epoch permutes chunks of CHUNK consecutive rows (default
    /// 8192), takes them ROWS rows (a window) at a time, and shuffles the
    /// rows within each window. A data set of one window is shuffled
    /// whole. The same window gives the same run held in memory and with
    /// --stream [default: 1048576:8192, or the checkpoint's on --resume].
    #[arg(long, value_name = "ROWS[:CHUNK]", value_parser = parse_window)]
    pub shuffle_window: Option<ShuffleWindow>,
    /// Seeds initialisation, shuffling, dropout, --val-split and --folds
    /// [default: 0]. A list makes candidates of its seeds (the first
    /// seeds the split and the folds).
    #[arg(long, value_name = "SEED[,SEED…]", value_parser = parse_values::<u64>)]
    pub seed: Option<Values<u64>>,
    /// Train K members together, each a whole run of its own: with no
    /// list of settings, K networks that differ by their seed (--seed,
    /// --seed + 1, …, 0..K-1 by default), an ensemble; with lists, each
    /// candidate repeated over those K seeds. A comma list given to
    /// --lr, --momentum, --dampening, --betas, --alpha, --lr-decay,
    /// --initial-accumulator-value, --weight-decay, --eps, --lr-schedule,
    /// --dropout or --seed makes candidates of every combination of the
    /// lists (the first flag in this order varying slowest).
    #[arg(long, value_name = "K")]
    pub members: Option<usize>,
    /// Cross-validate: split the training rows into N folds (seeded by
    /// --seed; stratified for class labels) and train each candidate on
    /// each fold, validated on the fold's rows and trained on the others.
    #[arg(long, value_name = "N")]
    pub folds: Option<usize>,
    /// Weight initialisation: torch, xavier_uniform, xavier_normal,
    /// kaiming_uniform, kaiming_normal, sklearn (scikit-learn's MLP: weights and
    /// biases uniform in ±√(6/(fan_in+fan_out)), 2 for sigmoid).
    #[arg(long = "weight-init", default_value = "torch", value_parser = parse_init)]
    pub weight_init: Init,
    /// Write a checkpoint (parameters, optimizer state, step, epoch,
    /// scheduler; of every member, with members) to FILE every
    /// --checkpoint-every epochs, atomically, and where Ctrl-C or SIGTERM
    /// stops training.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: Option<PathBuf>,
    /// Epochs between checkpoints.
    #[arg(long, value_name = "N", default_value_t = 1, requires = "checkpoint")]
    pub checkpoint_every: u64,
    /// Continue from a checkpoint: the same run, with the checkpoint's
    /// settings for every flag left out. A setting its state cannot carry
    /// (--arch, --activations, --loss, --optimizer and the options that
    /// shape its state, --val-split, --standardize) is refused; one that
    /// steers the rest of the run (--lr, --lr-schedule, clipping,
    /// --early-stopping, --batch-size, --seed, …) may change, and is
    /// printed and noted in the model's metadata. --epochs and --steps
    /// count from the start of the original run, so the resumed run ends
    /// where the uninterrupted one would; --metrics is appended to. A
    /// checkpoint of members resumes every member: give the run's
    /// --members, --folds and lists again (other members are refused).
    #[arg(long, value_name = "FILE", conflicts_with = "init")]
    pub resume: Option<PathBuf>,
    /// Start from the parameters in this safetensors file.
    #[arg(long, value_name = "FILE")]
    pub init: Option<PathBuf>,
    /// Write the trained model here (safetensors, atomically). With
    /// members: the best candidate, its one network as a model file, or
    /// its members (seeds, folds) as a file of members, an ensemble.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// With members: write every member to one file of members.
    #[arg(long, value_name = "FILE")]
    pub save_all: Option<PathBuf>,
    /// auto (a hardware GPU if there is one, else the CPU), cpu or gpu.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: Device,
    /// The matrix products' precision: f32, or mixed (f16 operands, f32
    /// sums, f32 weights and optimizer state, as torch.autocast with
    /// float16). mixed needs a GPU with shader-f16; the CPU refuses it
    /// [default: f32, or the checkpoint's on --resume].
    #[arg(long, value_name = "PRECISION", value_parser = parse_precision)]
    pub precision: Option<Precision>,
    /// Write per-epoch metrics: .csv, or JSON lines for .jsonl/.json
    /// (with members, each member's, with its member and candidate).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Draw the loss curves into a PNG file (with members, each member
    /// thin and each candidate's mean thick).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// No progress bar.
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A model file written by `retroprop train --save`.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Inputs: CSV or .npy (the first columns, as many as the model takes;
    /// target columns after them are ignored), Parquet (the feature columns:
    /// --features, or the first columns not excluded), or array x of an .npz
    /// or safetensors file.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    #[command(flatten)]
    pub columns: ColumnArgs,
    /// Write predictions here: Parquet when the name ends in .parquet,
    /// else CSV; default: CSV on standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Read the inputs a part at a time (Parquet or .npy) and write each
    /// part's predictions as they come: memory holds a part, not the file.
    #[arg(long)]
    pub stream: bool,
    /// Of a file of members (`train --save-all`, or --save of an
    /// ensemble): member M alone [default: the ensemble, the mean of the
    /// members' probabilities, or outputs for a regression].
    #[arg(long, value_name = "M")]
    pub member: Option<usize>,
    /// auto, cpu or gpu.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: Device,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// A model file written by `retroprop train --save`.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Labelled data: CSV, Parquet, .npz, .npy or safetensors (as `train
    /// --data` reads them).
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// The last N columns (of a CSV, Parquet or .npy file) are targets
    /// [default: the model's outputs, or one column of class labels for
    /// cross-entropy].
    #[arg(long, value_name = "N", conflicts_with = "target")]
    pub targets: Option<usize>,
    #[command(flatten)]
    pub columns: ColumnArgs,
    /// Read the rows a part at a time (Parquet or .npy): memory holds a
    /// part, not the file.
    #[arg(long)]
    pub stream: bool,
    /// Of a file of members (`train --save-all`, or --save of an
    /// ensemble): member M alone [default: the ensemble, the mean of the
    /// members' probabilities, or outputs for a regression].
    #[arg(long, value_name = "M")]
    pub member: Option<usize>,
    /// auto, cpu or gpu.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: Device,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A model file written by `retroprop train --save`.
    #[arg(long, value_name = "FILE")]
    pub model: PathBuf,
    /// Write the ONNX graph here (atomically).
    #[arg(long, value_name = "FILE")]
    pub onnx: PathBuf,
    /// End the graph with the probabilities the loss implies: softmax for
    /// cross_entropy, sigmoid for bce_with_logits (no effect for mse).
    #[arg(long)]
    pub probabilities: bool,
    /// With --probabilities, a model of one bce_with_logits output (two
    /// classes) ends with both classes' probabilities, [1 - p, p], as
    /// scikit-learn's predict_proba gives them.
    #[arg(long, requires = "probabilities")]
    pub both_classes: bool,
    /// Of a file of members: member M's network alone [default: the
    /// ensemble, the mean of the members' probabilities (for a
    /// regression, outputs), which --probabilities does not change].
    #[arg(long, value_name = "M")]
    pub member: Option<usize>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Devices to measure, comma separated: cpu, gpu (default: every one available).
    #[arg(long, value_name = "LIST")]
    pub devices: Option<String>,
    /// Batch sizes, comma separated.
    #[arg(long, default_value = "64,1024")]
    pub batch: String,
    /// Timed steps per run (after 5 warm-up steps); at least 1.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Layer sizes of the network.
    #[arg(long, default_value = "784,1024,1024,10")]
    pub arch: String,
    /// Samples in the synthetic data set.
    #[arg(long, default_value_t = 16384)]
    pub samples: usize,
    /// The optimizer (adam with lr 1e-3 by default, as the standard work),
    /// as `train --optimizer` takes it.
    #[arg(long, value_name = "OPTIMIZER", default_value = "adam", value_parser = OptimizerParser)]
    pub optimizer: Optimizer,
    /// The matrix products' precision, as `train --precision` takes it.
    #[arg(long, default_value = "f32", value_parser = parse_precision)]
    pub precision: Precision,
    /// Also measure the matmul kernels, per-step overhead and scaling.
    #[arg(long)]
    pub full: bool,
    /// Also count the dispatches of a GPU step and time every kernel, by
    /// layer, at each batch size (the times on adapters with timestamp
    /// queries inside compute passes), and the fixed cost of a step (a
    /// 4-4-2 net at batch 1).
    #[arg(long)]
    pub profile: bool,
    /// One JSON object per run on standard output instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// A setting's values: one, or a comma list (`1e-3,3e-3,1e-2`).
#[derive(Debug, Clone, PartialEq)]
pub struct Values<T>(pub Vec<T>);

impl<T> Values<T> {
    /// The value, when one was given.
    pub fn single(&self) -> Option<&T> {
        match self.0.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// A comma list of values, each read by its type's `FromStr`.
fn parse_values<T: std::str::FromStr>(text: &str) -> Result<Values<T>, String>
where
    T::Err: std::fmt::Display,
{
    text.split(',')
        .map(|value| {
            value
                .trim()
                .parse()
                .map_err(|e| format!("`{}`: {e}", value.trim()))
        })
        .collect::<Result<_, _>>()
        .map(Values)
}

/// One value of a setting a member may have of its own.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberValue {
    /// An optimizer option by torch's name, as text `set_option` reads.
    Option(&'static str, String),
    /// A learning-rate schedule.
    Schedule(LrSchedule),
    /// Dropout after every hidden layer.
    Dropout(f32),
    /// The seed.
    Seed(u64),
}

impl MemberValue {
    /// The setting's name: torch's for an optimizer option.
    pub fn name(&self) -> &'static str {
        match self {
            MemberValue::Option(name, _) => name,
            MemberValue::Schedule(_) => "lr_schedule",
            MemberValue::Dropout(_) => "dropout",
            MemberValue::Seed(_) => "seed",
        }
    }

    /// The value as the flag writes it.
    pub fn value(&self) -> String {
        match self {
            MemberValue::Option(_, text) => text.clone(),
            MemberValue::Schedule(schedule) => schedule.to_string(),
            MemberValue::Dropout(p) => p.to_string(),
            MemberValue::Seed(seed) => seed.to_string(),
        }
    }
}

impl TrainArgs {
    /// Every setting a member may have of its own that the flags give,
    /// each with its values (one, or a comma list's), in the order the
    /// candidates' grid takes them: the optimizer's options (torch's
    /// names; each flag is the name with `-`), the schedule, dropout, the
    /// seed.
    pub fn member_settings(&self) -> Vec<(&'static str, Vec<MemberValue>)> {
        let numbers = |name: &'static str, values: &Option<Values<f64>>| {
            values.as_ref().map(|v| {
                let texts = v.0.iter().map(|x| MemberValue::Option(name, x.to_string()));
                (name, texts.collect())
            })
        };
        let betas = self.betas.as_ref().map(|text| {
            // `B1,B2` is one pair; with `/`, the commas part pairs.
            let pairs: Vec<&str> = if text.contains('/') {
                text.split(',').collect()
            } else {
                vec![text.as_str()]
            };
            let pairs = pairs.into_iter();
            (
                "betas",
                pairs
                    .map(|p| MemberValue::Option("betas", p.trim().to_string()))
                    .collect(),
            )
        });
        let each = |name, values: Option<Vec<MemberValue>>| values.map(|v| (name, v));
        [
            numbers("lr", &self.lr),
            numbers("momentum", &self.momentum),
            numbers("dampening", &self.dampening),
            betas,
            numbers("alpha", &self.alpha),
            numbers("lr_decay", &self.lr_decay),
            numbers("initial_accumulator_value", &self.initial_accumulator_value),
            numbers("weight_decay", &self.weight_decay),
            numbers("eps", &self.eps),
            each(
                "lr_schedule",
                self.lr_schedule
                    .as_ref()
                    .map(|v| v.0.iter().copied().map(MemberValue::Schedule).collect()),
            ),
            each(
                "dropout",
                self.dropout
                    .as_ref()
                    .map(|v| v.0.iter().copied().map(MemberValue::Dropout).collect()),
            ),
            each(
                "seed",
                self.seed
                    .as_ref()
                    .map(|v| v.0.iter().copied().map(MemberValue::Seed).collect()),
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The optimizer options the flags give the run, by torch's names, as
    /// text for `Optimizer::set_option`: the switches, and each option
    /// given one value (a list makes candidates).
    pub fn optimizer_options(&self) -> Vec<(&'static str, String)> {
        let flag = |name, given: bool| given.then(|| (name, true.to_string()));
        let switches = [
            flag("nesterov", self.nesterov),
            flag("amsgrad", self.amsgrad),
            flag("centered", self.centered),
        ];
        let single = self
            .member_settings()
            .into_iter()
            .filter_map(|(_, values)| match values.as_slice() {
                [MemberValue::Option(name, text)] => Some((*name, text.clone())),
                _ => None,
            });
        switches.into_iter().flatten().chain(single).collect()
    }

    /// Whether the flags ask for members: `--members`, `--folds`,
    /// `--save-all` or a list of several values.
    pub fn asks_for_members(&self) -> bool {
        self.members.is_some()
            || self.folds.is_some()
            || self.save_all.is_some()
            || self
                .member_settings()
                .iter()
                .any(|(_, values)| values.len() > 1)
    }
}

/// `--optimizer`: parsed by the library (`Optimizer`'s `FromStr`), with
/// the library's names as the values `--help` lists.
#[derive(Debug, Clone, Copy)]
pub struct OptimizerParser;

impl TypedValueParser for OptimizerParser {
    type Value = Optimizer;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Optimizer, clap::Error> {
        let text = value.to_string_lossy();
        text.parse().map_err(|e: retroprop::Error| {
            let arg = arg.map_or("--optimizer".to_string(), ToString::to_string);
            clap::Error::raw(
                ErrorKind::ValueValidation,
                format!("invalid value '{text}' for '{arg}': {e}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            Optimizer::NAMES.into_iter().map(PossibleValue::new),
        ))
    }
}

fn parse_loss(s: &str) -> Result<Loss, String> {
    s.parse()
}
fn parse_init(s: &str) -> Result<Init, String> {
    s.parse()
}
fn parse_device(s: &str) -> Result<Device, String> {
    s.parse()
}
fn parse_precision(s: &str) -> Result<Precision, String> {
    s.parse()
}
fn parse_window(s: &str) -> Result<ShuffleWindow, String> {
    s.parse()
}

/// Parses `--arch` (see `retroprop::model::parse_sizes`).
pub fn parse_arch(text: &str) -> Result<Vec<usize>, String> {
    retroprop::model::parse_sizes(text).map_err(|e| format!("--arch: {e}"))
}
