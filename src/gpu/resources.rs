//! What a run allocates on the device: the flat parameter layout, storage
//! buffers, the matmul operand textures, and the resident data set.

use super::dispatch::grid;
use super::uniforms::PackShape;
use crate::error::{Error, Result};
use crate::model::{LayerForm, Mlp};
use bytemuck::Pod;
use wgpu::util::DeviceExt;

/// Where each layer's weight and bias start in the GPU's flat buffers: the
/// CPU layout with each tensor moved to the device's storage-offset
/// alignment, and to at least 16 bytes, so that every tensor can be bound
/// on its own and every piece of the buffer is whole vec4s. Padding is zero
/// and stays zero (its gradient is zero).
#[derive(Debug, Clone)]
pub(crate) struct ParamLayout {
    pub(crate) weight: Vec<u64>,
    pub(crate) bias: Vec<u64>,
    /// Each normalisation's γ, its β right after (one binding holds
    /// both), after every dense layer's parameters as in the flat vector.
    pub(crate) norm: Vec<u64>,
    /// A TabM BatchEnsemble layer's r then s (one binding holds both),
    /// between its weight and its bias as in the flat vector.
    pub(crate) scaling: Vec<Option<u64>>,
    /// `tabm-mini`'s scaling, after every dense layer's parameters.
    pub(crate) affine: Option<u64>,
    pub(crate) len: u64,
}

/// Consecutive layers whose parameters one binding holds
/// ([`ParamLayout::pieces`]): `len` floats from `offset` of the flat
/// buffer (both multiples of four floats and of the storage offset
/// alignment: the optimizer kernel updates `len / 4` whole vec4s).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParamPiece {
    pub(crate) layers: std::ops::Range<usize>,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

impl ParamLayout {
    /// The layout of `mlp` on a device whose binding offsets must be
    /// multiples of `offset_alignment` bytes (its
    /// `min_storage_buffer_offset_alignment`). Tensors start at multiples
    /// of 16 bytes even where the device allows 4: a piece ends where the
    /// next layer's weight starts, and the optimizer kernel (vec4s) would
    /// skip the last parameters of a piece whose length is not a multiple
    /// of four floats.
    pub(crate) fn new(mlp: &Mlp, offset_alignment: u32) -> ParamLayout {
        let align_floats = (offset_alignment as u64).max(16) / 4;
        let mut at = 0u64;
        let (mut weight, mut bias) = (Vec::new(), Vec::new());
        let mut place = |count: usize| {
            let start = at;
            at = (at + count as u64).next_multiple_of(align_floats);
            start
        };
        let mut scaling = Vec::new();
        for l in 0..mlp.layers().len() {
            weight.push(place(mlp.weight_range(l).len()));
            scaling.push(match mlp.layer_form(l) {
                LayerForm::BatchEnsemble => {
                    let (r, s) = mlp.scaling_ranges(l);
                    Some(place(r.len() + s.len()))
                }
                _ => None,
            });
            bias.push(place(mlp.bias_range(l).len()));
        }
        let norm = mlp.norms().iter().map(|n| place(2 * n.width)).collect();
        let affine = mlp.affine_range().map(|range| place(range.len()));
        ParamLayout {
            weight,
            bias,
            norm,
            scaling,
            affine,
            // A whole number of vec4s (the optimizer kernel's unit).
            len: at.max(1).next_multiple_of(4),
        }
    }

    /// The flat buffer in pieces that each fit one binding of
    /// `limit_floats` floats, every piece whole layers in order (their
    /// weights, biases and padding): the kernels that read parameters,
    /// gradients and optimizer state as one range (the optimizer, the
    /// gradient norm, the layer norms) run once per piece. One piece unless
    /// the parameters are larger than a binding (Adam's state of
    /// 784-4096-4096-10 is 160 MB; many devices bind 128 MiB).
    ///
    /// # Errors
    /// [`Error::TooLarge`] naming a layer whose parameters alone exceed a
    /// binding.
    pub(crate) fn pieces(&self, mlp: &Mlp, limit_floats: u64) -> Result<Vec<ParamPiece>> {
        let layers = mlp.layers().len();
        let end_of = |l: usize| {
            if l + 1 < layers {
                self.weight[l + 1]
            } else {
                self.len
            }
        };
        let mut pieces: Vec<ParamPiece> = Vec::new();
        for l in 0..layers {
            let (start, end) = (self.weight[l], end_of(l));
            if end - start > limit_floats {
                let layer = &mlp.layers()[l];
                return Err(Error::TooLarge(format!(
                    "layer {l} ({} → {}) has {} parameters ({} bytes), more than one binding of the device holds ({} bytes, max_storage_buffer_binding_size)",
                    layer.inputs,
                    layer.outputs,
                    layer.inputs * layer.outputs + layer.outputs,
                    (end - start) * 4,
                    limit_floats * 4
                )));
            }
            match pieces.last_mut() {
                Some(piece) if end - piece.offset <= limit_floats => {
                    piece.layers.end = l + 1;
                    piece.len = end - piece.offset;
                }
                _ => pieces.push(ParamPiece {
                    layers: l..l + 1,
                    offset: start,
                    len: end - start,
                }),
            }
        }
        Ok(pieces)
    }

