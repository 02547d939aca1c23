//! The network description (dense layers, and for a residual network the
//! normalisations and skips between them: [`LayerKind`]), the layout of
//! its parameters in one flat vector, and their initialisation.

use crate::activation::Activation;
use crate::error::{Error, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use std::ops::Range;

mod blocks;
mod tabm;
pub use blocks::Blocks;
pub use tabm::{EnsembleMean, LayerForm, ScalingInit, Tabm, TabmArch, TabmTensor};

/// One dense layer: Z = A_prev · Wᵀ + b, A = f(Z), with W of shape
/// `[outputs, inputs]` as in `torch.nn.Linear`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layer {
    /// Width of the layer's input.
    pub inputs: usize,
    /// Width of the layer's output.
    pub outputs: usize,
    /// The activation f applied to Z.
    pub activation: Activation,
}

/// A multilayer perceptron: dense layers, each feeding the next.
///
/// Parameters live in one flat vector, layer after layer, each layer's
/// weight (`outputs × inputs`, row-major) followed by its bias: the order of
/// a torch `state_dict` of `nn.ModuleList([nn.Linear, ...])`.
///
/// ```
/// use retroprop::{Activation, Mlp};
/// let mlp = Mlp::new(&[2, 4, 1], Activation::Tanh, Activation::Identity)?;
/// assert_eq!(mlp.parameter_count(), 2 * 4 + 4 + 4 * 1 + 1);
/// assert_eq!(mlp.weight_range(1), 12..16);
/// # Ok::<(), retroprop::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Mlp {
    layers: Vec<Layer>,
    offsets: Vec<usize>,
    /// The forward pass, step by step: `Dense(0), Dense(1), …` for a
    /// plain network.
    kinds: Vec<LayerKind>,
    /// The normalisations [`LayerKind::Norm`] names, their parameters
    /// after every dense layer's.
    norms: Vec<NormLayer>,
    /// What a residual network was made from.
    residual: Option<Residual>,
    /// What a TabM ensemble was made from.
    ensemble: Option<Tabm>,
}

/// One step of a network's forward pass (docs/DESIGN.md, "Layer kinds").
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerKind {
    /// Dense layer `l` of [`Mlp::layers`], its activation included.
    Dense(usize),
    /// Normalisation `n` of [`Mlp::norms`].
    Norm(usize),
    /// An activation alone (a residual network's head, after its norm).
    Activation(Activation),
    /// Keeps the values here for the [`LayerKind::Add`] that ends the block.
    Skip,
    /// TabM's numerical feature embedding ([`Tabm::embedding`]), before
    /// the members: `[rows, features]` to `[rows, features · d]`.
    Embed,
    /// Adds the values the last [`LayerKind::Skip`] kept: `x + block(x)`.
    Add,
    /// TabM's start: each row given to every member, `[k, rows, width]`
    /// from here on.
    EnsembleView,
    /// `tabm-mini`'s scaling of each member's input by its own row of
    /// [`Mlp::affine_range`].
    Scale,
    /// Dense layer `l` as a BatchEnsemble layer ([`LayerForm::BatchEnsemble`]).
    EnsembleDense(usize),
    /// Dense layer `l` as one linear layer a member ([`LayerForm::PerMember`]).
    EnsembleLinear(usize),
}

/// Which normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `torch.nn.LayerNorm(width)`: each row by its own statistics.
    Layer,
    /// `torch.nn.BatchNorm1d(width)` (momentum 0.1): each column by the
    /// batch's statistics in training, by running statistics (state of
    /// the model, not parameters) in evaluation.
    Batch,
}

impl std::fmt::Display for NormKind {
    /// The names `FromStr` reads: `batch`, `layer`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NormKind::Layer => "layer",
            NormKind::Batch => "batch",
        })
    }
}

impl std::str::FromStr for NormKind {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "batch" => Ok(NormKind::Batch),
            "layer" => Ok(NormKind::Layer),
            other => Err(format!(
                "unknown normalisation `{other}` (expected batch or layer)"
            )),
        }
    }
}

