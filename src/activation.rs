//! Activation functions with their derivatives: the CPU formulas that
//! `shaders/activation.wgsl` mirrors, `forward` as `activation_forward` and
//! `derivative` as `activation_derivative`. On purpose the GPU computes tanh
//! and erfc with its own approximations (drivers' builtin tanh is not
//! accurate everywhere; WGSL has no erfc), agreeing with these to f32
//! precision.

use crate::real::Real;
use std::fmt;
use std::str::FromStr;

/// The activation applied after a dense layer's affine map.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    /// f(z) = z.
    #[default]
    Identity,
    /// f(z) = 1 / (1 + e^−z).
    Sigmoid,
    /// f(z) = tanh z.
    Tanh,
    /// f(z) = max(z, 0); f'(0) = 0 as in torch.
    Relu,
    /// f(z) = z for z > 0, slope · z otherwise (torch's default slope 0.01).
    LeakyRelu {
        /// The slope for z ≤ 0.
        slope: f32,
    },
    /// Exact GELU, f(z) = z · Φ(z) = ½ z (1 + erf(z / √2)).
    Gelu,
    /// GELU's tanh approximation, ½ z (1 + tanh(√(2/π) (z + 0.044715 z³))),
    /// torch's `GELU(approximate='tanh')`.
    GeluTanh,
}

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_TANH_C: f64 = 0.044_715;
const INV_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// sech²(z) = 1 − tanh²(z), without the cancellation of 1 − t² for large |z|:
/// 4 e^−2|z| / (1 + e^−2|z|)².
pub(crate) fn sech2<T: Real>(z: T) -> T {
    let e = (T::of(-2.0) * z.abs()).exp();
    T::of(4.0) * e / ((T::one() + e) * (T::one() + e))
}

/// Φ(z), the standard normal CDF, as ½ erfc(−z/√2): accurate in the left
/// tail, where 1 + erf(z/√2) would cancel to zero.
fn normal_cdf<T: Real>(z: T) -> T {
    T::of(0.5) * (-z * T::of(INV_SQRT_2)).erfc()
}

/// u = √(2/π) (z + 0.044715 z³), the argument of GELU's tanh approximation.
fn gelu_tanh_inner<T: Real>(z: T) -> T {
    T::of(SQRT_2_OVER_PI) * (z + T::of(GELU_TANH_C) * z * z * z)
}

/// Numerically stable logistic function.
pub(crate) fn sigmoid<T: Real>(z: T) -> T {
    if z >= T::zero() {
        T::one() / (T::one() + (-z).exp())
    } else {
        let e = z.exp();
        e / (T::one() + e)
    }
}

impl Activation {
    /// Leaky ReLU with torch's default slope, 0.01.
    pub const LEAKY_RELU: Activation = Activation::LeakyRelu { slope: 0.01 };

    /// f(z).
    pub fn forward<T: Real>(self, z: T) -> T {
        match self {
            Activation::Identity => z,
            Activation::Sigmoid => sigmoid(z),
            // The GPU's is `tanh_safe` (activation.wgsl): drivers' builtin
            // tanh is not accurate everywhere.
            Activation::Tanh => z.tanh(),
            Activation::Relu => z.max(T::zero()),
            Activation::LeakyRelu { slope } => {
                if z > T::zero() {
                    z
                } else {
                    T::of(slope as f64) * z
                }
            }
            Activation::Gelu => z * normal_cdf(z),
            // ½ z (1 + tanh u) = z σ(2u): no cancellation for z ≪ 0.
            Activation::GeluTanh => z * sigmoid(T::of(2.0) * gelu_tanh_inner(z)),
        }
    }

    /// f'(z), the factor backprop multiplies the incoming gradient by:
    /// dZ = dA ⊙ f'(Z).
    pub fn derivative<T: Real>(self, z: T) -> T {
        match self {
            Activation::Identity => T::one(),
            // σ(z)(1 − σ(z)) with 1 − σ(z) = σ(−z): no cancellation.
            Activation::Sigmoid => sigmoid(z) * sigmoid(-z),
            Activation::Tanh => sech2(z),
            Activation::Relu => {
                if z > T::zero() {
                    T::one()
                } else {
                    T::zero()
                }
            }
            Activation::LeakyRelu { slope } => {
                if z > T::zero() {
                    T::one()
                } else {
                    T::of(slope as f64)
                }
            }
            // d/dz z·Φ(z) = Φ(z) + z·φ(z)
            Activation::Gelu => {
                let pdf = T::of(INV_SQRT_2PI) * (T::of(-0.5) * z * z).exp();
                normal_cdf(z) + z * pdf
            }
            // ½(1 + tanh u) + ½ z sech²(u) u' = σ(2u) + 2 z σ(2u) σ(−2u) u',
            // u' = √(2/π)(1 + 3c z²)
            Activation::GeluTanh => {
                let u2 = T::of(2.0) * gelu_tanh_inner(z);
                let du = T::of(SQRT_2_OVER_PI) * (T::one() + T::of(3.0 * GELU_TANH_C) * z * z);
                let s = sigmoid(u2);
                s + T::of(2.0) * z * s * sigmoid(-u2) * du
            }
        }
    }

