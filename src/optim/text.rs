//! Each optimizer's one text form: `FromStr` and `Display` that round-trip
//! (`adam:lr=0.001,betas=0.9/0.999`), and the options by torch's names
//! (`Optimizer::set_option`), which every front (the program, the page,
//! Python) uses instead of a copy of its own.

use super::{Adagrad, Adam, AdamW, Optimizer, RmsProp, Sgd};
use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Where one option's value lives in an optimizer's configuration: the
/// three kinds of value torch's optimizers take.
enum OptionSlot<'a> {
    Number(&'a mut f64),
    Flag(&'a mut bool),
    Pair(&'a mut (f64, f64)),
}

impl OptionSlot<'_> {
    /// The value as the text form writes it.
    fn text(&self) -> String {
        match self {
            OptionSlot::Number(v) => number(**v),
            OptionSlot::Flag(v) => v.to_string(),
            OptionSlot::Pair((a, b)) => format!("{}/{}", number(*a), number(*b)),
        }
    }

    /// Reads `text` into the slot; on failure, what a value looks like.
    /// A pair may be written `0.9/0.999`, `0.9,0.999` or `(0.9, 0.999)`
    /// (Python's text for a tuple), a flag `true`/`false` in any case.
    fn set(&mut self, text: &str) -> std::result::Result<(), &'static str> {
        const NUMBER: &str = "a number";
        const PAIR: &str = "two numbers like 0.9/0.999";
        let text = text.trim();
        match self {
            OptionSlot::Number(v) => **v = text.parse().map_err(|_| NUMBER)?,
            OptionSlot::Flag(v) => {
                **v = match text.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err("true or false"),
                }
            }
            OptionSlot::Pair(v) => {
                let inner = text
                    .strip_prefix(['(', '['])
                    .and_then(|t| t.strip_suffix([')', ']']))
                    .unwrap_or(text);
                let parts: Vec<&str> = inner.split(['/', ',']).collect();
                let [a, b] = parts[..] else {
                    return Err(PAIR);
                };
                let num = |s: &str| s.trim().parse::<f64>().map_err(|_| PAIR);
                **v = (num(a)?, num(b)?);
            }
        }
        Ok(())
    }
}

/// A number as the text form writes it: the shortest text that reads back
/// as the same `f64`, with an exponent when it is small or large (`1e-8`).
fn number(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-4 || v.abs() >= 1e16) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// `a, b or c`.
fn in_words(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

impl Optimizer {
    /// Every optimizer's name, as [`name`](Self::name) gives it and
    /// `FromStr` reads it: what a front lists as the possible values.
    pub const NAMES: [&'static str; 5] = ["sgd", "adam", "adamw", "rmsprop", "adagrad"];

    /// Every optimizer with torch's defaults, in the order of [`NAMES`](Self::NAMES).
    pub fn defaults() -> [Optimizer; 5] {
        [
            Sgd::default().into(),
            Adam::default().into(),
            AdamW::default().into(),
            RmsProp::default().into(),
            Adagrad::default().into(),
        ]
    }

    /// The optimizer called `name` (one of [`NAMES`](Self::NAMES), in any
    /// case: torch's class names `SGD`, `RMSprop` read too) with torch's
    /// defaults.
    ///
    /// ```
    /// use retroprop::{Optimizer, RmsProp};
    /// assert_eq!(Optimizer::with_name("RMSprop")?, RmsProp::default().into());
    /// assert!(Optimizer::with_name("lbfgs").unwrap_err().to_string().contains("`lbfgs`"));
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    pub fn with_name(name: &str) -> Result<Optimizer> {
        let wanted = name.trim().to_ascii_lowercase();
        Optimizer::defaults()
            .into_iter()
            .find(|o| o.name() == wanted)
            .ok_or_else(|| Error::UnknownOptimizer {
                name: name.trim().to_string(),
                expected: in_words(&Optimizer::NAMES),
            })
    }

    /// The options, by torch's keyword names, each with where its value
    /// lives: the one table of which optimizer has which option.
    fn slots(&mut self) -> Vec<(&'static str, OptionSlot<'_>)> {
        use OptionSlot::{Flag, Number, Pair};
        match self {
            Optimizer::Sgd(o) => vec![
                ("lr", Number(&mut o.lr)),
                ("momentum", Number(&mut o.momentum)),
                ("dampening", Number(&mut o.dampening)),
                ("weight_decay", Number(&mut o.weight_decay)),
                ("nesterov", Flag(&mut o.nesterov)),
            ],
            Optimizer::Adam(Adam {
                lr,
                betas,
                eps,
                weight_decay,
                amsgrad,
            })
            | Optimizer::AdamW(AdamW {
                lr,
                betas,
                eps,
                weight_decay,
                amsgrad,
            }) => vec![
                ("lr", Number(lr)),
                ("betas", Pair(betas)),
                ("eps", Number(eps)),
                ("weight_decay", Number(weight_decay)),
                ("amsgrad", Flag(amsgrad)),
            ],
            Optimizer::RmsProp(o) => vec![
                ("lr", Number(&mut o.lr)),
                ("alpha", Number(&mut o.alpha)),
                ("eps", Number(&mut o.eps)),
                ("weight_decay", Number(&mut o.weight_decay)),
                ("momentum", Number(&mut o.momentum)),
                ("centered", Flag(&mut o.centered)),
            ],
            Optimizer::Adagrad(o) => vec![
                ("lr", Number(&mut o.lr)),
                ("lr_decay", Number(&mut o.lr_decay)),
                ("weight_decay", Number(&mut o.weight_decay)),
                (
                    "initial_accumulator_value",
                    Number(&mut o.initial_accumulator_value),
                ),
                ("eps", Number(&mut o.eps)),
            ],
        }
    }

    /// The options this optimizer has, by the names of torch's keyword
    /// arguments, in the order of torch's constructor.
    ///
    /// ```
    /// use retroprop::{Adam, Optimizer};
    /// let adam: Optimizer = Adam::default().into();
    /// assert_eq!(adam.options(), ["lr", "betas", "eps", "weight_decay", "amsgrad"]);
    /// ```
    pub fn options(&self) -> Vec<&'static str> {
        let mut copy = *self;
        copy.slots().into_iter().map(|(name, _)| name).collect()
    }

    /// The value of option `name` as the text form writes it (`0.001`,
    /// `1e-8`, `0.9/0.999`, `true`); `None` when this optimizer has no such
    /// option.
    pub fn option(&self, name: &str) -> Option<String> {
        let mut copy = *self;
        copy.slots()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, slot)| slot.text())
    }

    /// The names of the optimizers that have option `option` (e.g.
    /// `momentum`: sgd and rmsprop).
    pub fn having(option: &str) -> Vec<&'static str> {
        Optimizer::defaults()
            .iter()
            .filter(|o| o.options().contains(&option))
            .map(|o| o.name())
            .collect()
    }

    /// Sets option `name` (torch's keyword name; `-` reads as `_`) from
    /// its text: a number, `true`/`false`, or for `betas` two numbers
    /// (`0.9/0.999`, `0.9,0.999` or `(0.9, 0.999)`).
    ///
    /// Refuses an option this optimizer does not have
    /// ([`Error::UnknownOption`], naming the optimizers that have it) and
    /// text that is not a value of the option's kind
    /// ([`Error::OptionValue`]). Ranges are checked by
    /// [`validate`](Self::validate), once every option is set (nesterov
    /// needs a momentum that may come after it).
    ///
    /// ```
    /// use retroprop::{Error, Optimizer, Sgd};
    /// let mut sgd = Optimizer::with_name("sgd")?;
    /// sgd.set_option("lr", "0.1")?;
    /// sgd.set_option("nesterov", "true")?;
    /// sgd.set_option("momentum", "0.9")?;
    /// sgd.validate()?;
    /// assert_eq!(sgd, Sgd::default().lr(0.1).momentum(0.9).nesterov(true).into());
    /// match sgd.set_option("betas", "0.9/0.999") {
    ///     Err(Error::UnknownOption { owners, .. }) => assert_eq!(owners, ["adam", "adamw"]),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok::<(), retroprop::Error>(())
    /// ```
    pub fn set_option(&mut self, name: &str, value: &str) -> Result<()> {
        let optimizer = self.name();
        let key = name.trim().replace('-', "_");
        let known = self.options();
        match self.slots().into_iter().find(|(n, _)| *n == key) {
            Some((option, mut slot)) => slot.set(value).map_err(|expected| Error::OptionValue {
                optimizer,
                option,
                value: value.trim().to_string(),
                expected,
            }),
            None => Err(Error::UnknownOption {
                optimizer,
                option: name.trim().to_string(),
                owners: Optimizer::having(&key),
                known,
            }),
        }
    }
}

