//! The uniform structs the shaders read, each `#[repr(C)]` and `Pod` and
//! named, field for field, as the WGSL struct it is the twin of (a test
//! below reads the shaders with naga and compares them), and
//! the packing of many of them into one buffer at the device's alignment.

use super::dispatch::reduction_chunks;
use bytemuck::{Pod, Zeroable};
use wgpu::util::DeviceExt;

/// The twin of `MatmulShape` in shaders/matmul.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct MatmulShape {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub activation: u32,
    pub slope: f32,
    /// Where in K this dispatch's reduction starts (`dispatch::reduction_chunks`).
    pub k_start: u32,
    pub dropout_threshold: u32,
    pub dropout_scale: f32,
    pub dropout_seed: u32,
    pub dropout_layer: u32,
    pub row_offset: u32,
    /// Where in K it ends: `k` for the last chunk, which applies the epilogue.
    pub k_end: u32,
    /// Split-K: the slices of each chunk's range of K summed in parallel
    /// (1 or 0: not split), each `slice_k` long (`dispatch::split_layout`).
    pub slices: u32,
    pub slice_k: u32,
    /// 1: B has an extra column of ones whose output, the bias gradient,
    /// goes to the `out2` binding (weight gradients, workgroup-memory kernel).
    pub bias_grad: u32,
    /// TabM: the rows of a member, whose dropout columns follow the
    /// members' before it (0: not TabM).
    pub ensemble_rows: u32,
    /// Members (`gpu::members`): how many the dispatch's z holds (0 or 1:
    /// a lone run), and each binding's distance in values from one
    /// member's data to the next (0: shared by every member).
    pub members: u32,
    pub member_a: u32,
    pub member_b: u32,
    pub member_c: u32,
    pub member_aux: u32,
    pub member_out2: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

impl MatmulShape {
    /// With `dropout` (of layer `layer`, masks from `seed`) in the epilogue.
    pub(crate) fn with_dropout(
        mut self,
        dropout: Option<crate::dropout::Dropout>,
        seed: u32,
        layer: usize,
    ) -> Self {
        if let Some(d) = dropout {
            self.dropout_threshold = d.threshold.max(1);
            self.dropout_scale = d.scale;
            self.dropout_seed = seed;
            self.dropout_layer = layer as u32;
        }
        self
    }
}

/// The twin of `ElementwiseShape` in shaders/elementwise.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct ElementwiseShape {
    pub rows: u32,
    pub width: u32,
    pub activation: u32,
    pub slope: f32,
}

/// The twin of `NormShape` in shaders/norm.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct NormShape {
    pub rows: u32,
    pub width: u32,
    /// Chunks of the column reductions' first pass (`sequence::CHUNK_ROWS` rows each).
    pub chunks: u32,
    /// 1: a training pass (BatchNorm by the batch, its running statistics move).
    pub train: u32,
    /// 1: dγ, dβ are added to those there (a step's later passes).
    pub accumulate: u32,
    pub eps: f32,
    pub momentum: f32,
    /// rows / (rows − 1), in f64 then rounded (the unbiased variance).
    pub unbiased: f32,
}

/// The twin of `ResidualShape` in shaders/residual.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct ResidualShape {
    pub rows: u32,
    pub width: u32,
    pub activation: u32,
    pub slope: f32,
    /// 1: the second operand is added.
    pub has_b: u32,
    pub dropout_threshold: u32,
    pub dropout_scale: f32,
    pub dropout_seed: u32,
    pub dropout_layer: u32,
    pub row_offset: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// The twin of `EnsembleShape` in shaders/ensemble.wgsl: TabM's steps