impl NormKind {
    /// Its name in messages and summaries.
    pub fn name(self) -> &'static str {
        match self {
            NormKind::Layer => "layer norm",
            NormKind::Batch => "batch norm",
        }
    }
}

/// A normalisation layer: its kind, the width it normalises and its eps;
/// its parameters are γ (`weight`) and β (`bias`), `width` each.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NormLayer {
    /// Which normalisation.
    pub kind: NormKind,
    /// Values a row holds.
    pub width: usize,
    /// Added to the variance (torch's default 1e-5).
    pub eps: f64,
    /// How far a training batch moves BatchNorm's running statistics
    /// (torch's default 0.1; unused by LayerNorm).
    pub momentum: f64,
}

/// A residual network of "Revisiting Deep Learning Models for Tabular
/// Data" (Gorishniy et al. 2021; rtdl's `ResNet`): an input Linear to
/// `width`, `blocks` blocks `x + Dropout(Linear(Dropout(Act(Linear(Norm(x))))))`
/// with a hidden width of `hidden`, and a head `Norm → Act → Linear`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Residual {
    /// Width of the input.
    pub inputs: usize,
    /// Width of the blocks' input and output.
    pub width: usize,
    /// Width inside a block (width × the block multiplier).
    pub hidden: usize,
    /// How many blocks.
    pub blocks: usize,
    /// Width of the output.
    pub outputs: usize,
    /// The blocks' and head's normalisation, or none.
    pub norm: Option<NormKind>,
    /// The blocks' and head's activation.
    pub activation: Activation,
}

impl std::fmt::Display for Residual {
    /// `2 blocks (width 32, hidden 64, batch norm, relu)`: what a resume
    /// that changed it names.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} blocks (width {}, hidden {}, {}, {})",
            self.blocks,
            self.width,
            self.hidden,
            self.norm.map_or("no norm", NormKind::name),
            self.activation
        )
    }
}

impl Mlp {
    /// A network with the given layer sizes (input first, output last), one
    /// activation for every hidden layer and one for the output layer.
    pub fn new(sizes: &[usize], hidden: Activation, output: Activation) -> Result<Mlp> {
        if sizes.len() < 2 {
            return Err(Error::Config(format!(
                "an architecture needs at least an input and an output size, got {sizes:?}"
            )));
        }
        let last = sizes.len() - 2;
        let activations: Vec<Activation> = (0..=last)
            .map(|l| if l == last { output } else { hidden })
            .collect();
        Mlp::with_activations(sizes, &activations)
    }

    /// A network with one activation given per layer.
    pub fn with_activations(sizes: &[usize], activations: &[Activation]) -> Result<Mlp> {
        if sizes.len() < 2 {
            return Err(Error::Config(format!(
                "an architecture needs at least an input and an output size, got {sizes:?}"
            )));
        }
        if activations.len() != sizes.len() - 1 {
            return Err(Error::Shape {
                what: "activations (one per layer)".into(),
                expected: sizes.len() - 1,
                got: activations.len(),
            });
        }
        let layers = sizes
            .windows(2)
            .zip(activations)
            .map(|(w, &activation)| Layer {
                inputs: w[0],
                outputs: w[1],
                activation,
            })
            .collect();
        Mlp::from_layers(layers)
    }

