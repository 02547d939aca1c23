//! The members of a run on the GPU, every member's step in the same
//! dispatches: the member is the dispatches' z (products, bias gradients,
//! norms) or part of their flat index (the batch gather, the loss, the
//! optimizer), and each member's buffers sit one after another in one
//! buffer, a fixed stride apart. A members run's per-step, per-member
//! scalars ([`MemberStep`]: the member's valid rows, whether it updates,
//! its t, dropout, the loss's scale, learning rate and optimizer numbers)
//! are written for a whole window of steps before it is submitted.
//!
//! Members share the network, the loss, the optimizer's kind and the
//! batch size; each trains on its own order of its own rows (a member
//! whose epoch has fewer steps waits, masked, for the others), with its
//! own weights, seed, dropout and optimizer numbers: member m computes
//! what a lone GPU run with its settings computes, within the CPU parity
//! tolerance (the products are the same kernels; a member's last batch
//! is padded with zero rows of weight 0, which add nothing).
//!
//! The subset a members run needs of the lone backend: f32, the storage
//! buffer kernels (`matmul` on GPUs, `matmul_direct` on CPU adapters),
//! the data resident, a batch in one pass and every member's parameters
//! in one binding. What does not fit is refused ([`GpuMembers::new`]),
//! and `train::Members` then trains lone GPU runs side by side instead.

use super::context::GpuContext;
use super::pipelines::{NORM_GROUPS, entry};
use super::resources::{ParamLayout, storage, storage_init};
use super::tiling::MatmulTiling;
use super::uniforms::StepUniform;
use crate::backend::BackendConfig;
use crate::data::{Dataset, Targets};
use crate::dropout::{Dropout, mask_seed};
use crate::error::{Error, Result};
use crate::loss::Loss;
use crate::model::Mlp;
use crate::optim::UpdateRule;
use crate::stop::StopFlag;
use bytemuck::{Pod, Zeroable};

mod evaluate;
mod passes;
mod train;
mod view;

pub use view::{MemberView, lock};

use passes::Pipelines;

/// Steps recorded into one submission.
const WINDOW: usize = 64;

/// Parameters a member's stride is a multiple of: 256 quads, so that an
/// optimizer workgroup updates one member only.
const MEMBER_ALIGN: u64 = 1024;

/// A member's scalars at one step, read by the kernels as six `vec4<u32>`
/// (`MEMBER_STEP_VEC4S` in shaders/common.wgsl says which is which).
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct MemberStep {
    pub rows: u32,
    pub active: u32,
    pub t: u32,
    pub dropout_threshold: u32,
    pub dropout_scale: f32,
    pub dropout_seed: u32,
    pub inv_norm: f32,
    pub lr: f32,
    pub step_size: f32,
    pub bias_correction2_sqrt: f32,
    pub adagrad_lr: f32,
    pub decay: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub alpha: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub clip_norm: f32,
    pub clip_value: f32,
    pub _pad: [u32; 3],
}

/// What a member trains on in one call of [`GpuMembers::train`]: its
/// rows in order (those its epoch has left), at most `max_steps` steps,
/// at `lr`.
#[derive(Debug, Clone, Copy)]
pub struct MemberPlan<'a> {
    pub member: usize,
    pub order: &'a [u32],
    pub max_steps: u64,
    pub lr: f64,
}

/// Each member's own: its optimizer rule, dropout and its steps so far.
#[derive(Debug, Clone)]
struct Own {
    config: BackendConfig,
    rule: UpdateRule,
    dropout: Option<Dropout>,
    seed: u32,
    t: u64,
}

/// The training data as resident buffers, with each member's weights.
struct Resident {
    x: wgpu::Buffer,
    targets: wgpu::Buffer,
    weights: wgpu::Buffer,
    rows: usize,
    weighted: bool,
    /// Each member's weights on the host (for the loss's divisor).
    host_weights: Vec<Option<Vec<f32>>>,
    /// The data set's version (see `Dataset::version`), weights included.
    versions: Vec<u64>,
}

/// Stand-ins for the bindings a kernel does not use, one for each that may
/// sit in one dispatch (a buffer read and written there conflicts).
struct Unused {
    read: wgpu::Buffer,
    write: wgpu::Buffer,
    partials: wgpu::Buffer,
    states: [wgpu::Buffer; 3],
}

