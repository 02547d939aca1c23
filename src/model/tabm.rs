//! TabM (Gorishniy et al., ICLR 2025; the `tabm` package): k MLPs of one
//! architecture trained at once as one network, the members an axis of
//! its activations (`[k, rows, width]`, a member's rows together). Its
//! architectures, as the package's `arch_type`:
//!
//! - `tabm`: every hidden layer a BatchEnsemble layer (W shared, each
//!   member's r, s and bias; [`LayerKind::EnsembleDense`]);
//! - `tabm-mini`: one per-member scaling of the input
//!   ([`LayerKind::Scale`]) before a shared MLP ([`LayerKind::Dense`] over
//!   every member's rows);
//! - `tabm-packed`: k independent MLPs ([`LayerKind::EnsembleLinear`]).
//!
//! The output layer is the package's `LinearEnsemble` (a weight `[k, in,
//! out]` per member) in all three. Training minimises the mean of the
//! members' losses (the loss over `k · rows` rows, each row's target
//! repeated); prediction is the mean of the members' probabilities
//! (classification) or outputs (regression): [`EnsembleMean`].

use super::{LayerKind, Mlp, fill_normal, fill_uniform};
use crate::activation::Activation;
use crate::embedding::{Embedding, EmbeddingKind};
use crate::error::{Error, Result};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Bernoulli, Distribution};
use std::ops::Range;

/// Which of the `tabm` package's architectures (its `arch_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TabmArch {
    /// `tabm`: BatchEnsemble layers.
    #[default]
    Tabm,
    /// `tabm-mini`: one scaling per member before a shared MLP.
    Mini,
    /// `tabm-packed`: k independent MLPs.
    Packed,
}

impl std::fmt::Display for TabmArch {
    /// The package's names, which `FromStr` reads.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TabmArch::Tabm => "tabm",
            TabmArch::Mini => "tabm-mini",
            TabmArch::Packed => "tabm-packed",
        })
    }
}

impl std::str::FromStr for TabmArch {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "tabm" => Ok(TabmArch::Tabm),
            "tabm-mini" | "mini" => Ok(TabmArch::Mini),
            "tabm-packed" | "packed" => Ok(TabmArch::Packed),
            other => Err(format!(
                "unknown TabM architecture `{other}` (expected tabm, tabm-mini or tabm-packed)"
            )),
        }
    }
}

/// How the members' outputs make the ensemble's: the loss decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EnsembleMean {
    /// The mean of the members' softmax probabilities (cross-entropy),
    /// given out as its logarithm, so that a softmax of it is the mean.
    #[default]
    Probabilities,
    /// The mean of the members' sigmoids (binary cross-entropy), given out
    /// as its logit.
    Sigmoid,
    /// The mean of the members' outputs (regression).
    Values,
}

impl EnsembleMean {
    /// The mean a loss's predictions take: of probabilities for
    /// cross-entropy, of sigmoids for binary cross-entropy, of values for
    /// the squared errors.
    pub fn of(loss: crate::loss::Loss) -> EnsembleMean {
        use crate::loss::Loss;
        match loss {
            Loss::CrossEntropy => EnsembleMean::Probabilities,
            Loss::BceWithLogits => EnsembleMean::Sigmoid,
            Loss::Mse | Loss::HalfMse => EnsembleMean::Values,
        }
    }
}

/// How the first layer's per-member scaling starts (the package's
/// `start_scaling_init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScalingInit {
    /// ±1, each with probability ½ (the default without embeddings).
    #[default]
    RandomSigns,
    /// N(0, 1) (the default with embeddings).
    Normal,
}

/// A TabM ensemble over a plain network's layers.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tabm {
    /// The members, k.
    pub k: usize,
    /// The architecture.
    pub arch: TabmArch,
    /// How prediction averages the members.
    pub mean: EnsembleMean,
    /// The first scaling's start.
    pub start_scaling: ScalingInit,
    /// The input's features as column groups whose start scaling is drawn
    /// once a group (the package's `start_scaling_init_chunks`: a
    /// categorical feature's one-hot block, an embedded feature's
    /// values); empty: every column its own (with an embedding, each
    /// feature's values).
    pub chunks: Vec<usize>,
    /// The numerical features' embedding the members share, before them
    /// (`rtdl_num_embeddings`' periodic embeddings, PLR and PLR-lite).
    pub embedding: Option<Embedding>,
}

/// One tensor of a TabM network's `state_dict`: see [`Mlp::tabm_tensors`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TabmTensor {
    /// The `tabm` package's name.
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// Where it sits in the flat parameter vector.
    pub range: Range<usize>,
}