    /// A network from explicit layers; each layer's inputs must equal the
    /// previous layer's outputs.
    pub fn from_layers(layers: Vec<Layer>) -> Result<Mlp> {
        if layers.is_empty() {
            return Err(Error::Empty {
                what: "the list of layers".into(),
            });
        }
        let mut offsets = vec![0];
        for (l, layer) in layers.iter().enumerate() {
            if layer.inputs == 0 {
                return Err(Error::ZeroSizedLayer {
                    layer: l,
                    side: "inputs",
                });
            }
            if layer.outputs == 0 {
                return Err(Error::ZeroSizedLayer {
                    layer: l,
                    side: "outputs",
                });
            }
            if l > 0 && layers[l - 1].outputs != layer.inputs {
                return Err(Error::Shape {
                    what: format!("inputs of layer {l} (outputs of layer {})", l - 1),
                    expected: layers[l - 1].outputs,
                    got: layer.inputs,
                });
            }
            if let Activation::LeakyRelu { slope } = layer.activation
                && !slope.is_finite()
            {
                return Err(Error::Hyperparameter {
                    name: "leaky_relu slope",
                    value: slope as f64,
                    reason: "must be finite",
                });
            }
            // Checked: sizes come from users, and a wrapped offset would
            // index the wrong parameters. The parameters must also fit in
            // one allocation (isize::MAX bytes), so `init` cannot overflow.
            let end = layer
                .outputs
                .checked_mul(layer.inputs)
                .and_then(|w| w.checked_add(layer.outputs))
                .and_then(|n| n.checked_add(offsets[l]))
                .filter(|&n| n <= isize::MAX as usize / std::mem::size_of::<f32>());
            let Some(end) = end else {
                return Err(Error::TooLarge(format!(
                    "layer {l} ({} → {}) takes the network past {} parameters, more than one allocation can hold",
                    layer.inputs,
                    layer.outputs,
                    isize::MAX as usize / std::mem::size_of::<f32>()
                )));
            };
            offsets.push(end);
        }
        let kinds = (0..layers.len()).map(LayerKind::Dense).collect();
        Ok(Mlp {
            layers,
            offsets,
            kinds,
            norms: Vec::new(),
            residual: None,
            ensemble: None,
        })
    }

    /// A residual network (see [`Residual`]). Its dense layers, in order:
    /// the input layer, each block's first and second, the head's.
    ///
    /// ```
    /// use retroprop::{Activation, Mlp, NormKind, Residual};
    /// let net = Mlp::residual(Residual { inputs: 64, width: 32, hidden: 64, blocks: 2,
    ///     outputs: 10, norm: Some(NormKind::Layer), activation: Activation::Relu })?;
    /// assert_eq!(net.sizes(), [64, 32, 64, 32, 64, 32, 10]);
    /// assert_eq!(net.norms().len(), 3); // one a block, one in the head
    /// assert!(!net.is_plain());
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// A zero width or hidden width, or no blocks.
    pub fn residual(spec: Residual) -> Result<Mlp> {
        if spec.blocks == 0 {
            return Err(Error::Config(
                "a residual network needs at least one block".into(),
            ));
        }
        let dense = |inputs, outputs, activation| Layer {
            inputs,
            outputs,
            activation,
        };
        let mut layers = vec![dense(spec.inputs, spec.width, Activation::Identity)];
        let mut kinds = vec![LayerKind::Dense(0)];
        let mut norms = Vec::new();
        let mut norm = |kinds: &mut Vec<LayerKind>| {
            if let Some(kind) = spec.norm {
                kinds.push(LayerKind::Norm(norms.len()));
                norms.push(NormLayer {
                    kind,
                    width: spec.width,
                    eps: 1e-5,
                    momentum: 0.1,
                });
            }
        };
        for _ in 0..spec.blocks {
            kinds.push(LayerKind::Skip);
            norm(&mut kinds);
            kinds.push(LayerKind::Dense(layers.len()));
            layers.push(dense(spec.width, spec.hidden, spec.activation));
            kinds.push(LayerKind::Dense(layers.len()));
            layers.push(dense(spec.hidden, spec.width, Activation::Identity));
            kinds.push(LayerKind::Add);
        }
        norm(&mut kinds);
        kinds.push(LayerKind::Activation(spec.activation));
        kinds.push(LayerKind::Dense(layers.len()));
        layers.push(dense(spec.width, spec.outputs, Activation::Identity));
        let plain = Mlp::from_layers(layers)?;
        let mlp = Mlp {
            kinds,
            norms,
            residual: Some(spec),
            ..plain
        };
        mlp.check_norm_parameters()?;
        Ok(mlp)
    }