/// Every member of a run on one GPU (see the [module](self)).
/// The last evaluation of every member, kept while the data set (its
/// version) and the parameters (their generation) stay the same.
struct Evaluated {
    version: u64,
    generation: u64,
    results: Vec<(f64, Option<usize>)>,
}

pub struct GpuMembers {
    ctx: GpuContext,
    mlp: Mlp,
    loss: Loss,
    tiling: MatmulTiling,
    pipes: Pipelines,
    layout: ParamLayout,
    /// Floats from one member's parameters to the next's.
    stride: u64,
    members: Vec<Own>,
    /// Rows a pass holds (the batch size).
    rows: usize,
    slots: usize,
    params: wgpu::Buffer,
    grads: wgpu::Buffer,
    state: wgpu::Buffer,
    state_slots: usize,
    /// The parameters and state at a window's start: a member that
    /// diverges in the window is put back to them.
    params_before: wgpu::Buffer,
    state_before: wgpu::Buffer,
    x_batch: wgpu::Buffer,
    y_batch: wgpu::Buffer,
    w_batch: wgpu::Buffer,
    z: Vec<wgpu::Buffer>,
    a: Vec<wgpu::Buffer>,
    dz: Vec<wgpu::Buffer>,
    member_steps: wgpu::Buffer,
    steps: wgpu::Buffer,
    step_stride: u64,
    results: wgpu::Buffer,
    norm_results: wgpu::Buffer,
    clip: wgpu::Buffer,
    unused: Unused,
    resident: Option<Resident>,
    /// The last evaluation of every member: the data set's version, the
    /// parameters' generation, the results (each member's trainer asks for
    /// its own, one after another, after the same steps).
    evaluated: Option<Evaluated>,
    /// Counts changes of the parameters (steps, `set_parameters`).
    generation: u64,
    stop_flag: Option<StopFlag>,
    norms_every: Option<u64>,
    clip_norm: bool,
}

