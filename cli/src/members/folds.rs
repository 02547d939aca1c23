//! `--folds N`: the training rows in N folds, for cross-validation.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use retroprop::{Dataset, Targets};

/// Each of `count` folds' rows of `data`, ascending: the rows shuffled as
/// `--val-split` shuffles them (rand's `shuffle` with
/// `ChaCha8Rng::seed_from_u64(seed)`), then for class labels ordered by
/// class (a stable sort, so each class keeps the shuffled order), and
/// dealt out in turn, the i-th to fold i mod N: each fold holds each
/// class's rows to within one (stratified), and the folds' sizes differ
/// by at most one.
pub fn split(data: &Dataset, count: usize, seed: u64) -> Result<Vec<Vec<u32>>, String> {
    let rows = data.rows();
    if count < 2 {
        return Err(format!("--folds {count}: at least 2"));
    }
    if count > rows {
        return Err(format!(
            "--folds {count}: the training data has only {rows} rows"
        ));
    }
    let mut order: Vec<u32> = (0..rows as u32).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    if let Targets::Classes(labels) = data.targets() {
        order.sort_by_key(|&row| labels[row as usize]);
    }
    let mut folds = vec![Vec::new(); count];
    for (i, &row) in order.iter().enumerate() {
        folds[i % count].push(row);
    }
    for fold in &mut folds {
        fold.sort_unstable();
    }
    Ok(folds)
}

/// The rows of `rows` rows that `fold` (ascending) does not hold, ascending:
/// what its member trains on.
pub fn rest(rows: usize, fold: &[u32]) -> Vec<u32> {
    let mut held = fold.iter().peekable();
    (0..rows as u32)
        .filter(|row| {
            let in_fold = held.peek() == Some(&row);
            if in_fold {
                held.next();
            }
            !in_fold
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(labels: Vec<u32>) -> Dataset {
        let x = (0..labels.len()).map(|i| i as f32).collect();
        Dataset::new(x, 1, Targets::Classes(labels)).unwrap()
    }

    #[test]
    fn folds_cover_every_row_once_and_hold_each_class_evenly() {
        // 3 classes of 17, 9 and 4 rows in 4 folds.
        let labels: Vec<u32> = (0..30)
            .map(|i| {
                if i < 17 {
                    0
                } else if i < 26 {
                    1
                } else {
                    2
                }
            })
            .collect();
        let data = classes(labels.clone());
        let folds = split(&data, 4, 7).unwrap();
        let mut all: Vec<u32> = folds.concat();
        all.sort_unstable();
        assert_eq!(all, (0..30).collect::<Vec<_>>());
        for class in 0..3 {
            let counts: Vec<usize> = folds
                .iter()
                .map(|f| f.iter().filter(|&&r| labels[r as usize] == class).count())
                .collect();
            let (lo, hi) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
            assert!(hi - lo <= 1, "class {class} in the folds: {counts:?}");
        }
        let sizes: Vec<usize> = folds.iter().map(Vec::len).collect();
        assert!(
            sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1,
            "{sizes:?}"
        );
        assert_eq!(split(&data, 4, 7).unwrap(), folds, "seeded");
        assert_ne!(split(&data, 4, 8).unwrap(), folds, "the seed draws them");
    }

    #[test]
    fn the_rest_of_a_fold_is_every_other_row() {
        assert_eq!(rest(7, &[1, 4, 5]), [0, 2, 3, 6]);
        assert_eq!(rest(3, &[]), [0, 1, 2]);
    }

    #[test]
    fn fold_counts_the_data_cannot_hold_are_refused() {
        let data = classes(vec![0, 1, 0]);
        assert!(split(&data, 1, 0).unwrap_err().contains("at least 2"));
        assert!(split(&data, 4, 0).unwrap_err().contains("only 3 rows"));
    }
}