    /// What a residual network was made from; `None` for a plain one.
    pub fn residual_spec(&self) -> Option<Residual> {
        self.residual
    }

    /// The network in a line: its sizes (`64,32,10`), and for a residual
    /// network its blocks (`64,32,10 with 50 residual blocks (hidden 64,
    /// layer norm)`).
    pub fn describe(&self) -> String {
        let join = |sizes: &[usize]| {
            sizes
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        if let Some(tabm) = self.describe_tabm(&join(&self.sizes())) {
            return tabm;
        }
        match self.residual {
            None => join(&self.sizes()),
            Some(r) => format!(
                "{} with {} residual blocks (hidden {}, {})",
                join(&[r.inputs, r.width, r.outputs]),
                r.blocks,
                r.hidden,
                r.norm.map_or("no norm", NormKind::name)
            ),
        }
    }

    /// Dense layer `l` in words: `layer 3`, and in a residual network
    /// where it stands (`layer 0 (the input layer)`, `layer 5 (block 2's
    /// first linear)`, `layer 9 (the head's linear)`).
    pub fn layer_name(&self, l: usize) -> String {
        let Some(r) = self.residual else {
            return format!("layer {l}");
        };
        let place = if l == 0 {
            "the input layer".to_string()
        } else if l == 2 * r.blocks + 1 {
            "the head's linear".to_string()
        } else {
            let which = if l % 2 == 1 { "first" } else { "second" };
            format!("block {}'s {which} linear", (l - 1) / 2)
        };
        format!("layer {l} ({place})")
    }

    /// The forward pass, step by step.
    pub fn kinds(&self) -> &[LayerKind] {
        &self.kinds
    }

    /// The normalisation layers, in the order the forward pass meets them.
    pub fn norms(&self) -> &[NormLayer] {
        &self.norms
    }

    /// Whether the network is dense layers one after another, the only
    /// kind the GPU members' engine and the files of members run so far.
    pub fn is_plain(&self) -> bool {
        self.kinds.iter().all(|k| matches!(k, LayerKind::Dense(_)))
    }

    /// Refuses a network that is not plain for `what`, which runs dense
    /// layers one after another only so far, naming the network.
    ///
    /// # Errors
    /// [`Error::Config`] for a residual network.
    pub fn require_plain(&self, what: &str) -> Result<()> {
        if self.is_plain() {
            return Ok(());
        }
        if let Some(spec) = &self.ensemble {
            return Err(Error::Config(format!(
                "{what} runs dense layers one after another only, so far; this TabM network ({} members, {}) trains as a lone run on the CPU",
                spec.k, spec.arch
            )));
        }
        Err(Error::Config(format!(
            "{what} runs dense layers one after another only, so far; this residual network ({} blocks{}) trains as a lone run (a Trainer, device cpu or gpu)",
            self.kinds.iter().filter(|k| **k == LayerKind::Skip).count(),
            self.norms
                .first()
                .map_or(", no norm".to_string(), |n| format!(", {}", n.kind.name())),
        )))
    }

    /// Whether a normalisation keeps running statistics (BatchNorm).
    pub fn has_batch_norm(&self) -> bool {
        self.norms.iter().any(|n| n.kind == NormKind::Batch)
    }

    /// Where normalisation `n`'s γ and β sit in the flat parameter vector
    /// (after every dense layer's parameters).
    pub fn norm_ranges(&self, n: usize) -> (Range<usize>, Range<usize>) {
        let before: usize = self.norms[..n].iter().map(|norm| 2 * norm.width).sum();
        let start = self.offsets[self.layers.len()] + before;
        let width = self.norms[n].width;
        (start..start + width, start + width..start + 2 * width)
    }

    /// Where batch normalisation `n`'s running mean and running variance
    /// sit in the flat buffer vector ([`Backend::buffers`](crate::backend::Backend::buffers),
    /// torch's buffers): the batch normalisations in order, each its mean
    /// then its variance. `None` for a layer normalisation, which keeps
    /// none.
    ///
    /// ```
    /// use retroprop::{Activation, Mlp, NormKind, Residual};
    /// let net = Mlp::residual(Residual { inputs: 4, width: 3, hidden: 6, blocks: 2,
    ///     outputs: 1, norm: Some(NormKind::Batch), activation: Activation::Relu })?;
    /// assert_eq!(net.buffer_count(), 3 * 2 * 3); // three norms, mean and var of 3
    /// assert_eq!(net.buffer_ranges(1), Some((6..9, 9..12)));
    /// assert_eq!(&net.initial_buffers()[..6], [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]);
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    pub fn buffer_ranges(&self, n: usize) -> Option<(Range<usize>, Range<usize>)> {
        if self.norms[n].kind != NormKind::Batch {
            return None;
        }
        let start: usize = self.norms[..n]
            .iter()
            .filter(|norm| norm.kind == NormKind::Batch)
            .map(|norm| 2 * norm.width)
            .sum();
        let width = self.norms[n].width;
        Some((start..start + width, start + width..start + 2 * width))
    }

    /// Values the flat buffer vector holds (see [`Mlp::buffer_ranges`]).
    pub fn buffer_count(&self) -> usize {
        self.norms
            .iter()
            .filter(|norm| norm.kind == NormKind::Batch)
            .map(|norm| 2 * norm.width)
            .sum()
    }

    /// torch's initial buffers: running means 0, running variances 1.
    pub fn initial_buffers(&self) -> Vec<f32> {
        let mut buffers = vec![0.0; self.buffer_count()];
        for n in 0..self.norms.len() {
            if let Some((_, var)) = self.buffer_ranges(n) {
                buffers[var].fill(1.0);
            }
        }
        buffers
    }

    /// The norms' parameters must fit one allocation with the rest.
    fn check_norm_parameters(&self) -> Result<()> {
        let norms: usize = self.norms.iter().map(|n| 2 * n.width).sum();
        match self.offsets[self.layers.len()].checked_add(norms) {
            Some(n) if n <= isize::MAX as usize / std::mem::size_of::<f32>() => Ok(()),
            _ => Err(Error::TooLarge(
                "the normalisations take the network past one allocation".into(),
            )),
        }
    }

    /// The layers, input side first.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Width of the network's input.
    pub fn inputs(&self) -> usize {
        match self.tabm_embedding() {
            Some(embedding) => embedding.n_features(),
            None => self.layers[0].inputs,
        }
    }

    /// Width of the network's output.
    pub fn outputs(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs
    }

    /// All layer sizes, input first: `[inputs, hidden…, outputs]`.
    pub fn sizes(&self) -> Vec<usize> {
        std::iter::once(self.inputs())
            .chain(self.layers.iter().map(|l| l.outputs))
            .collect()
    }

    /// The widest layer output (the activation buffers' width).
    pub fn max_width(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.outputs.max(l.inputs))
            .max()
            .unwrap_or(0)
    }

