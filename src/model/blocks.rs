//! A residual network asked for by its blocks over a plain network of
//! one hidden size (the program's `--blocks`, the Python package's
//! `blocks=`), and its normalisation by name.

use super::{Mlp, NormKind, Residual};
use crate::error::{Error, Result};

impl NormKind {
    /// `batch`, `layer` or `none` (no normalisation), the one text form
    /// of a residual network's normalisation (the program's `--norm`, the
    /// Python package's `norm=`).
    ///
    /// ```
    /// use retroprop::NormKind;
    /// assert_eq!(NormKind::parse_option("layer"), Ok(Some(NormKind::Layer)));
    /// assert_eq!(NormKind::parse_option("none"), Ok(None));
    /// assert!(NormKind::parse_option("group").unwrap_err().contains("batch, layer or none"));
    /// ```
    pub fn parse_option(text: &str) -> std::result::Result<Option<NormKind>, String> {
        match text.trim() {
            "batch" => Ok(Some(NormKind::Batch)),
            "layer" => Ok(Some(NormKind::Layer)),
            "none" => Ok(None),
            other => Err(format!("{other}: expected batch, layer or none")),
        }
    }
}

/// What makes a network of one hidden size residual ([`Mlp::residual`]):
/// how many blocks at that width, their normalisation, and their hidden
/// width as a multiple of it. The blocks' activation is the hidden
/// layer's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Blocks {
    /// How many blocks.
    pub blocks: usize,
    /// The blocks' and head's normalisation (the paper's default: batch).
    pub norm: Option<NormKind>,
    /// A block's hidden width ÷ its width (the paper's default: 2).
    pub multiplier: f64,
}

impl Blocks {
    /// `blocks` blocks with batch normalisation and a multiplier of 2, the
    /// defaults of "Revisiting Deep Learning Models for Tabular Data".
    pub fn new(blocks: usize) -> Blocks {
        Blocks {
            blocks,
            norm: Some(NormKind::Batch),
            multiplier: 2.0,
        }
    }

    /// The residual network over `plain`'s sizes `[inputs, width,
    /// outputs]`, with `plain`'s hidden activation.
    ///
    /// ```
    /// use retroprop::{Activation, Blocks, Mlp};
    /// let plain = Mlp::new(&[64, 32, 10], Activation::Relu, Activation::Identity)?;
    /// let net = Blocks::new(3).apply(&plain)?;
    /// assert_eq!(net.residual_spec().unwrap().hidden, 64);
    /// assert!(Blocks::new(3).apply(&Mlp::new(&[4, 8, 8, 1], Activation::Relu,
    ///     Activation::Identity)?).unwrap_err().to_string().contains("one hidden size"));
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Setting`] (`blocks`, `block_multiplier`) for a network of
    /// more or fewer hidden sizes than one, no blocks, or a multiplier that
    /// leaves no hidden width.
    pub fn apply(&self, plain: &Mlp) -> Result<Mlp> {
        let sizes = plain.sizes();
        let [inputs, width, outputs] = sizes[..] else {
            return Err(Error::Setting {
                setting: "blocks",
                message: format!(
                    "needs a network of one hidden size, the blocks' width (e.g. 64,32,10), got {}",
                    sizes
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            });
        };
        let hidden = (width as f64 * self.multiplier).round();
        if !(hidden >= 1.0 && hidden.is_finite()) {
            return Err(Error::Setting {
                setting: "block_multiplier",
                message: format!(
                    "{}: the blocks' hidden width {width} × {} must be at least 1",
                    self.multiplier, self.multiplier
                ),
            });
        }
        Mlp::residual(Residual {
            inputs,
            width,
            hidden: hidden as usize,
            blocks: self.blocks,
            outputs,
            norm: self.norm,
            activation: plain.layers()[0].activation,
        })
        .map_err(|e| Error::Setting {
            setting: "blocks",
            message: e.to_string(),
        })
    }
}