/// over `[members, rows, width]`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct EnsembleShape {
    pub members: u32,
    /// Rows a member (the pass's).
    pub rows: u32,
    pub width: u32,
    pub activation: u32,
    pub slope: f32,
    pub dropout_threshold: u32,
    pub dropout_scale: f32,
    pub dropout_seed: u32,
    pub dropout_layer: u32,
    pub row_offset: u32,
    /// 1: every member reads the one input (the view).
    pub shared_input: u32,
    /// 1: the second operand is read.
    pub has_b: u32,
    /// 1: the sums add to those there.
    pub accumulate: u32,
    /// The ensemble's mean (`codes::mean_code`).
    pub mean: u32,
    /// Where the scaling starts in `b` and the sums in `out`.
    pub b_offset: u32,
    pub out_offset: u32,
}

/// The twin of `LossShape` in shaders/loss.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct LossShape {
    pub rows: u32,
    pub width: u32,
    pub loss: u32,
    pub activation: u32,
    pub slope: f32,
    pub inv_norm: f32,
    /// Whether `loss_summed` adds to the step's result or writes it.
    pub accumulate: u32,
    /// Members (`loss_members`): how many; 0 for a lone run.
    pub members: u32,
    /// TabM: the targets' rows, which every member's block of `rows /
    /// target_rows` stacked rows reads again (0: one a row).
    pub target_rows: u32,
    pub _pad0: u32,
    pub _pad1: u32,
    pub _pad2: u32,
}

/// The twin of `ReduceShape` in shaders/reduce.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct ReduceShape {
    pub rows: u32,
    pub cols: u32,
    pub accumulate: u32,
    pub out_offset: u32,
    /// Members: how many (the dispatch's z; 0 for a lone run), and each
    /// member's distance in the input and the output from the one before.
    pub members: u32,
    pub input_stride: u32,
    pub out_stride: u32,
    pub _pad: u32,
}

/// The twin of `OptimizerUniform` in shaders/optimizer.wgsl: the
/// optimizer's `UpdateRule` (each field for the optimizers named beside
/// it; 0 for the others) and clipping. The scalars that change each step
/// are in `StepUniform`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct OptimizerUniform {
    /// Parameters, a multiple of 4.
    pub n: u32,
    /// `OPTIMIZER_SGD`, `_ADAM` (Adam and AdamW), `_RMSPROP`, `_ADAGRAD`.
    pub kind: u32,
    /// SGD.
    pub nesterov: u32,
    /// Adam and AdamW.
    pub amsgrad: u32,
    /// AdamW.
    pub decoupled: u32,
    /// RMSprop.
    pub centered: u32,
    /// SGD and RMSprop (0: none).
    pub momentum: f32,
    /// SGD.
    pub dampening: f32,
    /// Adam and AdamW.
    pub beta1: f32,
    pub beta2: f32,
    /// RMSprop.
    pub alpha: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// The largest global norm, 0 when off.
    pub clip_norm: f32,
    /// The largest |g|, 0 when off.
    pub clip_value: f32,
    /// The partial sums of g² the kernel adds up for the global norm.
    pub clip_partials: u32,
    /// Members (`update_members`): how many, and each member's quads of
    /// parameters; 0 for a lone run.
    pub members: u32,
    pub member_quads: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

impl OptimizerUniform {
    /// The rule over `n` padded parameters, with clipping (by the norm
    /// of `clip_partials` partial sums of g²).
    pub(crate) fn new(
        optimizer: &crate::optim::Optimizer,
        clip: &crate::optim::GradClip,
        n: u64,
        clip_partials: u32,
    ) -> Self {
        let rule = optimizer.rule();
        OptimizerUniform {
            n: n as u32,
            kind: rule.kind as u32,
            nesterov: rule.nesterov as u32,
            amsgrad: rule.amsgrad as u32,
            decoupled: rule.decoupled as u32,
            centered: rule.centered as u32,
            momentum: rule.momentum as f32,
            dampening: rule.dampening as f32,
            beta1: rule.beta1 as f32,
            beta2: rule.beta2 as f32,
            alpha: rule.alpha as f32,
            eps: rule.eps as f32,
            weight_decay: rule.weight_decay as f32,
            clip_norm: clip.max_norm.unwrap_or(0.0) as f32,
            clip_value: clip.max_value.unwrap_or(0.0) as f32,
            clip_partials,
            members: 0,
            member_quads: 0,
            _pad0: 0,
            _pad1: 0,
        }
    }
}