    /// Number of parameters: weights and biases together, and the
    /// normalisations' γ and β.
    pub fn parameter_count(&self) -> usize {
        self.offsets[self.layers.len()]
            + self.norms.iter().map(|n| 2 * n.width).sum::<usize>()
            + self.ensemble_extra()
    }

    /// Where layer `l`'s weight sits in the flat parameter vector.
    pub fn weight_range(&self, l: usize) -> Range<usize> {
        let start = self.offsets[l];
        start..start + self.weight_len(l)
    }

    /// Where layer `l`'s bias sits in the flat parameter vector.
    pub fn bias_range(&self, l: usize) -> Range<usize> {
        let end = self.offsets[l + 1];
        end - self.bias_len(l)..end
    }

    /// Bytes of host memory that training this network with batches of
    /// `batch_rows` rows and an optimizer keeping `optimizer_slots` values
    /// per parameter needs, before any data: see [`MemoryEstimate`].
    pub fn training_memory(&self, batch_rows: usize, optimizer_slots: usize) -> MemoryEstimate {
        let bytes = std::mem::size_of::<f32>() as u128;
        let parameters = self.parameter_count() as u128 * bytes;
        // Per row: the input, then each layer's pre-activation Z, output A
        // and gradient (or dropout mask), as the CPU backend keeps them.
        let per_row =
            self.inputs() as u128 + 3 * self.layers.iter().map(|l| l.outputs as u128).sum::<u128>();
        let per_row = per_row * self.members() as u128;
        MemoryEstimate {
            parameters,
            gradients: parameters,
            optimizer_state: parameters * optimizer_slots as u128,
            activations: per_row * batch_rows as u128 * bytes,
        }
    }