impl GpuMembers {
    /// A members run of `mlp` on the best adapter (with `hardware_only`,
    /// a hardware GPU's: device `auto`; else any, software included:
    /// device `gpu`), member m starting from `params[m]` with
    /// `configs[m]`, for batches of `batch_rows` rows.
    ///
    /// # Errors
    /// What the lone GPU backend refuses (no adapter), and what a members
    /// run does not hold: mixed precision, a batch or every member's
    /// parameters past one binding ([`Error::TooLarge`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(
        mlp: &Mlp,
        params: &[Vec<f32>],
        configs: &[BackendConfig],
        batch_rows: usize,
        hardware_only: bool,
    ) -> Result<GpuMembers> {
        mlp.require_plain("the GPU members engine")?;
        let ctx = GpuContext::open(hardware_only)?;
        GpuMembers::on_context(ctx, mlp, params, configs, batch_rows)
    }

    fn on_context(
        ctx: GpuContext,
        mlp: &Mlp,
        params: &[Vec<f32>],
        configs: &[BackendConfig],
        batch_rows: usize,
    ) -> Result<GpuMembers> {
        let first = configs
            .first()
            .ok_or_else(|| Error::Empty {
                what: "the members of the run".into(),
            })?
            .clone();
        if first.precision != crate::real::Precision::F32 {
            return Err(Error::Config(
                "members on the GPU train in f32 only (--precision mixed is a lone run's)".into(),
            ));
        }
        let hidden = mlp.layers().len().saturating_sub(1);
        let uneven = configs
            .iter()
            .any(|c| (0..hidden).any(|l| c.dropout_of(l) != c.dropout_of(0)));
        if uneven {
            return Err(Error::Config(
                "members on the GPU drop out at one rate over their hidden layers".into(),
            ));
        }
        let k = configs.len();
        let device = &ctx.device;
        let layout = ParamLayout::new(mlp, ctx.limits.min_storage_buffer_offset_alignment);
        let stride = layout.len.next_multiple_of(MEMBER_ALIGN);
        let rows = batch_rows.max(1);
        let widest = mlp
            .layers()
            .iter()
            .map(|l| l.outputs.max(l.inputs))
            .max()
            .unwrap_or(1);
        let limit = ctx.limits.max_storage_buffer_binding_size / 4;
        let slots_of_state = first.optimizer.state_slots();
        for (what, floats) in [
            ("every member's parameters", k as u64 * stride),
            (
                "a layer's activations of every member",
                (k * rows * widest) as u64,
            ),
        ] {
            if floats > limit {
                return Err(Error::TooLarge(format!(
                    "{what} ({} bytes) exceed one binding of the device ({} bytes): train fewer \
                     members or smaller batches at once",
                    floats * 4,
                    limit * 4
                )));
            }
        }
        let tiling = if ctx.summary().is_hardware {
            MatmulTiling::shared()
        } else {
            MatmulTiling::direct()
        };
        let pipes = Pipelines::new(device, &tiling);
        let mut padded = Vec::with_capacity(k * stride as usize);
        let mut state = vec![0f32; slots_of_state * k * stride as usize];
        for (m, (p, config)) in params.iter().zip(configs).enumerate() {
            let mut own = layout.pack(mlp, p);
            own.resize(stride as usize, 0.0);
            padded.extend(own);
            let init = config.optimizer.initial_state() as f32;
            for slot in 0..slots_of_state {
                let at = (slot * k + m) * stride as usize;
                state[at..at + layout.len as usize].fill(init);
            }
        }
        let members = configs
            .iter()
            .map(|config| Own {
                rule: config.optimizer.rule(),
                dropout: Dropout::new(config.dropout.iter().copied().fold(0.0, f32::max)),
                seed: mask_seed(config.seed),
                config: config.clone(),
                t: 0,
            })
            .collect();
        let slots = WINDOW;
        let step_stride = (std::mem::size_of::<StepUniform>() as u64)
            .next_multiple_of(ctx.limits.min_uniform_buffer_offset_alignment as u64);
        let steps = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("member run steps"),
            size: step_stride * slots as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let act = |label| {
            mlp.layers()
                .iter()
                .map(|l| storage(device, label, (k * rows * l.outputs) as u64))
                .collect::<Vec<_>>()
        };
        let layers = mlp.layers().len();
        Ok(GpuMembers {
            params: storage_init(device, "member params", &padded),
            grads: storage(device, "member grads", k as u64 * stride),
            state: storage_init(device, "member state", &state),
            state_slots: slots_of_state,
            params_before: storage(device, "member params before", k as u64 * stride),
            state_before: storage(
                device,
                "member state before",
                (slots_of_state as u64 * k as u64 * stride).max(1),
            ),
            x_batch: storage(device, "member x batch", (k * rows * mlp.inputs()) as u64),
            y_batch: storage(device, "member y batch", (k * rows * mlp.outputs()) as u64),
            w_batch: storage(device, "member weights batch", (k * rows) as u64),
            z: act("member z"),
            a: act("member a"),
            dz: act("member dz"),
            member_steps: storage(
                device,
                "member steps",
                (slots * k * std::mem::size_of::<MemberStep>() / 4) as u64,
            ),
            steps,
            step_stride,
            results: storage(device, "member results", (slots * k * 2) as u64),
            norm_results: storage(device, "member norms", (slots * k * layers * 2) as u64),
            clip: storage(
                device,
                "member clip partials",
                k as u64 * NORM_GROUPS as u64,
            ),
            unused: Unused {
                read: storage(device, "unused read", 4),
                write: storage(device, "unused write", 4),
                partials: storage(device, "unused partials", 4),
                states: [0, 1, 2].map(|_| storage(device, "unused state", 4)),
            },
            resident: None,
            evaluated: None,
            generation: 0,
            stop_flag: first.stop_flag.clone(),
            norms_every: first.norms_every,
            clip_norm: first.grad_clip.max_norm.is_some(),
            layout,
            stride,
            members,
            rows,
            slots,
            mlp: mlp.clone(),
            loss: first.loss,
            tiling,
            pipes,
            ctx,
        })
    }

    /// The device in words.
    pub fn name(&self) -> String {
        let s = self.ctx.summary();
        format!(
            "gpu: {} ({}), {} members",
            s.name,
            s.backend,
            self.members.len()
        )
    }

    /// Rows a step of a member takes (the run's batch size).
    pub fn batch_rows(&self) -> usize {
        self.rows
    }

    /// Bytes of device memory its buffers hold.
    pub fn memory_bytes(&self) -> u64 {
        let k = self.members.len() as u64;
        let floats = k * self.stride * (3 + 2 * self.state_slots as u64)
            + self
                .mlp
                .layers()
                .iter()
                .map(|l| 3 * k * (self.rows * l.outputs) as u64)
                .sum::<u64>();
        floats * 4
    }

    /// How many members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there is no member (never: [`new`](Self::new) refuses none).
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Member `m`'s parameters.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn parameters(&self, m: usize) -> Result<Vec<f32>> {
        let bytes = pollster::block_on(self.ctx.read_async(
            &self.params,
            m as u64 * self.stride * 4,
            self.layout.len * 4,
        ))?;
        Ok(self.layout.unpack(&self.mlp, bytemuck::cast_slice(&bytes)))
    }

    /// Replaces member `m`'s parameters.
    pub fn set_parameters(&mut self, m: usize, params: &[f32]) -> Result<()> {
        crate::backend::checks::length(
            "parameters of the network",
            self.mlp.parameter_count(),
            params.len(),
        )?;
        let padded = self.layout.pack(&self.mlp, params);
        self.generation += 1;
        self.ctx.queue.write_buffer(
            &self.params,
            m as u64 * self.stride * 4,
            bytemuck::cast_slice(&padded),
        );
        self.ctx.check()
    }

    /// Member `m`'s optimizer state (slot-major over its parameters) and t.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn optimizer_state(&self, m: usize) -> Result<(Vec<f32>, u64)> {
        let k = self.members.len() as u64;
        let mut state = Vec::new();
        for slot in 0..self.state_slots as u64 {
            let at = ((slot * k + m as u64) * self.stride) * 4;
            let bytes =
                pollster::block_on(self.ctx.read_async(&self.state, at, self.layout.len * 4))?;
            state.extend(self.layout.unpack(&self.mlp, bytemuck::cast_slice(&bytes)));
        }
        Ok((state, self.members[m].t))
    }

    /// Replaces member `m`'s optimizer state and t.
    pub fn set_optimizer_state(&mut self, m: usize, state: &[f32], t: u64) -> Result<()> {
        let n = self.mlp.parameter_count();
        crate::backend::checks::length("optimizer state", self.state_slots * n, state.len())?;
        let k = self.members.len() as u64;
        for (slot, values) in state.chunks_exact(n.max(1)).enumerate() {
            let padded = self.layout.pack(&self.mlp, values);
            let at = ((slot as u64 * k + m as u64) * self.stride) * 4;
            self.ctx
                .queue
                .write_buffer(&self.state, at, bytemuck::cast_slice(&padded));
        }
        self.members[m].t = t;
        self.ctx.check()
    }

    /// Makes `sets[m]` member m's training data (the same rows and
    /// targets for every member, each with its weights or none); uploads
    /// only what changed.
    pub fn upload(&mut self, sets: &[&Dataset]) -> Result<()> {
        let versions: Vec<u64> = sets.iter().map(|d| d.version()).collect();
        if self
            .resident
            .as_ref()
            .is_some_and(|r| r.versions == versions)
        {
            return Ok(());
        }
        let data = sets[0];
        let device = &self.ctx.device;
        let words: Vec<u32> = match data.targets() {
            Targets::Classes(labels) => labels.clone(),
            Targets::Values { values, .. } => values.iter().map(|v| v.to_bits()).collect(),
        };
        let weighted = sets.iter().any(|d| d.weights().is_some());
        let weights: Vec<f32> = if weighted {
            sets.iter()
                .flat_map(|d| match d.weights() {
                    Some(w) => w.to_vec(),
                    None => vec![1.0; data.rows()],
                })
                .collect()
        } else {
            vec![0.0]
        };
        self.resident = Some(Resident {
            x: storage_init(device, "member data x", data.x()),
            targets: storage_init(device, "member data targets", &words),
            weights: storage_init(device, "member data weights", &weights),
            rows: data.rows(),
            weighted,
            host_weights: sets
                .iter()
                .map(|d| d.weights().map(<[f32]>::to_vec))
                .collect(),
            versions,
        });
        self.ctx.check()
    }
}

/// What a recorded step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A training step (`sample`: it samples the layer norms).
    Train { sample: bool },
    /// The forward pass and the loss.
    Evaluate,
    /// The forward pass.
    Predict,
}

/// A binding of all of `buffer`.
fn whole(binding: u32, buffer: &wgpu::Buffer) -> wgpu::BindGroupEntry<'_> {
    entry(binding, buffer, 0, None)
}

/// A binding of `buffer` from float `floats` on.
fn at(binding: u32, buffer: &wgpu::Buffer, floats: u64) -> wgpu::BindGroupEntry<'_> {
    entry(binding, buffer, floats * 4, None)
}