    pub(crate) fn pack(&self, mlp: &Mlp, flat: &[f32]) -> Vec<f32> {
        let mut padded = vec![0f32; self.len as usize];
        for l in 0..mlp.layers().len() {
            let (w, b) = (mlp.weight_range(l), mlp.bias_range(l));
            let wo = self.weight[l] as usize;
            let bo = self.bias[l] as usize;
            padded[wo..wo + w.len()].copy_from_slice(&flat[w]);
            padded[bo..bo + b.len()].copy_from_slice(&flat[b]);
        }
        for (n, &at) in self.norm.iter().enumerate() {
            let (gamma, beta) = mlp.norm_ranges(n);
            let at = at as usize;
            padded[at..at + gamma.len() + beta.len()].copy_from_slice(&flat[gamma.start..beta.end]);
        }
        for (range, at) in self.ensemble_ranges(mlp) {
            padded[at..at + range.len()].copy_from_slice(&flat[range]);
        }
        padded
    }

    pub(crate) fn unpack(&self, mlp: &Mlp, padded: &[f32]) -> Vec<f32> {
        let mut flat = vec![0f32; mlp.parameter_count()];
        for l in 0..mlp.layers().len() {
            let (w, b) = (mlp.weight_range(l), mlp.bias_range(l));
            let wo = self.weight[l] as usize;
            let bo = self.bias[l] as usize;
            let (wl, bl) = (w.len(), b.len());
            flat[w].copy_from_slice(&padded[wo..wo + wl]);
            flat[b].copy_from_slice(&padded[bo..bo + bl]);
        }
        for (n, &at) in self.norm.iter().enumerate() {
            let (gamma, beta) = mlp.norm_ranges(n);
            let (at, len) = (at as usize, gamma.len() + beta.len());
            flat[gamma.start..beta.end].copy_from_slice(&padded[at..at + len]);
        }
        for (range, at) in self.ensemble_ranges(mlp) {
            let len = range.len();
            flat[range].copy_from_slice(&padded[at..at + len]);
        }
        flat
    }

    /// TabM's tensors besides the weights and biases: each range of the
    /// flat vector (r and s together, the scaling) with where it sits here.
    fn ensemble_ranges(&self, mlp: &Mlp) -> Vec<(std::ops::Range<usize>, usize)> {
        let mut ranges: Vec<_> = (self.scaling.iter().enumerate())
            .filter_map(|(l, at)| {
                let (r, s) = mlp.scaling_ranges(l);
                at.map(|at| (r.start..s.end, at as usize))
            })
            .collect();
        ranges.extend(mlp.affine_range().zip(self.affine.map(|at| at as usize)));
        ranges
    }
}

/// A buffer region to bind: (buffer, offset in floats, length in floats).
pub(crate) type Region<'a> = (&'a wgpu::Buffer, u64, u64);

/// The data set of the current `fit`, resident on the device.
#[derive(Debug)]
pub(crate) struct Resident {
    pub(crate) x: wgpu::Buffer,
    pub(crate) targets: wgpu::Buffer,
    pub(crate) perm: wgpu::Buffer,
    pub(crate) features: usize,
    pub(crate) target_width: usize,
}

/// The texture matmul's operands: every matrix a matmul reads, as a texture
/// (see `MatmulKind::Texture`), packed once per pass after it is written.
#[derive(Debug)]
pub(crate) struct Textures {
    pub(crate) x: OperandTexture,
    /// Activations of every layer but the last (inputs of the next one).
    pub(crate) a: Vec<OperandTexture>,
    pub(crate) dz: Vec<OperandTexture>,
    pub(crate) weights: Vec<OperandTexture>,
    /// Packs of the weights, the same for every pass.
    pub(crate) weight_packs: Vec<Pack>,
    pub(crate) _weight_uniforms: wgpu::Buffer,
}

