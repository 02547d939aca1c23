//! TabM's kernels (shaders/ensemble.wgsl) one at a time on host data, for
//! their parity tests against the CPU passes (tests/gpu_tabm.rs). Every
//! operand is `[members, rows, width]`, a member's rows together.

use super::{Bind, KernelHarness, floats};
use crate::activation::Activation;
use crate::dropout::Dropout;
use crate::error::{Error, Result};
use crate::gpu::codes::{Epilogue, mean_code};
use crate::gpu::pipelines::EnsembleKernel;
use crate::gpu::tiling::MatmulKind;
use crate::gpu::uniforms::{EnsembleShape, MatmulShape, StepUniform};
use crate::model::EnsembleMean;

/// The blocks a TabM step runs over: `members` blocks of `rows` × `width`.
#[derive(Debug, Clone, Copy)]
pub struct MemberBlocks {
    pub members: usize,
    /// Rows a member.
    pub rows: usize,
    pub width: usize,
}

impl MemberBlocks {
    fn len(&self) -> usize {
        self.members * self.rows * self.width
    }

    fn shape(&self) -> EnsembleShape {
        EnsembleShape {
            members: self.members as u32,
            rows: self.rows as u32,
            width: self.width as u32,
            ..Default::default()
        }
    }
}

/// Dropout in a TabM step: probability `p`, the masks' seed, the step `t`,
/// the dense layer, and where the pass's rows start in the batch.
#[derive(Debug, Clone, Copy)]
pub struct MemberMask {
    pub p: f32,
    pub seed: u32,
    pub t: u32,
    pub layer: u32,
    pub row_offset: u32,
}

impl MemberMask {
    /// This dropout in a matmul's epilogue over members of `rows` rows.
    fn set_matmul(mask: Option<MemberMask>, rows: usize, shape: &mut MatmulShape) -> StepUniform {
        let mut ensemble = EnsembleShape::default();
        let step = MemberMask::set(mask, &mut ensemble);
        shape.dropout_threshold = ensemble.dropout_threshold;
        shape.dropout_scale = ensemble.dropout_scale;
        shape.dropout_seed = ensemble.dropout_seed;
        shape.dropout_layer = ensemble.dropout_layer;
        shape.row_offset = ensemble.row_offset;
        shape.ensemble_rows = rows as u32;
        step
    }

    fn set(mask: Option<MemberMask>, shape: &mut EnsembleShape) -> StepUniform {
        let Some(mask) = mask else {
            return StepUniform::default();
        };
        if let Some(d) = Dropout::new(mask.p) {
            shape.dropout_threshold = d.threshold.max(1);
            shape.dropout_scale = d.scale;
        }
        shape.dropout_seed = mask.seed;
        shape.dropout_layer = mask.layer;
        shape.row_offset = mask.row_offset;
        StepUniform {
            t: mask.t,
            ..Default::default()
        }
    }
}

impl KernelHarness {
    /// Runs one of TabM's kernels over `threads` threads with `a`, `b`,
    /// `c`, `z` read and `out`, `out2` (`out_len` floats each; `out`
    /// starting from `start` when given) read back.
    #[allow(clippy::too_many_arguments)]
    fn run_ensemble(
        &self,
        kernel: EnsembleKernel,
        (shape, step): (EnsembleShape, StepUniform),
        [a, b, c, z]: [&[f32]; 4],
        out_len: usize,
        start: Option<&[f32]>,
        threads: usize,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let data = |v: &[f32]| -> Vec<u8> {
            if v.is_empty() {
                vec![0; 4]
            } else {
                bytemuck::cast_slice(v).to_vec()
            }
        };
        let (a, b, c, z) = (data(a), data(b), data(c), data(z));
        let start = start.map(data);
        let out = self.run(
            self.ensemble.get(kernel),
            &[
                Bind::Uniform(bytemuck::bytes_of(&shape)),
                Bind::Uniform(bytemuck::bytes_of(&step)),
                Bind::Data(&a),
                Bind::Data(&b),
                Bind::Data(&c),
                Bind::Data(&z),
                match &start {
                    Some(bytes) => Bind::InOut(bytes),
                    None => Bind::Out(out_len.max(1) * 4),
                },
                Bind::Out(out_len.max(1) * 4),
            ],
            self.groups_1d(threads, kernel.group_size()),
            true,
        )?;
        let mut values = (floats(&out[0]), floats(&out[1]));
        values.0.truncate(out_len);
        values.1.truncate(out_len);
        Ok(values)
    }

