//! The float types the CPU backend computes in: `f32` (what the GPU does) and
//! `f64` (the ground truth for gradient checks).

use num_traits::Float;
use std::fmt::Debug;

/// A float type the CPU reference backend can run in.
pub trait Real: Float + Debug + Default + Send + Sync + std::iter::Sum + 'static {
    /// Converts from `f64` (rounding for `f32`).
    fn of(v: f64) -> Self;
    /// Widens to `f64`.
    fn f64(self) -> f64;
    /// The complementary error function, 1 − erf, accurate in the tails.
    fn erfc(self) -> Self;
}

macro_rules! impl_real {
    ($t:ty, $erfc:path) => {
        impl Real for $t {
            fn of(v: f64) -> Self {
                v as $t
            }
            fn f64(self) -> f64 {
                self as f64
            }
            fn erfc(self) -> Self {
                $erfc(self)
            }
        }
    };
}

impl_real!(f32, libm::erfcf);
impl_real!(f64, libm::erfc);