impl Textures {
    /// Whether every operand of `mlp` at `rows` rows fits the texture limits.
    pub(crate) fn fit(limits: &wgpu::Limits, mlp: &Mlp, rows: usize) -> bool {
        OperandTexture::fits(limits, rows, mlp.inputs())
            && mlp.layers().iter().all(|l| {
                OperandTexture::fits(limits, rows, l.outputs)
                    && OperandTexture::fits(limits, l.outputs, l.inputs)
            })
    }

    pub(crate) fn bytes(&self) -> u64 {
        std::iter::once(&self.x)
            .chain(&self.a)
            .chain(&self.dz)
            .chain(&self.weights)
            .map(OperandTexture::bytes)
            .sum()
    }

    /// The input texture of layer `l`.
    pub(crate) fn input(&self, l: usize) -> &OperandTexture {
        if l == 0 { &self.x } else { &self.a[l - 1] }
    }
}

/// A matrix of up to `rows` × `cols` as a matmul operand texture: four
/// consecutive values of a row per rgba32float texel, rows padded to a
/// multiple of four (the texture matmul reads whole quads along K).
#[derive(Debug)]
pub(crate) struct OperandTexture {
    pub(crate) texture: wgpu::Texture,
    pub(crate) view: wgpu::TextureView,
    pub(crate) cols: u32,
}

impl OperandTexture {
    /// The texture's extent for a `rows` × `cols` matrix.
    pub(crate) fn extent(rows: usize, cols: usize) -> (u32, u32) {
        (cols.div_ceil(4) as u32, rows.next_multiple_of(4) as u32)
    }

    /// Whether a `rows` × `cols` matrix fits the device's texture limits.
    pub(crate) fn fits(limits: &wgpu::Limits, rows: usize, cols: usize) -> bool {
        let (w, h) = OperandTexture::extent(rows.max(1), cols.max(1));
        w <= limits.max_texture_dimension_2d && h <= limits.max_texture_dimension_2d
    }

    pub(crate) fn new(device: &wgpu::Device, label: &str, rows: usize, cols: usize) -> Self {
        let (width, height) = OperandTexture::extent(rows.max(1), cols.max(1));
        let texture = device.create_texture(&wgpu::TextureDescriptor {
            label: Some(label),
            size: wgpu::Extent3d {
                width,
                height,
                depth_or_array_layers: 1,
            },
            mip_level_count: 1,
            sample_count: 1,
            dimension: wgpu::TextureDimension::D2,
            format: wgpu::TextureFormat::Rgba32Float,
            usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::STORAGE_BINDING,
            view_formats: &[],
        });
        let view = texture.create_view(&Default::default());
        OperandTexture {
            texture,
            view,
            cols: cols as u32,
        }
    }

    /// Whether every row is a whole number of texels (`pack_quads` fills it).
    pub(crate) fn quads(&self) -> bool {
        self.cols.is_multiple_of(4)
    }

    /// Bytes the texture occupies.
    pub(crate) fn bytes(&self) -> u64 {
        let size = self.texture.size();
        size.width as u64 * size.height as u64 * 16
    }

    /// The pack kernel's shape and workgroups for `rows` rows of it.
    pub(crate) fn pack_shape(&self, rows: usize, max_per_dim: u32) -> (PackShape, (u32, u32)) {
        let shape = PackShape {
            rows: rows as u32,
            cols: self.cols,
            padded_rows: rows.next_multiple_of(4) as u32,
            texels: self.cols.div_ceil(4),
        };
        let texels = shape.texels as u64 * shape.padded_rows as u64;
        (shape, grid(texels, 64, max_per_dim))
    }
}

pub(crate) fn storage(device: &wgpu::Device, label: &str, floats: u64) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (floats.max(1) * 4).next_multiple_of(16),
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}

pub(crate) fn storage_init<T: Pod>(device: &wgpu::Device, label: &str, data: &[T]) -> wgpu::Buffer {
    let mut bytes = bytemuck::cast_slice::<T, u8>(data).to_vec();
    bytes.resize(bytes.len().max(4).next_multiple_of(16), 0);
    device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: &bytes,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_DST
            | wgpu::BufferUsages::COPY_SRC,
    })
}

/// Host buffers a batch is gathered into (`Dataset::gather`), when the
/// data set streams from host memory.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    pub(crate) x: Vec<f32>,
    pub(crate) values: Vec<f32>,
    pub(crate) labels: Vec<u32>,
}

/// A pack kernel dispatch (a matrix into its operand texture).
#[derive(Debug)]
pub(crate) struct Pack {
    pub(crate) group: wgpu::BindGroup,
    pub(crate) workgroups: (u32, u32),
    /// Whether it runs `pack_quads` (`OperandTexture::quads`).
    pub(crate) quads: bool,
}