impl std::fmt::Display for Tabm {
    /// `32 members (tabm)`: what a resume that changed it names.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} members ({})", self.k, self.arch)
    }
}

/// How a dense layer of a TabM network holds its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerForm {
    /// `torch.nn.Linear`, shared by the members: W `[out, in]`, b `[out]`.
    Shared,
    /// BatchEnsemble: W `[out, in]` shared, r `[k, in]`, s `[k, out]`, b
    /// `[k, out]` (in that order).
    BatchEnsemble,
    /// One linear layer a member: W `[k, in, out]`, b `[k, out]`.
    PerMember,
}

impl Tabm {
    /// `k` members of the `tabm` architecture, their prediction by `mean`.
    pub fn new(k: usize, arch: TabmArch, mean: EnsembleMean) -> Tabm {
        Tabm {
            k,
            arch,
            mean,
            ..Tabm::default()
        }
    }

    /// The program's `--model`: `mlp` (no ensemble), `tabm` (32 members,
    /// the `tabm` architecture, as the package's default) or
    /// `tabm:k=8,arch=tabm-mini`.
    ///
    /// ```
    /// use retroprop::model::{Tabm, TabmArch};
    /// assert_eq!(Tabm::parse_model("mlp"), Ok(None));
    /// assert_eq!(Tabm::parse_model("tabm").unwrap().unwrap().k, 32);
    /// let mini = Tabm::parse_model("tabm:k=8,arch=tabm-mini").unwrap().unwrap();
    /// assert_eq!((mini.k, mini.arch), (8, TabmArch::Mini));
    /// assert!(Tabm::parse_model("tabm:k=0").is_err());
    /// ```
    pub fn parse_model(text: &str) -> std::result::Result<Option<Tabm>, String> {
        let (name, options) = text.trim().split_once(':').unwrap_or((text.trim(), ""));
        match name {
            "mlp" if options.is_empty() => return Ok(None),
            "tabm" => {}
            _ => {
                return Err(format!(
                    "unknown model `{text}` (expected mlp, tabm or tabm:k=K,arch=tabm|tabm-mini|tabm-packed)"
                ));
            }
        }
        let mut spec = Tabm::new(32, TabmArch::Tabm, EnsembleMean::default());
        for option in options.split(',').filter(|o| !o.trim().is_empty()) {
            match option.split_once('=').map(|(k, v)| (k.trim(), v.trim())) {
                Some(("k", k)) => {
                    spec.k = k
                        .parse()
                        .ok()
                        .filter(|&k| k > 0)
                        .ok_or_else(|| format!("tabm's k `{k}` is not a count of at least 1"))?
                }
                Some(("arch", arch)) => spec.arch = arch.parse()?,
                _ => {
                    return Err(format!("tabm's option `{option}` is not k=K or arch=ARCH"));
                }
            }
        }
        Ok(Some(spec))
    }

    /// The form of dense layer `l` of `layers`.
    fn form(&self, l: usize, layers: usize) -> LayerForm {
        match self.arch {
            _ if l + 1 == layers => LayerForm::PerMember,
            TabmArch::Tabm => LayerForm::BatchEnsemble,
            TabmArch::Mini => LayerForm::Shared,
            TabmArch::Packed => LayerForm::PerMember,
        }
    }
}

