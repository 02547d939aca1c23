//! Every member's evaluation and prediction at once: the data in chunks
//! of a batch, each member reading every row in order, no update.

use super::super::resources::storage_init;
use super::super::uniforms::StepUniform;
use super::passes::Source;
use super::{Evaluated, GpuMembers, MemberStep, Mode};
use crate::data::{Dataset, Targets};
use crate::error::{Error, Result};
use crate::loss::Loss;

/// Data staged for an evaluation or a prediction ([`GpuMembers::stage`]).
struct Staged {
    x: wgpu::Buffer,
    targets: wgpu::Buffer,
    weights: wgpu::Buffer,
    weighted: bool,
    perm: wgpu::Buffer,
    rows: usize,
    chunks: Vec<std::ops::Range<usize>>,
}

impl Staged {
    fn source(&self) -> Source<'_> {
        Source {
            x: &self.x,
            targets: &self.targets,
            weights: &self.weights,
            weighted: self.weighted,
            data_rows: self.rows,
            perm: &self.perm,
            stride: self.rows,
        }
    }
}

impl GpuMembers {
    /// Member `m`'s evaluation of `data`: every member's, computed once
    /// for the parameters as they are and kept for the others' asking.
    pub fn evaluate_member(&mut self, m: usize, data: &Dataset) -> Result<(f64, Option<usize>)> {
        let fresh = matches!(&self.evaluated,
            Some(kept) if kept.version == data.version() && kept.generation == self.generation);
        if !fresh {
            let results = self.evaluate_all(data)?;
            self.evaluated = Some(Evaluated {
                version: data.version(),
                generation: self.generation,
                results,
            });
        }
        let kept = self.evaluated.as_ref().expect("just evaluated");
        Ok(kept.results[m])
    }

