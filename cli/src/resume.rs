//! `--resume` in the program's words: the library compares a checkpoint's
//! settings with the run's (`RunSettings::changes`); this names each
//! difference by its flag, refuses those the saved state cannot carry and
//! announces the others.

use retroprop::checkpoint::SettingChange;
use std::path::Path;

/// The flag that sets `setting` (a library name: `lr`, `batch_size`, an
/// optimizer option by torch's name).
pub fn flag(setting: &str) -> String {
    match setting {
        "sizes" => "--arch".into(),
        "blocks" => "--blocks".into(),
        "shuffle" => "shuffle (--no-shuffle)".into(),
        "validation_split" => "--val-split".into(),
        "early_stopping" => "--early-stopping/--min-delta".into(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// The one-line refusal of a resume from `path` with `changes`, when one
/// of them is refused: each by its flag, with the checkpoint's value and
/// the one given.
pub fn refusal(path: &Path, changes: &[SettingChange]) -> Option<String> {
    let refused: Vec<String> = changes
        .iter()
        .filter(|c| c.refused)
        .map(|c| match (c.setting, c.from.as_str()) {
            ("standardize", "false") => "without --standardize".to_string(),
            ("standardize", _) => "with --standardize".to_string(),
            _ => format!("with {} {}, not {}", flag(c.setting), c.from, c.to),
        })
        .collect();
    (!refused.is_empty()).then(|| {
        format!(
            "--resume {path}: the checkpoint was written {} (its saved state cannot \
             carry {}; leave {} out to continue the run, or start a new run from its \
             parameters with --init {path})",
            refused.join("; "),
            if refused.len() == 1 {
                "another"
            } else {
                "others"
            },
            if refused.len() == 1 { "it" } else { "them" },
            path = path.display(),
        )
    })
}

/// One line for each setting a resume changed, from what to what.
pub fn change_lines(changes: &[SettingChange]) -> Vec<String> {
    changes
        .iter()
        .filter(|c| !c.refused)
        .map(|c| {
            format!(
                "resumed with {} changed: {} -> {}",
                flag(c.setting),
                c.from,
                c.to
            )
        })
        .collect()
}
