//! Dropout masks, the same bits on both backends: whether element (`row` in
//! the batch, `column`) of layer `layer`'s output is kept at step `step` is
//! a counter-based hash of those numbers and the seed, so the
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

    /// The factor element (`row`, `column`) of layer `layer` is multiplied
    /// by at `step`: 0 or 1 / (1 − p). Row and column are hashed apart, not
    /// as one index row · width + column, which wraps past 2³² elements (a
    /// batch of 65 536 rows of 65 536 units) and repeats masks.
    pub(crate) fn factor(&self, seed: u32, step: u32, layer: u32, row: u32, column: u32) -> f32 {
        let h = hash32(seed ^ hash32(step ^ hash32(layer ^ hash32(row ^ hash32(column)))));
        if h >= self.threshold { self.scale } else { 0.0 }
    }
}

/// The 32-bit seed of the masks, from the run's seed.
pub(crate) fn mask_seed(seed: u64) -> u32 {
    hash32((seed as u32) ^ hash32((seed >> 32) as u32 ^ 0x9e37_79b9))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Past 2³² elements a flat index would give row 65 536 of a 65 536
    /// wide layer the mask of row 0; hashed apart they differ.
    #[test]
    fn masks_do_not_repeat_past_two_to_the_32_elements() {
        let d = Dropout::new(0.5).unwrap();
        let row = |r: u32| -> Vec<f32> { (0..256).map(|c| d.factor(7, 1, 0, r, c)).collect() };
        assert_ne!(row(0), row(65_536));
        assert_ne!(row(1), row(65_537));
        // And about half of a row is dropped.
        let dropped = row(65_536).iter().filter(|&&f| f == 0.0).count();
        assert!((96..160).contains(&dropped), "{dropped} of 256 dropped");
    }
}