    /// Refuses, before anything is allocated, a network that cannot train
    /// here: when [`Mlp::training_memory`] is more than the machine's memory
    /// (RAM and swap, from `/proc/meminfo` on Linux; elsewhere only what
    /// cannot be addressed at all). `batch_size` is rows per step; `None`
    /// (full batch) counts one row, the data set's size being unknown here.
    /// The message gives the estimate and names the largest layer.
    pub fn check_training_memory(
        &self,
        batch_size: Option<usize>,
        optimizer_slots: usize,
    ) -> Result<()> {
        let batch_rows = batch_size.unwrap_or(1);
        let estimate = self.training_memory(batch_rows, optimizer_slots);
        let (available, whose) = match machine_memory() {
            Some(bytes) => (bytes, "this machine's"),
            None => (isize::MAX as u128, "the address space's"),
        };
        if estimate.total() <= available {
            return Ok(());
        }
        let (largest, layer) = self
            .layers
            .iter()
            .enumerate()
            .max_by_key(|(_, l)| l.inputs as u128 * l.outputs as u128)
            .expect("a network has layers");
        let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
        Err(Error::TooLarge(format!(
            "training network {} with batches of {batch_rows} rows needs about {:.1} GiB of memory (parameters {:.1}, gradients {:.1}, optimizer state {:.1}, activations {:.1} GiB), more than {whose} {:.1} GiB; layer {largest} ({} → {}), the largest, alone has {} weights",
            self.sizes()
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(","),
            gib(estimate.total()),
            gib(estimate.parameters),
            gib(estimate.gradients),
            gib(estimate.optimizer_state),
            gib(estimate.activations),
            gib(available),
            layer.inputs,
            layer.outputs,
            layer.inputs as u128 * layer.outputs as u128
        )))
    }

    /// Fresh parameters drawn from `init` with a seeded generator: the same
    /// seed gives the same numbers on every run and machine. A TabM
    /// network starts as the `tabm` package's does, whatever `init` says
    /// (see [`Tabm`]).
    pub fn init(&self, init: Init, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut params = vec![0f32; self.parameter_count()];
        if self.ensemble.is_some() {
            self.init_tabm(&mut rng, &mut params);
            return params;
        }
        // scikit-learn's factor reads the hidden layers' activation for
        // every layer.
        let sklearn_factor = match self.layers.first() {
            Some(first) if self.layers.len() > 1 && first.activation == Activation::Sigmoid => 2.0,
            _ => 6.0,
        };
        for (l, layer) in self.layers.iter().enumerate() {
            let (fan_in, fan_out) = (layer.inputs as f64, layer.outputs as f64);
            let gain = layer.activation.gain();
            let weight = &mut params[self.weight_range(l)];
            let bias_bound = match init {
                Init::TorchDefault => {
                    // kaiming_uniform_(a=√5) reduces to U(±1/√fan_in); the
                    // bias is U(±1/√fan_in) too.
                    fill_uniform(weight, 1.0 / fan_in.sqrt(), &mut rng);
                    1.0 / fan_in.sqrt()
                }
                Init::XavierUniform => {
                    fill_uniform(weight, gain * (6.0 / (fan_in + fan_out)).sqrt(), &mut rng);
                    0.0
                }
                Init::XavierNormal => {
                    fill_normal(weight, gain * (2.0 / (fan_in + fan_out)).sqrt(), &mut rng);
                    0.0
                }
                Init::KaimingUniform => {
                    fill_uniform(weight, gain * (3.0 / fan_in).sqrt(), &mut rng);
                    0.0
                }
                Init::KaimingNormal => {
                    fill_normal(weight, gain / fan_in.sqrt(), &mut rng);
                    0.0
                }
                Init::Sklearn => {
                    let bound = (sklearn_factor / (fan_in + fan_out)).sqrt();
                    fill_uniform(weight, bound, &mut rng);
                    bound
                }
            };
            if bias_bound > 0.0 {
                fill_uniform(&mut params[self.bias_range(l)], bias_bound, &mut rng);
            }
        }
        // torch's start for a normalisation: γ = 1, β = 0.
        for n in 0..self.norms.len() {
            params[self.norm_ranges(n).0].fill(1.0);
        }
        params
    }
}

