//! What a run of members reports: each member's score, the table of
//! candidates with the best marked, and each member's state.

use super::grid::Grid;
use crate::train::{Result, Sets, text};
use retroprop::train::{MemberState, Members, MembersHistory};
use retroprop::{Dataset, Evaluation, History};

/// The members' scores and the candidates'.
pub struct Scores {
    /// Whether the scores are validation losses (else training losses:
    /// the run has no validation data).
    pub validated: bool,
    /// Each member's loss and accuracy with the parameters it keeps, on
    /// its validation rows (its fold's, or the validation data), else its
    /// training rows; `None` for a member that diverged.
    pub members: Vec<Option<Evaluation>>,
    /// Each candidate's mean and spread over its members; `None` when one
    /// of them diverged.
    pub candidates: Vec<Option<Spread>>,
    /// The candidate of the lowest mean loss (the first of equals); none
    /// when every candidate has a member that diverged.
    pub best: Option<usize>,
}

/// A candidate's mean and standard deviation (over its members, NumPy's
/// `std`, ddof 0) of the loss and of the accuracy.
pub struct Spread {
    pub loss: (f64, f64),
    pub accuracy: Option<(f64, f64)>,
}

impl Scores {
    /// Scores every member of `run` and every candidate of `grid`.
    pub fn of(run: &mut Members, sets: &Sets, grid: &Grid) -> Result<Scores> {
        let mut members = Vec::new();
        for m in 0..run.len() {
            if let MemberState::Diverged { .. } = run.states()[m] {
                members.push(None);
                continue;
            }
            let rows = scored_rows(sets, &grid.members[m]);
            let data = rows.as_ref().unwrap_or_else(|| scored_set(sets));
            let score = run.member_mut(m).evaluate(data).map_err(text)?;
            members.push(Some(score));
        }
        let candidates: Vec<Option<Spread>> = (0..grid.candidates.len())
            .map(|c| {
                let scores: Option<Vec<Evaluation>> =
                    grid.members_of(c).iter().map(|&m| members[m]).collect();
                scores.map(|s| Spread::of(&s))
            })
            .collect();
        let best = candidates
            .iter()
            .enumerate()
            .filter_map(|(c, s)| s.as_ref().map(|s| (c, s.loss.0)))
            .filter(|(_, loss)| loss.is_finite())
            .fold(None, |best: Option<(usize, f64)>, (c, loss)| match best {
                Some((_, lowest)) if lowest <= loss => best,
                _ => Some((c, loss)),
            })
            .map(|(c, _)| c);
        Ok(Scores {
            validated: sets.validation.is_some(),
            members,
            candidates,
            best,
        })
    }
}

/// The rows a member is scored on, when they are some rows of the data
/// (its fold's, or the rows it trains on); `None`: all of
/// [`scored_set`]'s.
fn scored_rows(sets: &Sets, member: &retroprop::train::Member) -> Option<Dataset> {
    match (&sets.validation, &member.validation_rows, &member.rows) {
        (Some(v), Some(rows), _) => Some(v.select(rows)),
        (None, _, Some(rows)) => Some(sets.train.select(rows)),
        _ => None,
    }
}

/// The data members are scored on: the validation data, else the
/// training data.
fn scored_set(sets: &Sets) -> &Dataset {
    sets.validation.as_ref().unwrap_or(&sets.train)
}

impl Spread {
    fn of(scores: &[Evaluation]) -> Spread {
        let losses: Vec<f64> = scores.iter().map(|s| s.loss).collect();
        let accuracies: Option<Vec<f64>> = scores.iter().map(|s| s.accuracy).collect();
        Spread {
            loss: mean_std(&losses),
            accuracy: accuracies.map(|a| mean_std(&a)),
        }
    }
}

/// The mean and the standard deviation (ddof 0), summed in order.
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
    (mean, variance.sqrt())
}