impl Mlp {
    /// The TabM ensemble of `spec` over `plain`'s layers: its sizes and
    /// hidden activations are each member's MLP (the package's `n_blocks`
    /// hidden layers of `d_block`), its output layer the members' own.
    ///
    /// ```
    /// use retroprop::{Activation, Mlp};
    /// use retroprop::model::{EnsembleMean, Tabm, TabmArch};
    /// let plain = Mlp::new(&[5, 8, 8, 2], Activation::Relu, Activation::Identity)?;
    /// let net = Mlp::tabm(&plain, Tabm::new(4, TabmArch::Tabm, EnsembleMean::Probabilities))?;
    /// // Per block: W 8×in shared, r, s and bias of each of the 4 members;
    /// // the output: W 4×8×2 and b 4×2.
    /// assert_eq!(net.parameter_count(), (8 * 5 + 4 * (5 + 8 + 8)) + (8 * 8 + 4 * 24) + (4 * 16 + 8));
    /// assert_eq!(net.members(), 4);
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Setting`] (`k`) for no members, or chunks that do not
    /// cover the inputs; a network whose output layer has an activation.
    pub fn tabm(plain: &Mlp, spec: Tabm) -> Result<Mlp> {
        let (spec, plain) = embedded(spec, plain)?;
        let plain = &plain;
        check_spec(plain, &spec)?;
        let layers = plain.layers.len();
        let mut kinds = Vec::new();
        if spec.embedding.is_some() {
            kinds.push(LayerKind::Embed);
        }
        kinds.push(LayerKind::EnsembleView);
        if spec.arch == TabmArch::Mini {
            kinds.push(LayerKind::Scale);
        }
        let mut offsets = vec![0usize];
        for (l, layer) in plain.layers.iter().enumerate() {
            let form = spec.form(l, layers);
            kinds.push(match form {
                LayerForm::Shared => LayerKind::Dense(l),
                LayerForm::BatchEnsemble => LayerKind::EnsembleDense(l),
                LayerForm::PerMember => LayerKind::EnsembleLinear(l),
            });
            let count = layer_parameters(form, spec.k, layer.inputs, layer.outputs)
                .and_then(|n| n.checked_add(offsets[l]))
                .filter(|&n| n <= isize::MAX as usize / std::mem::size_of::<f32>());
            let Some(end) = count else {
                return Err(Error::TooLarge(format!(
                    "TabM with {} members: layer {l} takes the network past one allocation",
                    spec.k
                )));
            };
            offsets.push(end);
        }
        Ok(Mlp {
            layers: plain.layers.clone(),
            offsets,
            kinds,
            norms: Vec::new(),
            residual: None,
            ensemble: Some(spec),
        })
    }

    /// The TabM ensemble this network is, if it is one.
    pub fn tabm_spec(&self) -> Option<&Tabm> {
        self.ensemble.as_ref()
    }

    /// The members whose rows a pass stacks: k for TabM, else 1.
    pub fn members(&self) -> usize {
        self.ensemble.as_ref().map_or(1, |e| e.k)
    }

    /// How dense layer `l` holds its parameters: [`LayerForm::Shared`]
    /// outside TabM.
    pub fn layer_form(&self, l: usize) -> LayerForm {
        match &self.ensemble {
            None => LayerForm::Shared,
            Some(spec) => spec.form(l, self.layers.len()),
        }
    }

    /// Where a BatchEnsemble layer's r and s sit (between its W and its
    /// bias).
    pub fn scaling_ranges(&self, l: usize) -> (Range<usize>, Range<usize>) {
        let k = self.members();
        let start = self.weight_range(l).end;
        let (inputs, outputs) = (self.layers[l].inputs, self.layers[l].outputs);
        let r = start..start + k * inputs;
        (r.clone(), r.end..r.end + k * outputs)
    }

    /// Where `tabm-mini`'s scaling `[k, width]` sits (the width the
    /// first layer takes): after every dense layer's parameters.
    pub fn affine_range(&self) -> Option<Range<usize>> {
        let spec = self.ensemble.as_ref()?;
        let start = self.offsets[self.layers.len()];
        let width = self.layers[0].inputs;
        (spec.arch == TabmArch::Mini).then(|| start..start + spec.k * width)
    }

    /// The embedding TabM's members share, if it has one.
    pub fn tabm_embedding(&self) -> Option<&Embedding> {
        self.ensemble.as_ref()?.embedding.as_ref()
    }

    /// Where the embedding's parameters sit: after the rest.
    pub fn embedding_range(&self) -> Option<Range<usize>> {
        let embedding = self.tabm_embedding()?;
        let start = self.offsets[self.layers.len()] + self.affine_range().map_or(0, |r| r.len());
        Some(start..start + embedding.parameter_count())
    }

    /// The network's tensors as the `tabm` package's `TabM.make` names
    /// them in its `state_dict`, in that order, with their shapes and
    /// where each sits in the flat parameter vector (laid out as torch's
    /// contiguous tensors). Empty for a network that is not TabM.
    ///
    /// ```
    /// use retroprop::{Activation, Mlp};
    /// use retroprop::model::{EnsembleMean, Tabm, TabmArch};
    /// let plain = Mlp::new(&[3, 8, 2], Activation::Relu, Activation::Identity)?;
    /// let net = Mlp::tabm(&plain, Tabm::new(4, TabmArch::Mini, EnsembleMean::Probabilities))?;
    /// let names: Vec<String> = net.tabm_tensors().into_iter().map(|t| t.name).collect();
    /// assert_eq!(names, ["backbone.blocks.0.0.weight", "backbone.blocks.0.0.bias",
    ///     "backbone.affine.weight", "output.weight", "output.bias"]);
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    pub fn tabm_tensors(&self) -> Vec<TabmTensor> {
        let Some(spec) = &self.ensemble else {
            return Vec::new();
        };
        let k = spec.k;
        let last = self.layers.len() - 1;
        let mut tensors = Vec::new();
        for (l, layer) in self.layers.iter().enumerate() {
            let prefix = if l == last {
                "output".to_string()
            } else {
                format!("backbone.blocks.{l}.0")
            };
            let (inputs, outputs) = (layer.inputs, layer.outputs);
            let mut push = |name: &str, shape: Vec<usize>, range: Range<usize>| {
                tensors.push(TabmTensor {
                    name: format!("{prefix}.{name}"),
                    shape,
                    range,
                })
            };
            let (weight, bias) = (self.weight_range(l), self.bias_range(l));
            match self.layer_form(l) {
                LayerForm::Shared => {
                    push("weight", vec![outputs, inputs], weight);
                    push("bias", vec![outputs], bias);
                }
                LayerForm::BatchEnsemble => {
                    let (r, s) = self.scaling_ranges(l);
                    push("weight", vec![outputs, inputs], weight);
                    push("r", vec![k, inputs], r);
                    push("s", vec![k, outputs], s);
                    push("bias", vec![k, outputs], bias);
                }
                LayerForm::PerMember => {
                    push("weight", vec![k, inputs, outputs], weight);
                    push("bias", vec![k, outputs], bias);
                }
            }
            if l + 1 == last
                && let Some(affine) = self.affine_range()
            {
                tensors.push(TabmTensor {
                    name: "backbone.affine.weight".into(),
                    shape: vec![k, self.layers[0].inputs],
                    range: affine,
                });
            }
        }
        if let (Some(embedding), Some(range)) = (&spec.embedding, self.embedding_range()) {
            let mut embedded: Vec<TabmTensor> = (embedding.tensors().into_iter())
                .zip(embedding.parameter_ranges())
                .map(|(tensor, (_, at))| TabmTensor {
                    name: format!("num_module.{}", tensor.name),
                    shape: tensor.shape,
                    range: range.start + at.start..range.start + at.end,
                })
                .collect();
            embedded.append(&mut tensors);
            return embedded;
        }
        tensors
    }