    /// Every member's evaluation of `data`: the sum of its row losses
    /// (weighted, for a data set with weights) and for classification the
    /// number right, as `Backend::evaluate` returns it.
    pub fn evaluate_all(&mut self, data: &Dataset) -> Result<Vec<(f64, Option<usize>)>> {
        let k = self.members.len();
        let staged = self.stage(data)?;
        let passes = self.passes(&staged.source(), true);
        let mut sums = vec![(0.0, 0.0); k];
        for chunks in staged.chunks.chunks(self.slots) {
            let sizes = self.fixed_steps(chunks, |rows| {
                let indices: Vec<u32> = (rows.start as u32..rows.end as u32).collect();
                (rows.len(), data.weight_of(&indices))
            });
            let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                for slot in 0..chunks.len() {
                    self.record_step(&mut pass, &passes, slot, Mode::Evaluate);
                }
            }
            self.ctx.submit(encoder.finish());
            let results = self.read_all(&self.results, (chunks.len() * k * 2) as u64)?;
            for (slot, &(_, weight)) in sizes.iter().enumerate() {
                for (m, sum) in sums.iter_mut().enumerate() {
                    let at = 2 * (slot * k + m);
                    sum.0 += results[at] as f64 * weight;
                    sum.1 += results[at + 1] as f64;
                }
            }
        }
        let counts = self.loss.is_classification();
        Ok(sums
            .into_iter()
            .map(|(loss, right)| (loss, counts.then_some(right.round() as usize)))
            .collect())
    }

    /// Every member's outputs for inputs `x` (rows × inputs).
    pub fn predict_all(&mut self, x: &[f32]) -> Result<Vec<Vec<f32>>> {
        let inputs = self.mlp.inputs();
        crate::backend::checks::rows_of("inputs to predict", inputs, x.len())?;
        let rows = x.len() / inputs;
        let outputs = self.mlp.outputs();
        let targets = Targets::Values {
            values: vec![0.0; rows * outputs],
            width: outputs,
        };
        let data = Dataset::new(x.to_vec(), inputs, targets)?;
        let k = self.members.len();
        let staged = self.stage(&data)?;
        let passes = self.passes(&staged.source(), true);
        let mut out = vec![Vec::with_capacity(rows * outputs); k];
        let last = self.mlp.layers().len() - 1;
        for chunk in &staged.chunks {
            self.fixed_steps(std::slice::from_ref(chunk), |r| (r.len(), r.len() as f64));
            let mut encoder = self.ctx.device.create_command_encoder(&Default::default());
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                self.record_step(&mut pass, &passes, 0, Mode::Predict);
            }
            self.ctx.submit(encoder.finish());
            let values = self.read_all(&self.a[last], (k * self.rows * outputs) as u64)?;
            for (m, own) in out.iter_mut().enumerate() {
                let at = m * self.rows * outputs;
                own.extend_from_slice(&values[at..at + chunk.len() * outputs]);
            }
        }
        Ok(out)
    }

    /// `data` on the device for an evaluation or a prediction: every
    /// member's order the rows in file order, in chunks of a batch.
    fn stage(&self, data: &Dataset) -> Result<Staged> {
        if data.features() != self.mlp.inputs() {
            return Err(Error::Shape {
                what: "features of the data (network inputs)".into(),
                expected: self.mlp.inputs(),
                got: data.features(),
            });
        }
        let k = self.members.len();
        let device = &self.ctx.device;
        let n = data.rows();
        let words: Vec<u32> = match data.targets() {
            Targets::Classes(labels) => labels.clone(),
            Targets::Values { values, .. } => values.iter().map(|v| v.to_bits()).collect(),
        };
        let weights: Vec<f32> = match data.weights() {
            Some(w) => (0..k).flat_map(|_| w.iter().copied()).collect(),
            None => vec![0.0],
        };
        let perm: Vec<u32> = (0..k).flat_map(|_| 0..n as u32).collect();
        Ok(Staged {
            x: storage_init(device, "member staged x", data.x()),
            targets: storage_init(device, "member staged targets", &words),
            weights: storage_init(device, "member staged weights", &weights),
            weighted: data.weights().is_some(),
            perm: storage_init(device, "member staged order", &perm),
            rows: n,
            chunks: (0..n)
                .step_by(self.rows)
                .map(|start| start..(start + self.rows).min(n))
                .collect(),
        })
    }

    /// Writes the steps of `chunks` (one slot each) for every member with
    /// no update: `of(rows)` gives a chunk's row count and weight. Returns
    /// each chunk's (rows, weight).
    fn fixed_steps(
        &self,
        chunks: &[std::ops::Range<usize>],
        of: impl Fn(std::ops::Range<usize>) -> (usize, f64),
    ) -> Vec<(usize, f64)> {
        let k = self.members.len();
        let width = match self.loss {
            Loss::CrossEntropy => 1.0,
            _ => self.mlp.outputs() as f64,
        };
        let mut steps = Vec::with_capacity(chunks.len() * k);
        let mut sizes = Vec::with_capacity(chunks.len());
        let mut uniforms = vec![0u8; chunks.len() * self.step_stride as usize];
        for (slot, chunk) in chunks.iter().enumerate() {
            let uniform = StepUniform {
                batch_start: chunk.start as u32,
                slot: slot as u32,
                ..StepUniform::default()
            };
            let at = slot * self.step_stride as usize;
            uniforms[at..at + std::mem::size_of::<StepUniform>()]
                .copy_from_slice(bytemuck::bytes_of(&uniform));
            let (rows, weight) = of(chunk.clone());
            let step = MemberStep {
                rows: rows as u32,
                inv_norm: if weight > 0.0 {
                    (1.0 / (weight * width)) as f32
                } else {
                    0.0
                },
                ..MemberStep::default()
            };
            steps.extend(std::iter::repeat_n(step, k));
            sizes.push((rows, weight));
        }
        self.ctx.queue.write_buffer(&self.steps, 0, &uniforms);
        self.ctx
            .queue
            .write_buffer(&self.member_steps, 0, bytemuck::cast_slice(&steps));
        sizes
    }
}