/// The table of candidates, the best marked `*`, and the line that says
/// which is best and why.
pub fn candidates_table(grid: &Grid, scores: &Scores) -> String {
    let score = if scores.validated { "val" } else { "train" };
    let mut header = vec!["".to_string(), "candidate".into()];
    header.extend(grid.columns().iter().map(|c| c.to_string()));
    header.extend(["members".into(), format!("{score}_loss"), "std".into()]);
    let classification = scores
        .members
        .iter()
        .flatten()
        .any(|s| s.accuracy.is_some());
    if classification {
        header.extend([format!("{score}_accuracy"), "std".into()]);
    }
    let mut rows = vec![header];
    for (c, settings) in grid.candidates.iter().enumerate() {
        let mut row = vec![
            if scores.best == Some(c) { "*" } else { "" }.to_string(),
            c.to_string(),
        ];
        row.extend(settings.iter().map(|v| v.value()));
        row.push(grid.members_of(c).len().to_string());
        match &scores.candidates[c] {
            Some(spread) => {
                row.extend([number(spread.loss.0), number(spread.loss.1)]);
                if let Some((mean, std)) = spread.accuracy {
                    row.extend([
                        format!("{:.2}%", 100.0 * mean),
                        format!("{:.2}%", 100.0 * std),
                    ]);
                }
            }
            None => row.extend(["diverged".to_string(), "-".into()]),
        }
        rows.push(row);
    }
    let mut out = aligned(&rows);
    out += &match scores.best {
        Some(c) => {
            let count = grid.members_of(c).len();
            let over = match (count, grid.folds) {
                (1, _) => String::new(),
                (_, Some(folds)) if count == folds => format!(" over its {folds} folds"),
                _ => format!(" over its {count} members"),
            };
            let which = if scores.validated {
                "validation loss"
            } else {
                "training loss (no validation data)"
            };
            format!(
                "best: candidate {c} ({}), the lowest mean {which}{over}",
                settings_text(grid, c)
            )
        }
        None => "best: none (every candidate has a member that diverged)".into(),
    };
    out
}

/// Candidate `c`'s own settings in words: `lr=0.01 weight_decay=0`.
pub fn settings_text(grid: &Grid, c: usize) -> String {
    let settings: Vec<String> = grid.candidates[c]
        .iter()
        .map(|v| format!("{}={}", v.name(), v.value()))
        .collect();
    match settings.is_empty() {
        true => "the run's settings".into(),
        false => settings.join(" "),
    }
}

/// The table of members: each one's candidate, seed, fold, epochs, steps,
/// score and where it stands.
pub fn members_table(
    run: &Members,
    grid: &Grid,
    scores: &Scores,
    history: &MembersHistory,
) -> String {
    let score = if scores.validated {
        "val_loss"
    } else {
        "train_loss"
    };
    let mut rows = vec![
        [
            "member",
            "candidate",
            "seed",
            "fold",
            "epochs",
            "steps",
            score,
            "state",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for (m, place) in grid.places.iter().enumerate() {
        let trainer = run.member(m);
        rows.push(vec![
            m.to_string(),
            place.candidate.to_string(),
            trainer.config().seed.to_string(),
            place.fold.map_or("-".into(), |f| f.to_string()),
            trainer.epochs_done().to_string(),
            trainer.steps().to_string(),
            scores.members[m].map_or("-".into(), |s| number(s.loss)),
            state(
                run.states()[m],
                &history.members[m],
                history.interrupted,
                trainer.epochs_done(),
            ),
        ]);
    }
    aligned(&rows)
}

/// Where a member stands, in words.
fn state(state: MemberState, history: &History, interrupted: bool, epochs: u64) -> String {
    let kept = history
        .best_epoch
        .map_or(String::new(), |b| format!(" (kept epoch {b})"));
    match state {
        MemberState::Diverged { step, .. } => format!("diverged at step {step}"),
        MemberState::Stopped => "stopped".into(),
        MemberState::StoppedEarly => format!("stopped early at epoch {epochs}{kept}"),
        MemberState::Training if history.stopped_early => {
            format!("stopped early at epoch {epochs}{kept}")
        }
        MemberState::Training if interrupted => "interrupted".into(),
        MemberState::Training if history.cut_mid_epoch => "paused at --steps".into(),
        MemberState::Training => format!("trained{kept}"),
    }
}

/// A loss as the tables show it: six decimals, or six significant digits
/// with an exponent where decimals would hide them.
fn number(value: f64) -> String {
    match value.abs() {
        v if v == 0.0 || (1e-3..1e6).contains(&v) || !v.is_finite() => format!("{value:.6}"),
        _ => format!("{value:.5e}"),
    }
}

/// `rows` as lines of columns, each column as wide as its widest cell,
/// two spaces apart.
fn aligned(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let cells: Vec<String> = row
                .iter()
                .zip(&widths)
                .map(|(cell, &width)| format!("{cell:width$}"))
                .collect();
            cells.join("  ").trim_end().to_string() + "\n"
        })
        .collect()
}
