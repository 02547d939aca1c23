//! The float types the CPU backend computes in: `f32` (what the GPU does) and
//! `f64` (the ground truth for gradient checks); and the precision a run's
//! matrix products take (`Precision`: f32, or f16 operands with f32 sums).

use num_traits::Float;
use std::fmt::{self, Debug};
use std::str::FromStr;

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

/// The number format of a run's matrix products (the forward pass, the
/// weight and input gradients). Everything else (parameters, optimizer
/// state, activations, losses, reductions) is f32 in both.
///
/// Its one text form: `f32` or `mixed`, read by `FromStr`, written by
/// `Display`, and listed in [`Precision::NAMES`] (the program's
/// `--precision`, a checkpoint's `retroprop.settings.precision`, a model's
/// `retroprop.precision`).
///
/// ```
/// use retroprop::Precision;
/// for p in [Precision::F32, Precision::Mixed] {
///     assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
/// }
/// assert!("f16".parse::<Precision>().unwrap_err().contains("f32 or mixed"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 operands, f32 sums: what the CPU reference computes.
    #[default]
    F32,
    /// Mixed precision as `torch.autocast(dtype=torch.float16)` does it:
    /// each product's operands are rounded to f16 (round to nearest even,
    /// unit roundoff 2⁻¹¹), multiplied exactly and summed in f32; master
    /// weights and optimizer state stay f32. GPU only: it needs an adapter
    /// with `shader-f16` (or cooperative matrices).
    Mixed,
}

impl Precision {
    /// Every precision by its text form.
    pub const NAMES: [&'static str; 2] = ["f32", "mixed"];
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Mixed => "mixed",
        })
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.trim() {
            "f32" => Ok(Precision::F32),
            "mixed" => Ok(Precision::Mixed),
            other => Err(format!(
                "unknown precision `{other}` (expected f32 or mixed)"
            )),
        }
    }
}