/// Host memory, in bytes, that training a network takes before any data:
/// what [`Mlp::training_memory`] returns. On the GPU the same state lives
/// on the device, so it is an upper bound for the host there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    /// The parameters (float32).
    pub parameters: u128,
    /// Their gradients.
    pub gradients: u128,
    /// The optimizer's per-parameter state.
    pub optimizer_state: u128,
    /// One batch's inputs, pre-activations, outputs and gradients.
    pub activations: u128,
}

impl MemoryEstimate {
    /// All of it together.
    pub fn total(&self) -> u128 {
        self.parameters + self.gradients + self.optimizer_state + self.activations
    }
}

/// RAM and swap together, from `/proc/meminfo`; `None` where there is none.
fn machine_memory() -> Option<u128> {
    // The browser has no file system, and says nothing of its memory.
    if cfg!(target_arch = "wasm32") {
        return None;
    }
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = |key: &str| -> Option<u128> {
        let line = text.lines().find(|l| l.starts_with(key))?;
        line[key.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some((kib("MemTotal:")? + kib("SwapTotal:").unwrap_or(0)) * 1024)
}

fn fill_uniform(values: &mut [f32], bound: f64, rng: &mut ChaCha8Rng) {
    let dist = Uniform::new_inclusive(-bound, bound).expect("bound is finite");
    for v in values {
        *v = dist.sample(rng) as f32;
    }
}

fn fill_normal(values: &mut [f32], std: f64, rng: &mut ChaCha8Rng) {
    let dist = Normal::new(0.0, std).expect("std is finite");
    for v in values {
        *v = dist.sample(rng) as f32;
    }
}

/// How weights are initialised. The Xavier and He variants scale by
/// `torch.nn.init.calculate_gain` of the layer's own activation (GELU counted
/// as ReLU) and start biases at zero; He uses fan-in mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Init {
    /// torch's `nn.Linear` default: W and b uniform in ±1/√fan_in.
    #[default]
    TorchDefault,
    /// Glorot & Bengio: U(±gain·√(6/(fan_in+fan_out))).
    XavierUniform,
    /// Glorot & Bengio: N(0, gain·√(2/(fan_in+fan_out))).
    XavierNormal,
    /// He et al.: U(±gain·√(3/fan_in)).
    KaimingUniform,
    /// He et al.: N(0, gain/√fan_in).
    KaimingNormal,
    /// scikit-learn's MLP: W and b uniform in ±√(f/(fan_in+fan_out)),
    /// f = 2 when the hidden layers are sigmoid (scikit-learn's
    /// `logistic`), else 6, in every layer (the output layer too).
    Sklearn,
}

impl std::fmt::Display for Init {
    /// The names `FromStr` reads: `torch`, `xavier_uniform`,
    /// `xavier_normal`, `kaiming_uniform`, `kaiming_normal`, `sklearn`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Init::TorchDefault => "torch",
            Init::XavierUniform => "xavier_uniform",
            Init::XavierNormal => "xavier_normal",
            Init::KaimingUniform => "kaiming_uniform",
            Init::KaimingNormal => "kaiming_normal",
            Init::Sklearn => "sklearn",
        })
    }
}

