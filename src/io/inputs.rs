//! What the inputs go through before the network's first layer, as a
//! model file's metadata records it: the standardisation
//! (`retroprop.mean`, `retroprop.std`) and the one-hot encoding of the
//! categorical features ([`CATEGORIES_KEY`](super::CATEGORIES_KEY)).

use super::{CATEGORIES_KEY, parse_list};
use crate::data::{Categories, Standardizer};
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;

/// The standardisation and categories `meta` records, each checked
/// against the network's `inputs`.
pub(super) fn read(
    meta: &HashMap<String, String>,
    inputs: usize,
    path: &Path,
) -> Result<(Option<Standardizer>, Option<Categories>)> {
    let parse = |message: String| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    let standardizer = match (meta.get("retroprop.mean"), meta.get("retroprop.std")) {
        (Some(mean), Some(std)) => {
            let s = Standardizer::new(
                parse_list(path, "retroprop.mean", mean)?,
                parse_list(path, "retroprop.std", std)?,
            )
            .map_err(|e| parse(format!("metadata retroprop.mean/std: {e}")))?;
            if s.features() != inputs {
                return Err(parse(format!(
                    "standardisation statistics do not have {inputs} features"
                )));
            }
            Some(s)
        }
        _ => None,
    };
    let categories = match meta.get(CATEGORIES_KEY) {
        Some(text) => Some(
            Categories::from_json(text)
                .map_err(|e| parse(format!("metadata {CATEGORIES_KEY}: {e}")))?,
        ),
        None => None,
    };
    if let Some(c) = categories.as_ref().filter(|c| c.inputs() != inputs) {
        return Err(parse(format!(
            "metadata {CATEGORIES_KEY} encodes {} inputs, the network takes {inputs}",
            c.inputs()
        )));
    }
    Ok((standardizer, categories))
}