/// What a pack copies: `rows` rows of the matrix at byte `offset` into
/// `buffer`, into `texture`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PackSource<'a> {
    pub(crate) buffer: &'a wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) rows: usize,
    pub(crate) texture: &'a OperandTexture,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activation::Activation;

    /// At every storage-offset alignment a device may report (4 bytes, which
    /// the vec4 optimizer once cut short, up to 256), with awkward layer
    /// sizes and bindings from the largest layer's span to the whole
    /// buffer: each piece starts and ends on whole vec4s at the device's
    /// alignment, the pieces hold every layer once and in order, and the
    /// `len / 4` vec4s the optimizer updates from a piece's offset reach
    /// every weight and bias of its layers.
    #[test]
    fn pieces_are_whole_vec4s_reaching_every_parameter_at_any_alignment() {
        for sizes in [&[17, 5, 3, 1][..], &[3, 1, 17], &[1, 1], &[63, 65, 2, 257]] {
            let mlp = Mlp::new(sizes, Activation::Tanh, Activation::Identity).unwrap();
            let layers = mlp.layers().len();
            for alignment in [4u32, 8, 16, 32, 64, 256] {
                let layout = ParamLayout::new(&mlp, alignment);
                let span = |l: usize| {
                    let end = if l + 1 < layers {
                        layout.weight[l + 1]
                    } else {
                        layout.len
                    };
                    end - layout.weight[l]
                };
                let largest = (0..layers).map(span).max().unwrap();
                for limit in [largest, largest + 4, layout.len] {
                    let pieces = layout.pieces(&mlp, limit).unwrap();
                    let case =
                        format!("{sizes:?}, alignment {alignment} B, binding {limit} floats");
                    let held: Vec<usize> = pieces.iter().flat_map(|p| p.layers.clone()).collect();
                    assert_eq!(held, (0..layers).collect::<Vec<_>>(), "{case}: layers held");
                    for piece in &pieces {
                        assert!(
                            piece.offset % 4 == 0 && piece.len % 4 == 0,
                            "{case}: piece {piece:?} is not whole vec4s"
                        );
                        assert_eq!(
                            piece.offset * 4 % alignment as u64,
                            0,
                            "{case}: piece {piece:?} is off the device's alignment"
                        );
                        assert!(
                            piece.len <= limit,
                            "{case}: piece {piece:?} exceeds the binding"
                        );
                        let reach = piece.offset..piece.offset + piece.len / 4 * 4;
                        for l in piece.layers.clone() {
                            let weight = mlp.weight_range(l).len() as u64;
                            let bias = mlp.bias_range(l).len() as u64;
                            for (what, start, count) in [
                                ("weight", layout.weight[l], weight),
                                ("bias", layout.bias[l], bias),
                            ] {
                                assert!(
                                    reach.start <= start && start + count <= reach.end,
                                    "{case}: layer {l}'s {what} ({start}..{}) is past the vec4s the optimizer updates ({reach:?})",
                                    start + count
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    /// A TabM network of each architecture packs every value of its flat
    /// vector (r, s and `tabm-mini`'s scaling too) apart, each tensor on
    /// the alignment, and unpacks to the same vector; its pieces reach its
    /// last value.
    #[test]
    fn a_tabm_network_packs_and_unpacks_every_value() {
        use crate::model::{EnsembleMean, Tabm, TabmArch};
        let plain = Mlp::new(&[5, 7, 6, 3], Activation::Relu, Activation::Identity).unwrap();
        for arch in [TabmArch::Tabm, TabmArch::Mini, TabmArch::Packed] {
            let mlp = Mlp::tabm(&plain, Tabm::new(3, arch, EnsembleMean::Values)).unwrap();
            let flat: Vec<f32> = (0..mlp.parameter_count()).map(|i| i as f32 + 1.0).collect();
            let layout = ParamLayout::new(&mlp, 64);
            let packed = layout.pack(&mlp, &flat);
            assert_eq!(layout.unpack(&mlp, &packed), flat, "{arch}");
            let mut held: Vec<f32> = packed.iter().copied().filter(|&v| v != 0.0).collect();
            held.sort_by(f32::total_cmp);
            assert_eq!(held, flat, "{arch}: every value once");
            for at in layout.scaling.iter().flatten().chain(&layout.affine) {
                assert_eq!(at % 16, 0, "{arch}: a tensor off the alignment");
            }
            let pieces = layout.pieces(&mlp, layout.len).unwrap();
            assert_eq!(
                pieces.last().unwrap().offset + pieces.last().unwrap().len,
                layout.len
            );
        }
    }
}