impl Init {
    /// Every initialisation: for tests and help text.
    pub const ALL: [Init; 6] = [
        Init::TorchDefault,
        Init::XavierUniform,
        Init::XavierNormal,
        Init::KaimingUniform,
        Init::KaimingNormal,
        Init::Sklearn,
    ];
}

impl std::str::FromStr for Init {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s.trim() {
            "torch" | "default" => Init::TorchDefault,
            "xavier_uniform" | "glorot_uniform" => Init::XavierUniform,
            "xavier_normal" | "glorot_normal" => Init::XavierNormal,
            "kaiming_uniform" | "he_uniform" => Init::KaimingUniform,
            "kaiming_normal" | "he_normal" => Init::KaimingNormal,
            "sklearn" => Init::Sklearn,
            other => {
                return Err(format!(
                    "unknown initialisation `{other}` (expected torch, xavier_uniform, xavier_normal, kaiming_uniform, kaiming_normal or sklearn)"
                ));
            }
        })
    }
}

/// Parses layer sizes written as `64,32,10`: positive whole numbers, at
/// least two (input and output). The message names what is wrong.
///
/// ```
/// assert_eq!(retroprop::model::parse_sizes("784, 128,10"), Ok(vec![784, 128, 10]));
/// assert!(retroprop::model::parse_sizes("4").is_err());
/// ```
pub fn parse_sizes(text: &str) -> std::result::Result<Vec<usize>, String> {
    let sizes: Vec<usize> = text
        .split(',')
        .map(|s| {
            let s = s.trim();
            match s.parse::<usize>() {
                Ok(0) => Err("layer sizes must be at least 1, got 0".to_string()),
                Ok(n) if n > 1 << 24 => {
                    Err(format!("layer size {n} is too large (at most {})", 1 << 24))
                }
                Ok(n) => Ok(n),
                Err(_) => Err(format!(
                    "`{s}` is not a layer size (expected e.g. 64,32,10)"
                )),
            }
        })
        .collect::<std::result::Result<_, _>>()?;
    if sizes.len() < 2 {
        return Err(format!(
            "needs at least an input and an output size, got `{text}`"
        ));
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// scikit-learn's `_init_coef`: weights and biases uniform in
    /// ±√(6/(fan_in+fan_out)), 2 instead of 6 for logistic hidden layers.
    #[test]
    fn sklearn_init_draws_weights_and_biases_within_glorot_bounds() {
        for (hidden, factor) in [(Activation::Relu, 6.0f64), (Activation::Sigmoid, 2.0)] {
            let mlp = Mlp::new(&[30, 256, 2], hidden, Activation::Identity).unwrap();
            let params = mlp.init(Init::Sklearn, 5);
            // 30 → 256: √(6/286) = 0.14484 (ReLU), √(2/286) = 0.08362.
            // 256 → 2: √(6/258) = 0.15250, √(2/258) = 0.08805.
            let bounds = if factor == 6.0 {
                [0.14484, 0.15250]
            } else {
                [0.08362, 0.08805]
            };
            for (l, bound) in bounds.into_iter().enumerate() {
                for range in [mlp.weight_range(l), mlp.bias_range(l)] {
                    let values = &params[range];
                    let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
                    assert!(max <= bound, "layer {l}: {max} past ±{bound}");
                    // 512 or more draws reach near the bound; the 2 output
                    // biases need not.
                    if values.len() >= 512 {
                        assert!(max > 0.95 * bound, "layer {l}: {max} far inside ±{bound}");
                    }
                    assert!(values.iter().all(|v| *v != 0.0), "layer {l}: a zero");
                }
            }
        }
    }
}
