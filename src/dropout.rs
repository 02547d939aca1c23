//! Dropout masks, the same bits on both backends: whether element `index`
//! (row in the batch × width + column) of layer `layer`'s output is kept at
//! step `step` is a counter-based hash of those numbers and the seed, so the
//! GPU recomputes a mask where it needs it instead of storing it, and the CPU
//! reproduces it exactly. The WGSL twin is `dropout_factor` in
//! shaders/common.wgsl.

/// A 32-bit integer mix (lowbias32, by Chris Wellons): every input bit
/// affects every output bit.
pub(crate) fn hash32(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// One layer's dropout: drop with probability `p`, scale the kept by
/// 1 / (1 − p) (inverted dropout: nothing to undo at evaluation).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Dropout {
    /// Elements whose hash is below this are dropped: ⌊p · 2³²⌋.
    pub threshold: u32,
    /// 1 / (1 − p), in f32 as the GPU uses it.
    pub scale: f32,
}

impl Dropout {
    pub(crate) fn new(p: f32) -> Option<Dropout> {
        (p > 0.0).then(|| Dropout {
            threshold: (p as f64 * 4_294_967_296.0).min(u32::MAX as f64) as u32,
            scale: 1.0 / (1.0 - p),
        })
    }

    /// The factor element `index` of layer `layer` is multiplied by at
    /// `step`: 0 or 1 / (1 − p).
    pub(crate) fn factor(&self, seed: u32, step: u32, layer: u32, index: u32) -> f32 {
        let h = hash32(seed ^ hash32(step ^ hash32(layer ^ hash32(index))));
        if h >= self.threshold { self.scale } else { 0.0 }
    }
}

/// The 32-bit seed of the masks, from the run's seed.
pub(crate) fn mask_seed(seed: u64) -> u32 {
    hash32((seed as u32) ^ hash32((seed >> 32) as u32 ^ 0x9e37_79b9))
}
