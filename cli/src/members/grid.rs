//! The members of a run, from the flags: the candidates (every
//! combination of the comma lists), each repeated over `--members` seeds,
//! each on every fold of `--folds`.

use super::folds;
use crate::cli::{MemberValue, TrainArgs};
use crate::resume;
use crate::train::{Result, Sets, flag_error};
use retroprop::train::{Member, ResolvedRun};

/// Where a member stands in the grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Place {
    /// Its candidate.
    pub candidate: usize,
    /// Its fold, with `--folds`.
    pub fold: Option<usize>,
}

/// The candidates and the members that train them.
#[derive(Debug)]
pub struct Grid {
    /// Each candidate's own settings: a value of each list, in the flags'
    /// order (none: the run's settings, one candidate).
    pub candidates: Vec<Vec<MemberValue>>,
    /// Each member's settings, member m = (c × K + k) × N + f for
    /// candidate c, seed k of `--members K` and fold f of `--folds N`.
    pub members: Vec<Member>,
    /// Each member's place.
    pub places: Vec<Place>,
    /// `--members K`: the seeds each candidate is repeated over.
    pub seeds: Option<Vec<u64>>,
    /// `--folds N`.
    pub folds: Option<usize>,
}

impl Grid {
    /// The grid the flags ask for, over the run's settings (`run`) and
    /// training rows.
    pub fn new(args: &TrainArgs, run: &ResolvedRun, sets: &Sets) -> Result<Grid> {
        let lists: Vec<(&'static str, Vec<MemberValue>)> = args
            .member_settings()
            .into_iter()
            .filter(|(_, values)| values.len() > 1)
            .collect();
        check_options(&lists, run)?;
        let seeds = seeds(args, &lists, run.config.seed)?;
        let fold_rows = match args.folds {
            Some(count) => Some(folds::split(&sets.train, count, run.config.seed)?),
            None => None,
        };
        let candidates = combinations(&lists);
        let mut grid = Grid {
            members: Vec::new(),
            places: Vec::new(),
            seeds: seeds.clone(),
            folds: args.folds,
            candidates,
        };
        let repeats: Vec<Option<u64>> = match seeds {
            Some(seeds) => seeds.into_iter().map(Some).collect(),
            None => vec![None],
        };
        let rows = sets.train.rows();
        for (candidate, settings) in grid.candidates.iter().enumerate() {
            for &seed in &repeats {
                let own = own_member(settings, seed);
                let Some(fold_rows) = &fold_rows else {
                    grid.members.push(own);
                    grid.places.push(Place {
                        candidate,
                        fold: None,
                    });
                    continue;
                };
                for (fold, held) in fold_rows.iter().enumerate() {
                    grid.members.push(Member {
                        rows: Some(folds::rest(rows, held)),
                        validation_rows: Some(held.clone()),
                        ..own.clone()
                    });
                    grid.places.push(Place {
                        candidate,
                        fold: Some(fold),
                    });
                }
            }
        }
        Ok(grid)
    }

    /// Each member's candidate.
    pub fn candidate_of_each(&self) -> Vec<usize> {
        self.places.iter().map(|p| p.candidate).collect()
    }

    /// The members of candidate `c`.
    pub fn members_of(&self, c: usize) -> Vec<usize> {
        (0..self.places.len())
            .filter(|&m| self.places[m].candidate == c)
            .collect()
    }

    /// The names of the settings the candidates differ in (the lists').
    pub fn columns(&self) -> Vec<&'static str> {
        self.candidates
            .first()
            .map_or(Vec::new(), |c| c.iter().map(MemberValue::name).collect())
    }
}

/// A member with a candidate's settings (and a seed of `--members`).
fn own_member(settings: &[MemberValue], seed: Option<u64>) -> Member {
    let mut member = Member {
        seed,
        ..Member::default()
    };
    for value in settings {
        match value {
            MemberValue::Option(name, text) => member
                .optimizer_options
                .push((name.to_string(), text.clone())),
            MemberValue::Schedule(schedule) => member.lr_schedule = Some(*schedule),
            MemberValue::Dropout(p) => member.dropout = Some(*p),
            MemberValue::Seed(seed) => member.seed = Some(*seed),
        }
    }
    member
}

/// Every combination of one value of each list, the first list's value
/// varying slowest and each list's values in the order given.
fn combinations(lists: &[(&'static str, Vec<MemberValue>)]) -> Vec<Vec<MemberValue>> {
    lists.iter().fold(vec![Vec::new()], |partial, (_, values)| {
        partial
            .iter()
            .flat_map(|head| {
                values.iter().map(move |value| {
                    let mut combination = head.clone();
                    combination.push(value.clone());
                    combination
                })
            })
            .collect()
    })
}

/// The seeds `--members K` repeats each candidate over: the run's seed
/// and the K − 1 after it. A list of seeds names them instead.
fn seeds(
    args: &TrainArgs,
    lists: &[(&'static str, Vec<MemberValue>)],
    seed: u64,
) -> Result<Option<Vec<u64>>> {
    let Some(count) = args.members else {
        return Ok(None);
    };
    if count == 0 {
        return Err("--members 0: at least 1".into());
    }
    if lists.iter().any(|(name, _)| *name == "seed") {
        return Err(format!(
            "--members {count} repeats each candidate over {count} seeds from --seed, and a \
             --seed list names the seeds: give one or the other"
        ));
    }
    let last = seed.checked_add(count as u64 - 1).ok_or_else(|| {
        format!(
            "--members {count} from --seed {seed}: the seeds run past {}",
            u64::MAX
        )
    })?;
    Ok(Some((seed..=last).collect()))
}

/// Each value of an optimizer option's list, checked against the run's
/// optimizer, so that a bad one is named by its flag before anything
/// trains.
fn check_options(lists: &[(&'static str, Vec<MemberValue>)], run: &ResolvedRun) -> Result<()> {
    for value in lists.iter().flat_map(|(_, values)| values) {
        let MemberValue::Option(name, text) = value else {
            continue;
        };
        let mut optimizer = run.config.optimizer;
        optimizer
            .set_option(name, text)
            .and_then(|()| optimizer.validate())
            .map_err(|e| match e {
                e @ retroprop::Error::UnknownOption { .. } => flag_error(e),
                e => format!("{} {text}: {e}", resume::flag(name)),
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_list_varies_slowest() {
        let lr = |x: &str| MemberValue::Option("lr", x.into());
        let wd = |x: &str| MemberValue::Option("weight_decay", x.into());
        let lists = [
            ("lr", vec![lr("1"), lr("2"), lr("3")]),
            ("weight_decay", vec![wd("0"), wd("9")]),
        ];
        let grid = combinations(&lists);
        assert_eq!(grid.len(), 6);
        assert_eq!(grid[0], [lr("1"), wd("0")]);
        assert_eq!(grid[1], [lr("1"), wd("9")]);
        assert_eq!(grid[5], [lr("3"), wd("9")]);
        assert_eq!(combinations(&[]), [Vec::<MemberValue>::new()]);
    }
}