    /// `member_scale`: each member's block of `x` (or, `shared`, the one
    /// block every member reads: the view) times its row of `scale`
    /// (`[members, width]`), then dropout, then f' at `derivative`'s values.
    pub fn member_scale(
        &self,
        blocks: MemberBlocks,
        (x, shared): (&[f32], bool),
        scale: Option<&[f32]>,
        derivative: Option<(Activation, &[f32])>,
        mask: Option<MemberMask>,
    ) -> Result<Vec<f32>> {
        let mut shape = blocks.shape();
        shape.shared_input = u32::from(shared);
        shape.has_b = u32::from(scale.is_some());
        let z = match derivative {
            Some((f, z)) => {
                (shape.activation, shape.slope) = f.code();
                z
            }
            None => &[],
        };
        let step = MemberMask::set(mask, &mut shape);
        let operands = [x, scale.unwrap_or(&[]), &[], z];
        let len = blocks.len();
        let kernel = EnsembleKernel::MemberScale;
        Ok(self
            .run_ensemble(kernel, (shape, step), operands, len, None, len)?
            .0)
    }

    /// `ensemble_epilogue`: a BatchEnsemble layer's Z = U ⊙ s + b and A =
    /// f(Z) ⊙ dropout from its product U.
    pub fn ensemble_epilogue(
        &self,
        blocks: MemberBlocks,
        product: &[f32],
        (s, bias): (&[f32], &[f32]),
        activation: Activation,
        mask: Option<MemberMask>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let mut shape = blocks.shape();
        (shape.activation, shape.slope) = activation.code();
        let step = MemberMask::set(mask, &mut shape);
        let len = blocks.len();
        let kernel = EnsembleKernel::EnsembleEpilogue;
        self.run_ensemble(
            kernel,
            (shape, step),
            [product, s, bias, &[]],
            len,
            None,
            len,
        )
    }

    /// `member_column_sums`: each member's column sums of `a` (of `a ⊙ b`
    /// when `b` is given; `b` shared: one block every member reads, the
    /// view's), `[members, width]`, added to `start` when given.
    pub fn member_column_sums(
        &self,
        blocks: MemberBlocks,
        a: &[f32],
        b: Option<(&[f32], bool)>,
        start: Option<&[f32]>,
    ) -> Result<Vec<f32>> {
        let mut shape = blocks.shape();
        shape.has_b = u32::from(b.is_some());
        shape.shared_input = u32::from(b.is_some_and(|(_, shared)| shared));
        let b = b.map(|(b, _)| b);
        shape.accumulate = u32::from(start.is_some());
        let len = blocks.members * blocks.width;
        let operands = [a, b.unwrap_or(&[]), &[], &[]];
        let kernel = EnsembleKernel::MemberColumnSums;
        let step = StepUniform::default();
        Ok(self
            .run_ensemble(kernel, (shape, step), operands, len, start, len)?
            .0)
    }

    /// `ensemble_mean`: the ensemble's output `[rows, width]` of the
    /// members' outputs.
    pub fn ensemble_mean(
        &self,
        blocks: MemberBlocks,
        outputs: &[f32],
        mean: EnsembleMean,
    ) -> Result<Vec<f32>> {
        let mut shape = blocks.shape();
        shape.mean = mean_code(mean);
        let len = blocks.rows * blocks.width;
        let kernel = EnsembleKernel::EnsembleMean;
        let step = StepUniform::default();
        Ok(self
            .run_ensemble(
                kernel,
                (shape, step),
                [outputs, &[], &[], &[]],
                len,
                None,
                len,
            )?
            .0)
    }
}

impl KernelHarness {
    /// The members' products need the storage-buffer matmuls (the
    /// texture kernels serve lone products only).
    fn storage_matmul(&self) -> Result<()> {
        match self.kernels.tiling().kind {
            MatmulKind::Texture => Err(Error::Config(
                "TabM's members' products run on the storage-buffer matmuls: open the harness \
                 with MatmulTiling::direct() or shared()"
                    .into(),
            )),
            _ => Ok(()),
        }
    }

    /// TabM's members' own layers forward, every member in one dispatch
    /// (its z): Z_m = X_m · W_m + b_m (W `[k, in, out]`, b `[k, out]`), A
    /// = f(Z) ⊙ dropout; with `shared` every member reads the one input
    /// block (the view's). `blocks.width` is the input's.
    pub fn member_linear_forward(
        &self,
        blocks: MemberBlocks,
        (x, shared): (&[f32], bool),
        (weight, bias): (&[f32], &[f32]),
        activation: Activation,
        mask: Option<MemberMask>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.storage_matmul()?;
        let (k, rows, inputs) = (blocks.members, blocks.rows, blocks.width);
        let outputs = bias.len() / k;
        let (code, slope) = activation.code();
        let mut shape = MatmulShape {
            m: rows as u32,
            n: outputs as u32,
            k: inputs as u32,
            k_end: inputs as u32,
            activation: code,
            slope,
            members: k as u32,
            member_a: if shared { 0 } else { (rows * inputs) as u32 },
            member_b: (inputs * outputs) as u32,
            member_c: (rows * outputs) as u32,
            member_aux: outputs as u32,
            member_out2: (rows * outputs) as u32,
            ..Default::default()
        };
        let step = MemberMask::set_matmul(mask, rows, &mut shape);
        let kernel = self.kernels.matmuls[0].member_forward(&self.ctx.device);
        let out = self.run_matmul(
            kernel,
            Epilogue::BiasActivation,
            shape,
            vec![
                Bind::Data(bytemuck::cast_slice(x)),
                Bind::Data(bytemuck::cast_slice(weight)),
                Bind::Out(k * rows * outputs * 4),
                Bind::Data(bytemuck::cast_slice(bias)),
                Bind::Out(k * rows * outputs * 4),
                Bind::Uniform(bytemuck::bytes_of(&step)),
            ],
        )?;
        Ok((floats(&out[0]), floats(&out[1])))
    }

