//! Which loss a data set's targets suggest when none is named: one target
//! column is read as class labels only when it looks like classes (whole
//! numbers from 0, nearly every one present, at least two rows a class);
//! everything else is regression. Before, any column of non-negative whole
//! numbers was taken as classes: scikit-learn's diabetes data (targets 25
//! to 346) trained as a 347-way classifier at 0 % accuracy.

use retroprop::{Dataset, Loss, Targets};

fn column(values: Vec<f32>) -> Dataset {
    let rows = values.len();
    Dataset::new(vec![0.0; rows], 1, Targets::Values { values, width: 1 }).unwrap()
}

fn suggests(values: Vec<f32>, loss: Loss, reason: &str) {
    let data = column(values);
    let choice = data.suggested_loss();
    assert_eq!(choice.loss, loss, "{}", choice.reason);
    assert!(
        choice.reason.contains(reason),
        "the reason names what decided it ({reason:?}): {}",
        choice.reason
    );
}

#[test]
fn class_labels_from_0_with_every_class_present_suggest_cross_entropy() {
    let digits: Vec<f32> = (0..1797).map(|i| (i % 10) as f32).collect();
    suggests(digits, Loss::CrossEntropy, "class labels 0 to 9");
    suggests(vec![0., 1., 1., 0.], Loss::CrossEntropy, "--loss mse");
    // Nine classes of ten present: nearly every one.
    let nine: Vec<f32> = (0..90)
        .map(|i| [0, 1, 2, 3, 4, 5, 6, 8, 9][i % 9] as f32)
        .collect();
    suggests(nine, Loss::CrossEntropy, "class labels 0 to 9");
}

#[test]
fn whole_numbers_that_are_not_classes_suggest_mse() {
    // scikit-learn's diabetes targets: 442 rows, whole numbers 25 to 346.
    let diabetes: Vec<f32> = (0..442).map(|i| (25 + (i * 37) % 322) as f32).collect();
    suggests(diabetes, Loss::Mse, "from 25");
    // Counts 0 to 50 000: sparse, about one row a value.
    let counts: Vec<f32> = (0..50_863).map(|i| ((i * 7919) % 50_001) as f32).collect();
    suggests(counts, Loss::Mse, "fewer than two rows");
    // Seventeen values of twenty present: too sparse for classes.
    let sparse: Vec<f32> = (0..200)
        .map(|i| ((i % 17) + (i % 17 > 5) as usize * 3) as f32)
        .collect();
    suggests(sparse, Loss::Mse, "too sparse");
    // Ten classes in fifteen rows.
    suggests(
        (0..15).map(|i| (i % 10) as f32).collect(),
        Loss::Mse,
        "fewer than two rows",
    );
    // A huge whole number allocates nothing and is no class.
    suggests(vec![0., 1e30, 1., 0.], Loss::Mse, "fewer than two rows");
}

#[test]
fn real_values_negative_values_and_several_columns_suggest_mse() {
    suggests(vec![0.5, 1.0, 2.0, 0.0], Loss::Mse, "holds 0.5");
    suggests(vec![0., 1., -1., 0.], Loss::Mse, "holds -1");
    let two = Dataset::new(
        vec![0.0; 2],
        1,
        Targets::Values {
            values: vec![0., 1., 1., 0.],
            width: 2,
        },
    )
    .unwrap();
    let choice = two.suggested_loss();
    assert_eq!(choice.loss, Loss::Mse);
    assert!(
        choice.reason.contains("2 target columns"),
        "{}",
        choice.reason
    );
}