    /// torch.nn.init.calculate_gain for this activation (GELU counted as ReLU).
    pub fn gain(self) -> f64 {
        match self {
            Activation::Identity | Activation::Sigmoid => 1.0,
            Activation::Tanh => 5.0 / 3.0,
            Activation::Relu | Activation::Gelu | Activation::GeluTanh => 2f64.sqrt(),
            Activation::LeakyRelu { slope } => (2.0 / (1.0 + (slope as f64).powi(2))).sqrt(),
        }
    }

    /// The code the GPU shaders switch on (`ACTIVATION_*`, generated by
    /// src/gpu/codes.rs), and the slope parameter.
    pub(crate) fn code(self) -> (u32, f32) {
        match self {
            Activation::Identity => (0, 0.0),
            Activation::Sigmoid => (1, 0.0),
            Activation::Tanh => (2, 0.0),
            Activation::Relu => (3, 0.0),
            Activation::LeakyRelu { slope } => (4, slope),
            Activation::Gelu => (5, 0.0),
            Activation::GeluTanh => (6, 0.0),
        }
    }

    /// Every activation, with the default leaky slope: for tests and help text.
    pub const ALL: [Activation; 7] = [
        Activation::Identity,
        Activation::Sigmoid,
        Activation::Tanh,
        Activation::Relu,
        Activation::LEAKY_RELU,
        Activation::Gelu,
        Activation::GeluTanh,
    ];
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Identity => f.write_str("identity"),
            Activation::Sigmoid => f.write_str("sigmoid"),
            Activation::Tanh => f.write_str("tanh"),
            Activation::Relu => f.write_str("relu"),
            Activation::LeakyRelu { slope } if *slope == 0.01 => f.write_str("leaky_relu"),
            Activation::LeakyRelu { slope } => write!(f, "leaky_relu:{slope}"),
            Activation::Gelu => f.write_str("gelu"),
            Activation::GeluTanh => f.write_str("gelu_tanh"),
        }
    }
}

impl Activation {
    /// Parses a comma list of activations for a network of `layers` layers:
    /// one name, for every hidden layer (the output layer is then
    /// identity), or one per layer. Messages read after the list's name,
    /// e.g. `--activations lists 3 activations, but …` or `--activations
    /// entry 2: unknown activation …`.
    ///
    /// ```
    /// use retroprop::Activation;
    /// let one = Activation::parse_list("relu", 3)?;
    /// assert_eq!(one, [Activation::Relu, Activation::Relu, Activation::Identity]);
    /// assert_eq!(Activation::parse_list("tanh,sigmoid", 2)?, [Activation::Tanh, Activation::Sigmoid]);
    /// assert!(Activation::parse_list("relu,relu", 3).is_err());
    /// # Ok::<(), String>(())
    /// ```
    pub fn parse_list(text: &str, layers: usize) -> Result<Vec<Activation>, String> {
        let list: Vec<Activation> = text
            .split(',')
            .enumerate()
            .map(|(i, a)| a.parse().map_err(|e| format!("entry {}: {e}", i + 1)))
            .collect::<Result<_, _>>()?;
        match list.len() {
            1 => Ok((0..layers)
                .map(|l| {
                    if l + 1 == layers {
                        Activation::Identity
                    } else {
                        list[0]
                    }
                })
                .collect()),
            n if n == layers => Ok(list),
            n => Err(format!(
                "lists {n} activations, but the network has {layers} layers (give 1 or {layers})"
            )),
        }
    }
}

impl FromStr for Activation {
    type Err = String;

    /// Parses the names `Display` writes; `leaky_relu:0.2` sets the slope.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(slope) = s.strip_prefix("leaky_relu:") {
            let slope: f32 = slope
                .parse()
                .map_err(|_| format!("leaky_relu slope `{slope}` is not a number"))?;
            if !slope.is_finite() {
                return Err(format!("leaky_relu slope `{slope}` is not finite"));
            }
            return Ok(Activation::LeakyRelu { slope });
        }
        Ok(match s {
            "identity" | "linear" | "none" => Activation::Identity,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "relu" => Activation::Relu,
            "leaky_relu" => Activation::LEAKY_RELU,
            "gelu" => Activation::Gelu,
            "gelu_tanh" => Activation::GeluTanh,
            _ => {
                return Err(format!(
                    "unknown activation `{s}` (expected identity, sigmoid, tanh, relu, leaky_relu[:SLOPE], gelu or gelu_tanh)"
                ));
            }
        })
    }
}