    /// TabM's members' own layers backward from dZ (`grad_z`, `[k, rows,
    /// out]`): each member's dW_m = X_mᵀ · dZ_m, and dZ_prev = (dZ_m ·
    /// W_mᵀ) ⊙ dropout ⊙ f'(Z_prev) for the layer before (`prev`: its f',
    /// Z and dropout). `blocks.width` is the input's.
    pub fn member_linear_backward(
        &self,
        blocks: MemberBlocks,
        (x, weight): (&[f32], &[f32]),
        grad_z: &[f32],
        prev: (Activation, &[f32], Option<MemberMask>),
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.storage_matmul()?;
        let (k, rows, inputs) = (blocks.members, blocks.rows, blocks.width);
        let outputs = weight.len() / k / inputs;
        let matmuls = &self.kernels.matmuls[0];
        let no_step = StepUniform::default();
        let step = Bind::Uniform(bytemuck::bytes_of(&no_step));
        let weight_grad = MatmulShape {
            m: inputs as u32,
            n: outputs as u32,
            k: rows as u32,
            k_end: rows as u32,
            members: k as u32,
            member_a: (rows * inputs) as u32,
            member_b: (rows * outputs) as u32,
            member_c: (inputs * outputs) as u32,
            ..Default::default()
        };
        let dw = self.run_matmul(
            matmuls.weight_grad(&self.ctx.device, false),
            Epilogue::Store,
            weight_grad,
            vec![
                Bind::Data(bytemuck::cast_slice(x)),
                Bind::Data(bytemuck::cast_slice(grad_z)),
                Bind::Out(k * inputs * outputs * 4),
                Bind::Data(&[0; 4]),
                Bind::Out(4),
                step,
            ],
        )?;
        let (f, z_prev, mask) = prev;
        let (code, slope) = f.code();
        let mut input_grad = MatmulShape {
            m: rows as u32,
            n: inputs as u32,
            k: outputs as u32,
            k_end: outputs as u32,
            activation: code,
            slope,
            members: k as u32,
            member_a: (rows * outputs) as u32,
            member_b: (inputs * outputs) as u32,
            member_c: (rows * inputs) as u32,
            member_aux: (rows * inputs) as u32,
            ..Default::default()
        };
        let step = MemberMask::set_matmul(mask, rows, &mut input_grad);
        let dx = self.run_matmul(
            matmuls.member_input_grad(&self.ctx.device),
            Epilogue::ActivationGrad,
            input_grad,
            vec![
                Bind::Data(bytemuck::cast_slice(grad_z)),
                Bind::Data(bytemuck::cast_slice(weight)),
                Bind::Out(k * rows * inputs * 4),
                Bind::Data(bytemuck::cast_slice(z_prev)),
                Bind::Out(4),
                Bind::Uniform(bytemuck::bytes_of(&step)),
            ],
        )?;
        Ok((floats(&dw[0]), floats(&dx[0])))
    }

    /// The training forward product over every member's stacked rows
    /// (`tabm-mini`'s shared layers): Z = X · Wᵀ + b, A = f(Z) ⊙ dropout,
    /// dropout's columns a member's own (`blocks.rows` rows a member;
    /// `blocks.width` the input's).
    pub fn stacked_dense_forward(
        &self,
        blocks: MemberBlocks,
        x: &[f32],
        (weight, bias): (&[f32], &[f32]),
        activation: Activation,
        mask: Option<MemberMask>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        self.storage_matmul()?;
        let (rows, inputs, outputs) = (blocks.members * blocks.rows, blocks.width, bias.len());
        let (code, slope) = activation.code();
        let mut shape = MatmulShape {
            m: rows as u32,
            n: outputs as u32,
            k: inputs as u32,
            k_end: inputs as u32,
            activation: code,
            slope,
            ..Default::default()
        };
        let step = MemberMask::set_matmul(mask, blocks.rows, &mut shape);
        let out = self.run_matmul(
            &self.kernels.matmuls[0].forward,
            Epilogue::BiasActivation,
            shape,
            vec![
                Bind::Data(bytemuck::cast_slice(x)),
                Bind::Data(bytemuck::cast_slice(weight)),
                Bind::Out(rows * outputs * 4),
                Bind::Data(bytemuck::cast_slice(bias)),
                Bind::Out(rows * outputs * 4),
                Bind::Uniform(bytemuck::bytes_of(&step)),
            ],
        )?;
        Ok((floats(&out[0]), floats(&out[1])))
    }
}