    /// Values of layer `l`'s weight, by its form.
    pub(super) fn weight_len(&self, l: usize) -> usize {
        let layer = self.layers[l];
        match self.layer_form(l) {
            LayerForm::PerMember => self.members() * layer.inputs * layer.outputs,
            _ => layer.inputs * layer.outputs,
        }
    }

    /// Values of layer `l`'s bias, by its form.
    pub(super) fn bias_len(&self, l: usize) -> usize {
        match self.layer_form(l) {
            LayerForm::Shared => self.layers[l].outputs,
            _ => self.members() * self.layers[l].outputs,
        }
    }

    /// TabM's parameters past its dense layers' (`tabm-mini`'s scaling).
    pub(super) fn ensemble_extra(&self) -> usize {
        self.affine_range().map_or(0, |r| r.len()) + self.embedding_range().map_or(0, |r| r.len())
    }

    /// The network in a line, for TabM: `TabM k=32 (tabm) 10,512,512,2`.
    pub(super) fn describe_tabm(&self, sizes: &str) -> Option<String> {
        let spec = self.ensemble.as_ref()?;
        Some(format!("TabM k={} ({}) {sizes}", spec.k, spec.arch))
    }

    /// The `tabm` package's start: each layer's W and the output's b
    /// U(±1/√in); a BatchEnsemble layer's bias one U(±1/√in) row every
    /// member starts from, its s ones, its r ones but the first layer's,
    /// which is the start scaling (drawn once a chunk); `tabm-mini`'s
    /// scaling the same; a shared layer torch's `nn.Linear`.
    pub(super) fn init_tabm(&self, rng: &mut ChaCha8Rng, params: &mut [f32]) {
        let Some(spec) = &self.ensemble else { return };
        for (l, layer) in self.layers.iter().enumerate() {
            let bound = 1.0 / (layer.inputs as f64).sqrt();
            fill_uniform(&mut params[self.weight_range(l)], bound, rng);
            let bias = self.bias_range(l);
            match self.layer_form(l) {
                LayerForm::BatchEnsemble => {
                    let (r, s) = self.scaling_ranges(l);
                    if l == 0 {
                        start_scaling(spec, &mut params[r], layer.inputs, rng);
                    } else {
                        params[r].fill(1.0);
                    }
                    params[s].fill(1.0);
                    let mut row = vec![0.0; layer.outputs];
                    fill_uniform(&mut row, bound, rng);
                    for member in params[bias].chunks_exact_mut(layer.outputs) {
                        member.copy_from_slice(&row);
                    }
                }
                LayerForm::Shared | LayerForm::PerMember => {
                    fill_uniform(&mut params[bias], bound, rng)
                }
            }
        }
        if let Some(affine) = self.affine_range() {
            start_scaling(spec, &mut params[affine], self.layers[0].inputs, rng);
        }
        if let (Some(embedding), Some(range)) = (&spec.embedding, self.embedding_range()) {
            params[range].copy_from_slice(&embedding.init::<f32, _>(rng));
        }
    }
}