/// The twin of `PackShape` in shaders/pack.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct PackShape {
    pub rows: u32,
    pub cols: u32,
    pub padded_rows: u32,
    pub texels: u32,
}

/// The twin of `GatherShape` in shaders/data.wgsl.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct GatherShape {
    pub rows: u32,
    pub features: u32,
    pub target_width: u32,
    /// Rows into the batch where this pass starts (micro-batches).
    pub offset: u32,
    /// Members (`gather_members`): each member's order's length, the data
    /// set's rows, and whether rows are weighed (1) or not.
    pub order_stride: u32,
    pub data_rows: u32,
    pub weighted: u32,
    pub _pad: u32,
}

/// The twin of `StepUniform` in shaders/common.wgsl, which data.wgsl,
/// reduce.wgsl, matmul.wgsl and optimizer.wgsl bind: what
/// changes from one step to the next, written for a whole epoch at once
/// beside the permutation. The scalars torch computes in double precision
/// are computed here in f64, as the CPU backend does.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, Default)]
pub(crate) struct StepUniform {
    pub batch_start: u32,
    pub slot: u32,
    pub t: u32,
    pub _pad: u32,
    pub lr: f32,
    pub step_size: f32,
    pub bias_correction2_sqrt: f32,
    pub adagrad_lr: f32,
    pub decay: f32,
}

impl StepUniform {
    /// The parameters of optimizer step `t` (1-based) at learning rate `lr`.
    pub(crate) fn new(
        rule: &crate::optim::UpdateRule,
        t: u64,
        lr: f64,
        batch_start: u32,
        slot: u32,
    ) -> StepUniform {
        let s = crate::optim::UpdateRule { lr, ..*rule }.scalars(t);
        StepUniform {
            batch_start,
            slot,
            t: t.min(u32::MAX as u64) as u32,
            _pad: 0,
            lr: s.lr as f32,
            step_size: s.step_size as f32,
            bias_correction2_sqrt: s.bias_correction2_sqrt as f32,
            adagrad_lr: s.adagrad_lr as f32,
            decay: s.decay as f32,
        }
    }
}

/// The twin of `CeilingShape` in shaders/ceiling.wgsl (the kernel
/// harness's arithmetic ceiling, `gpu::ceiling`).
#[cfg(feature = "harness")]
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
pub(crate) struct CeilingShape {
    pub iterations: u32,
    pub m: f32,
    pub c: f32,
    pub _pad: u32,
}

/// Uniform blocks laid out at the device's uniform-offset alignment.
pub(crate) struct UniformBlocks {
    bytes: Vec<u8>,
    align: u64,
}

impl UniformBlocks {
    pub(crate) fn new(align: u64) -> Self {
        UniformBlocks {
            bytes: Vec::new(),
            align,
        }
    }
    /// Appends a block; returns its byte offset.
    pub(crate) fn push<T: Pod>(&mut self, value: &T) -> u64 {
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(bytemuck::bytes_of(value));
        self.bytes.resize(
            (self.bytes.len() as u64).next_multiple_of(self.align) as usize,
            0,
        );
        offset
    }
    /// Appends a product's shape once per chunk of its reduction
    /// (`dispatch::reduction_chunks`), each with its range of K; returns
    /// their byte offsets, in order.
    pub(crate) fn push_chunks(&mut self, shape: MatmulShape) -> Vec<u64> {
        reduction_chunks(shape.k as usize)
            .into_iter()
            .map(|(k_start, k_end)| {
                self.push(&MatmulShape {
                    k_start,
                    k_end,
                    ..shape
                })
            })
            .collect()
    }