impl fmt::Display for Optimizer {
    /// The name, then `:option=value,…` for each option that differs from
    /// torch's default (`adam:lr=0.01`); with `{:#}`, every option
    /// (`adam:lr=0.01,betas=0.9/0.999,eps=1e-8,weight_decay=0,amsgrad=false`).
    /// `FromStr` reads both back to the same optimizer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        let defaults = Optimizer::with_name(self.name()).map_err(|_| fmt::Error)?;
        let mut separator = ':';
        for name in self.options() {
            let value = self.option(name).unwrap_or_default();
            if f.alternate() || defaults.option(name).as_deref() != Some(value.as_str()) {
                write!(f, "{separator}{name}={value}")?;
                separator = ',';
            }
        }
        Ok(())
    }
}

impl FromStr for Optimizer {
    type Err = Error;

    /// `NAME` with torch's defaults, or `NAME:OPTION=VALUE,…` with options
    /// by torch's names (as [`set_option`](Optimizer::set_option) reads
    /// them; betas may keep their comma, `betas=0.9,0.999`); then
    /// [`validate`](Optimizer::validate)d.
    fn from_str(text: &str) -> Result<Optimizer> {
        let (name, options) = text.split_once(':').unwrap_or((text, ""));
        let mut optimizer = Optimizer::with_name(name)?;
        let malformed = |what: String| {
            Error::Config(format!(
                "optimizer `{}`: {what} (write e.g. adam:lr=0.001,betas=0.9/0.999)",
                text.trim()
            ))
        };
        let mut given: Vec<(String, String)> = Vec::new();
        for piece in options.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match (piece.split_once('='), given.last_mut()) {
                (Some((option, value)), _) => {
                    let option = option.trim().replace('-', "_");
                    if given.iter().any(|(o, _)| *o == option) {
                        return Err(malformed(format!("{option} is given twice")));
                    }
                    given.push((option, value.trim().to_string()));
                }
                // The second number of `betas=0.9,0.999`.
                (None, Some((option, value)))
                    if option == "betas" && !value.contains([',', '/']) =>
                {
                    value.push(',');
                    value.push_str(piece);
                }
                (None, _) => {
                    return Err(malformed(format!("`{piece}` is not OPTION=VALUE")));
                }
            }
        }
        for (option, value) in &given {
            optimizer.set_option(option, value)?;
        }
        optimizer.validate()?;
        Ok(optimizer)
    }
}