/// The first scaling `[k, inputs]`: a draw a chunk of columns a member.
fn start_scaling(spec: &Tabm, values: &mut [f32], inputs: usize, rng: &mut ChaCha8Rng) {
    let ones = vec![1; inputs];
    let chunks = if spec.chunks.is_empty() {
        &ones
    } else {
        &spec.chunks
    };
    for member in values.chunks_exact_mut(inputs) {
        let mut start = 0;
        for &chunk in chunks {
            let value = match spec.start_scaling {
                ScalingInit::RandomSigns => {
                    let heads = Bernoulli::new(0.5).expect("½ is a probability");
                    if heads.sample(rng) { 1.0 } else { -1.0 }
                }
                ScalingInit::Normal => {
                    let mut one = [0.0];
                    fill_normal(&mut one, 1.0, rng);
                    one[0]
                }
            };
            member[start..start + chunk].fill(value);
            start += chunk;
        }
    }
}

/// `spec` and `plain` with the embedding in place: `plain` takes the
/// features raw (its first size is the features'), its first layer the
/// embedding's values; the start scaling's chunks are each feature's
/// values.
fn embedded(mut spec: Tabm, plain: &Mlp) -> Result<(Tabm, Mlp)> {
    let Some(embedding) = &spec.embedding else {
        return Ok((spec, plain.clone()));
    };
    if let EmbeddingKind::PiecewiseLinear(_) = embedding.kind() {
        return Err(Error::Setting {
            setting: "num_embeddings",
            message: "piecewise-linear embeddings in TabM are not built yet (their passes are, src/cpu/embedding.rs); use periodic".into(),
        });
    }
    if embedding.n_features() != plain.inputs() {
        return Err(Error::Setting {
            setting: "num_embeddings",
            message: format!(
                "the embedding takes {} features, the network {}",
                embedding.n_features(),
                plain.inputs()
            ),
        });
    }
    let mut layers = plain.layers.clone();
    layers[0].inputs = embedding.output_width();
    if spec.chunks.is_empty() {
        spec.chunks = vec![embedding.d_embedding(); embedding.n_features()];
    }
    Ok((spec, Mlp::from_layers(layers)?))
}

/// Values a dense layer of `form` holds, `None` past `usize`.
fn layer_parameters(form: LayerForm, k: usize, inputs: usize, outputs: usize) -> Option<usize> {
    let weight = inputs.checked_mul(outputs)?;
    match form {
        LayerForm::Shared => weight.checked_add(outputs),
        LayerForm::BatchEnsemble => {
            let member = inputs.checked_add(outputs.checked_mul(2)?)?;
            weight.checked_add(k.checked_mul(member)?)
        }
        LayerForm::PerMember => k.checked_mul(weight.checked_add(outputs)?),
    }
}

/// What a TabM ensemble needs of its plain network and settings.
fn check_spec(plain: &Mlp, spec: &Tabm) -> Result<()> {
    if spec.k == 0 {
        return Err(Error::Setting {
            setting: "k",
            message: "TabM needs at least one member, got 0".into(),
        });
    }
    if !plain.is_plain() {
        return Err(Error::Config(
            "TabM is built over a plain network (sizes and activations), not a residual one".into(),
        ));
    }
    if plain.layers.len() < 2 {
        return Err(Error::Setting {
            setting: "n_blocks",
            message: format!(
                "TabM needs at least one block (a hidden layer) before its output layer, got sizes {:?}",
                plain.sizes()
            ),
        });
    }
    let covered: usize = spec.chunks.iter().sum();
    if !spec.chunks.is_empty() && (covered != plain.inputs() || spec.chunks.contains(&0)) {
        return Err(Error::Setting {
            setting: "chunks",
            message: format!(
                "the start scaling's chunks {:?} must be positive and cover the {} inputs",
                spec.chunks,
                plain.inputs()
            ),
        });
    }
    let output = plain.layers[plain.layers.len() - 1].activation;
    if output != Activation::Identity {
        return Err(Error::Setting {
            setting: "activations",
            message: format!(
                "TabM's output layer has no activation (the loss applies it), got {output}"
            ),
        });
    }
    Ok(())
}