    pub(crate) fn upload(&self, device: &wgpu::Device) -> wgpu::Buffer {
        device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("shapes"),
            contents: if self.bytes.is_empty() {
                &[0; 16]
            } else {
                &self.bytes
            },
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }
}

/// Each uniform struct against its WGSL twin, read by naga from the source
/// the pipelines compile: the same name, the same members in the same
/// order, at the same offsets and of the same sizes.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::gpu::shaders::module_source;
    use crate::gpu::tiling::MatmulTiling;
    use std::collections::BTreeMap;
    use wgpu::naga;

    /// A Rust uniform: its name, size, and (field, offset, size) in order.
    type Layout = (&'static str, usize, Vec<(&'static str, usize, usize)>);

    macro_rules! layout {
        ($t:ident { $($field:ident),* $(,)? }) => {{
            let zero = <$t as Zeroable>::zeroed();
            let fields = vec![$((
                stringify!($field),
                std::mem::offset_of!($t, $field),
                std::mem::size_of_val(&zero.$field),
            )),*];
            (stringify!($t), std::mem::size_of::<$t>(), fields) as Layout
        }};
    }

    fn rust_uniforms() -> Vec<Layout> {
        vec![
            #[cfg(feature = "harness")]
            layout!(CeilingShape {
                iterations,
                m,
                c,
                _pad
            }),
            layout!(MatmulShape {
                m,
                n,
                k,
                activation,
                slope,
                k_start,
                dropout_threshold,
                dropout_scale,
                dropout_seed,
                dropout_layer,
                row_offset,
                k_end,
                slices,
                slice_k,
                bias_grad,
                ensemble_rows,
                members,
                member_a,
                member_b,
                member_c,
                member_aux,
                member_out2,
                _pad1,
                _pad2,
            }),
            layout!(ElementwiseShape {
                rows,
                width,
                activation,
                slope
            }),
            layout!(NormShape {
                rows,
                width,
                chunks,
                train,
                accumulate,
                eps,
                momentum,
                unbiased
            }),
            layout!(ResidualShape {
                rows,
                width,
                activation,
                slope,
                has_b,
                dropout_threshold,
                dropout_scale,
                dropout_seed,
                dropout_layer,
                row_offset,
                _pad0,
                _pad1
            }),
            layout!(EnsembleShape {
                members,
                rows,
                width,
                activation,
                slope,
                dropout_threshold,
                dropout_scale,
                dropout_seed,
                dropout_layer,
                row_offset,
                shared_input,
                has_b,
                accumulate,
                mean,
                b_offset,
                out_offset
            }),
            layout!(LossShape {
                rows,
                width,
                loss,
                activation,
                slope,
                inv_norm,
                accumulate,
                members,
                target_rows,
                _pad0,
                _pad1,
                _pad2
            }),
            layout!(ReduceShape {
                rows,
                cols,
                accumulate,
                out_offset,
                members,
                input_stride,
                out_stride,
                _pad
            }),
            layout!(OptimizerUniform {
                n,
                kind,
                nesterov,
                amsgrad,
                decoupled,
                centered,
                momentum,
                dampening,
                beta1,
                beta2,
                alpha,
                eps,
                weight_decay,
                clip_norm,
                clip_value,
                clip_partials,
                members,
                member_quads,
                _pad0,
                _pad1,
            }),
            layout!(PackShape {
                rows,
                cols,
                padded_rows,
                texels
            }),
            layout!(GatherShape {
                rows,
                features,
                target_width,
                offset,
                order_stride,
                data_rows,
                weighted,
                _pad
            }),
            layout!(StepUniform {
                batch_start,
                slot,
                t,
                _pad,
                lr,
                step_size,
                bias_correction2_sqrt,
                adagrad_lr,
                decay,
            }),
        ]
    }

    /// Every uniform struct a module binds: name → (span, members as
    /// (name, offset, size)).
    type WgslStructs = BTreeMap<String, (u32, Vec<(String, u32, u32)>)>;

    fn wgsl_uniforms(name: &str, source: &str) -> WgslStructs {
        let module = naga::front::wgsl::parse_str(source)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(source)));
        let mut found = BTreeMap::new();
        for (_, global) in module.global_variables.iter() {
            if global.space != naga::AddressSpace::Uniform {
                continue;
            }
            let ty = &module.types[global.ty];
            let naga::TypeInner::Struct { members, span } = &ty.inner else {
                panic!("{name}: uniform {:?} is not a struct", global.name);
            };
            let members = members
                .iter()
                .map(|m| {
                    let size = module.types[m.ty].inner.size(module.to_ctx());
                    (m.name.clone().unwrap_or_default(), m.offset, size)
                })
                .collect();
            let ty_name = ty.name.clone().unwrap_or_default();
            found.insert(ty_name, (*span, members));
        }
        found
    }

    #[test]
    fn every_uniform_struct_has_its_rust_twin_name_for_name_and_byte_for_byte() {
        let body = |file: &str| match file {
            "loss" => include_str!("../../shaders/loss.wgsl"),
            "reduce" => include_str!("../../shaders/reduce.wgsl"),
            "optimizer" => include_str!("../../shaders/optimizer.wgsl"),
            "data" => include_str!("../../shaders/data.wgsl"),
            "pack" => include_str!("../../shaders/pack.wgsl"),
            "elementwise" => include_str!("../../shaders/elementwise.wgsl"),
            "ceiling" => include_str!("../../shaders/ceiling.wgsl"),
            "norm" => include_str!("../../shaders/norm.wgsl"),
            "residual" => include_str!("../../shaders/residual.wgsl"),
            "ensemble" => include_str!("../../shaders/ensemble.wgsl"),
            _ => unreachable!(),
        };
        let mut sources: Vec<(String, String)> = [
            "loss",
            "reduce",
            "optimizer",
            "data",
            "pack",
            "elementwise",
            "ceiling",
            "norm",
            "residual",
            "ensemble",
        ]
        .into_iter()
        // The ceiling kernel is built with the kernel harness only.
        .filter(|&f| f != "ceiling" || cfg!(feature = "harness"))
        .map(|f| (format!("shaders/{f}.wgsl"), module_source("", body(f))))
        .collect();
        for tiling in [
            MatmulTiling::shared(),
            MatmulTiling::direct(),
            MatmulTiling::texture(),
        ] {
            sources.push((format!("the {:?} matmul", tiling.kind), tiling.source()));
        }
        let rust: BTreeMap<&str, Layout> = rust_uniforms().into_iter().map(|l| (l.0, l)).collect();
        let mut seen = std::collections::BTreeSet::new();
        for (name, source) in &sources {
            for (ty, (span, members)) in wgsl_uniforms(name, source) {
                let Some((_, size, fields)) = rust.get(ty.as_str()) else {
                    panic!("{name} binds uniform {ty}, which has no Rust twin of that name");
                };
                let listed: usize = fields.iter().map(|f| f.2).sum();
                assert_eq!(
                    listed, *size,
                    "{ty}: the test lists {listed} of its {size} bytes"
                );
                assert_eq!(
                    span as usize, *size,
                    "{ty} in {name}: WGSL {span} bytes, Rust {size}"
                );
                let wgsl: Vec<(String, usize, usize)> = members
                    .into_iter()
                    .map(|(n, o, s)| (n, o as usize, s as usize))
                    .collect();
                let rust: Vec<(String, usize, usize)> = fields
                    .iter()
                    .map(|&(n, o, s)| (n.to_string(), o, s))
                    .collect();
                assert_eq!(
                    wgsl, rust,
                    "{ty} in {name}: WGSL (left) and Rust (right) differ"
                );
                seen.insert(ty);
            }
        }
        let unseen: Vec<&&str> = rust.keys().filter(|k| !seen.contains(**k)).collect();
        assert!(unseen.is_empty(), "no shader binds {unseen:?}");
    }
}
