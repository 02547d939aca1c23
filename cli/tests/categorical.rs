//! Categorical CSV columns: a column of text (or one `--categorical`
//! names) is one-hot encoded after the numeric features, as the `tabm`
//! package's `cat_cardinalities` does; its categories travel in the model
//! file (`retroprop.categories`) and `predict` and `evaluate` encode with
//! them. The proof: the same run on the file one-hot encoded by hand
//! (numeric columns first, then each categorical column's block in column
//! order, categories sorted) saves the same tensors and predicts the same.

mod support;

use std::collections::BTreeMap;
use support::{Dir, fails, ok};

/// Rows of (size, color, weight, code, shape, label): two text columns,
/// a column of numeric-looking codes, and numbers between them.
fn rows() -> Vec<(f32, &'static str, f32, u32, &'static str, u32)> {
    let colors = ["red", "blue", "green", "amber"];
    let shapes = ["tri", "sq"];
    (0..90u32)
        .map(|i| {
            let size = ((i * 37) % 101) as f32 / 50.0 - 1.0;
            let weight = ((i * 53) % 89) as f32 / 30.0;
            let color = colors[(i * 7 % 11) as usize % 4];
            let code = [10, 9, 300][(i % 5) as usize % 3];
            let shape = shapes[(i / 3 % 2) as usize];
            let label = u32::from((color == "red") ^ (size > 0.2) ^ (code == 9));
            (size, color, weight, code, shape, label)
        })
        .collect()
}

/// The rows as the user's CSV file, with a header.
fn categorical_csv(dir: &Dir, name: &str) -> String {
    let mut text = String::from("size,color,weight,code,shape,label\n");
    for (size, color, weight, code, shape, label) in rows() {
        text += &format!("{size},{color},{weight},{code},{shape},{label}\n");
    }
    dir.write(name, &text);
    dir.arg(name)
}

/// The rows one-hot encoded as the encoding is specified: the numeric
/// columns in file order, then each categorical column's categories
/// (sorted as strings) as 0/1 columns, in column order. `code` is
/// categorical only when `code_is_categorical`.
fn one_hot_csv(dir: &Dir, name: &str, code_is_categorical: bool) -> String {
    let rows = rows();
    let sorted = |values: Vec<String>| {
        let mut v = values;
        v.sort();
        v.dedup();
        v
    };
    let colors = sorted(rows.iter().map(|r| r.1.to_string()).collect());
    let codes = sorted(rows.iter().map(|r| r.3.to_string()).collect());
    let shapes = sorted(rows.iter().map(|r| r.4.to_string()).collect());
    let hot = |categories: &[String], value: String| -> Vec<String> {
        categories
            .iter()
            .map(|c| if *c == value { "1" } else { "0" }.to_string())
            .collect()
    };
    let mut text = String::new();
    for (size, color, weight, code, shape, label) in rows {
        let mut fields = vec![size.to_string(), weight.to_string()];
        if !code_is_categorical {
            fields.push(code.to_string());
        }
        fields.extend(hot(&colors, color.to_string()));
        if code_is_categorical {
            fields.extend(hot(&codes, code.to_string()));
        }
        fields.extend(hot(&shapes, shape.to_string()));
        fields.push(label.to_string());
        text += &(fields.join(",") + "\n");
    }
    dir.write(name, &text);
    dir.arg(name)
}

/// Trains on `data` with `extra` flags, the same settings every time;
/// the model file's path.
fn train(dir: &Dir, data: &str, name: &str, extra: &[&str]) -> String {
    let model = dir.arg(name);
    let mut args = vec![
        "train",
        "--data",
        data,
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--seed",
        "5",
        "--device",
        "cpu",
        "--quiet",
        "--save",
        &model,
    ];
    args.extend_from_slice(extra);
    ok(&args);
    model
}

/// A safetensors file's header: each tensor's entry, and the metadata.
fn header(
    path: &str,
) -> (
    BTreeMap<String, serde_json::Value>,
    BTreeMap<String, String>,
) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = header
        .remove("__metadata__")
        .map(|m| serde_json::from_value(m).unwrap())
        .unwrap_or_default();
    (header, meta)
}

/// Each tensor's bytes.
fn tensors(path: &str) -> BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| (name, view.data().to_vec()))
        .collect()
}

#[test]
fn a_text_column_trains_as_its_one_hot_columns_would() {
    let dir = Dir::new("categorical-one-hot");
    let data = categorical_csv(&dir, "table.csv");
    let model = train(&dir, &data, "cat.safetensors", &[]);
    let by_hand = one_hot_csv(&dir, "hot.csv", false);
    let reference = train(&dir, &by_hand, "hot.safetensors", &[]);
    assert_eq!(
        tensors(&model),
        tensors(&reference),
        "the run on the text columns and on their one-hot columns saved different tensors"
    );
    let (entries, meta) = header(&model);
    // size, weight, code; color's 4 slots; shape's 2.
    assert_eq!(
        entries["layers.0.weight"]["shape"],
        serde_json::json!([64, 9])
    );
    let categories: serde_json::Value =
        serde_json::from_str(&meta["retroprop.categories"]).unwrap();
    assert_eq!(
        categories,
        serde_json::json!({"features": 5, "columns": [
            {"column": 2, "name": "color", "categories": ["amber", "blue", "green", "red"]},
            {"column": 5, "name": "shape", "categories": ["sq", "tri"]},
        ]})
    );
    assert!(!header(&reference).1.contains_key("retroprop.categories"));
    // Predicting and evaluating encode the file with the model's
    // categories: the same outputs as the one-hot file's.
    let predicted = ok(&[
        "predict", "--model", &model, "--data", &data, "--device", "cpu",
    ]);
    let expected = ok(&[
        "predict", "--model", &reference, "--data", &by_hand, "--device", "cpu",
    ]);
    assert_eq!(predicted, expected);
    let evaluated = ok(&[
        "evaluate", "--model", &model, "--data", &data, "--device", "cpu",
    ]);
    let expected = ok(&[
        "evaluate", "--model", &reference, "--data", &by_hand, "--device", "cpu",
    ]);
    assert_eq!(evaluated, expected);
}

#[test]
fn categorical_names_a_column_of_numeric_codes_by_name_or_index() {
    let dir = Dir::new("categorical-codes");
    let data = categorical_csv(&dir, "table.csv");
    let by_name = train(&dir, &data, "name.safetensors", &["--categorical", "code"]);
    let by_index = train(&dir, &data, "index.safetensors", &["--categorical", "4"]);
    let by_hand = one_hot_csv(&dir, "hot.csv", true);
    let reference = train(&dir, &by_hand, "hot.safetensors", &[]);
    assert_eq!(tensors(&by_name), tensors(&reference));
    assert_eq!(tensors(&by_index), tensors(&reference));
    let (_, meta) = header(&by_index);
    let categories: serde_json::Value =
        serde_json::from_str(&meta["retroprop.categories"]).unwrap();
    // Sorted as strings, as the docs say: "10" before "300" before "9".
    assert_eq!(
        categories["columns"][1],
        serde_json::json!({"column": 4, "name": "code", "categories": ["10", "300", "9"]})
    );
}

#[test]
fn a_headerless_file_reads_its_text_columns_as_categories() {
    let dir = Dir::new("categorical-headerless");
    let data = dir.write("t.csv", "red,1.5,0\nblue,2.5,1\nred,0.5,1\nblue,0.1,0\n");
    let data = data.to_str().unwrap();
    let model = train(&dir, data, "m.safetensors", &[]);
    let (_, meta) = header(&model);
    let categories: serde_json::Value =
        serde_json::from_str(&meta["retroprop.categories"]).unwrap();
    assert_eq!(
        categories,
        serde_json::json!({"features": 2, "columns": [
            {"column": 1, "name": null, "categories": ["blue", "red"]},
        ]})
    );
    let out = ok(&[
        "predict", "--model", &model, "--data", data, "--device", "cpu",
    ]);
    assert_eq!(out.lines().count(), 5, "a header and four rows:\n{out}");
}

#[test]
fn an_unseen_category_at_predict_time_is_an_error_naming_row_column_and_value() {
    let dir = Dir::new("categorical-unseen");
    let data = categorical_csv(&dir, "table.csv");
    let model = train(&dir, &data, "m.safetensors", &[]);
    let new = dir.write(
        "new.csv",
        "size,color,weight,code,shape\n0.5,red,1,9,sq\n0.1,violet,2,10,tri\n",
    );
    let new = new.to_str().unwrap();
    let parts = [
        "new.csv",
        "row 3, column 2 (`color`): category `violet` was not seen in training",
        "`amber`, `blue`, `green`, `red`",
    ];
    fails(&["predict", "--model", &model, "--data", new], 1, &parts);
    let labelled = dir.write(
        "labelled.csv",
        "size,color,weight,code,shape,label\n0.5,red,1,9,sq,1\n0.1,violet,2,10,tri,0\n",
    );
    let labelled = labelled.to_str().unwrap();
    let parts = ["row 3, column 2 (`color`): category `violet`"];
    fails(
        &["evaluate", "--model", &model, "--data", labelled],
        1,
        &parts,
    );
}

#[test]
fn bad_categorical_input_is_an_error_naming_where() {
    let dir = Dir::new("categorical-errors");
    let data = categorical_csv(&dir, "table.csv");
    // A stray word in a numeric column stays the error it was.
    let stray = dir.write(
        "stray.csv",
        "a,b,y\n1,red,0\n2,blue,1\nthree,red,0\n4,blue,1\n",
    );
    let parts = ["stray.csv", "row 4, column 1: `three` is not a number"];
    fails(&["train", "--data", stray.to_str().unwrap()], 1, &parts);
    let parts = [
        "categorical column `colour` is not a column of the header",
        "color",
    ];
    fails(
        &["train", "--data", &data, "--categorical", "colour"],
        1,
        &parts,
    );
    let parts = ["categorical column 6 is column 6 of 6, a target"];
    fails(&["train", "--data", &data, "--categorical", "6"], 1, &parts);
    let headerless = dir.write("h.csv", "1,2,0\n3,4,1\n");
    let parts = ["`a`: the file has no header row"];
    fails(
        &[
            "train",
            "--data",
            headerless.to_str().unwrap(),
            "--categorical",
            "a",
        ],
        1,
        &parts,
    );
    let empty = dir.write("empty.csv", "a,b,y\n1,red,0\n2,,1\n");
    let parts = ["row 3, column 2 (`b`): an empty cell in a categorical column"];
    fails(&["train", "--data", empty.to_str().unwrap()], 1, &parts);
}

#[test]
fn categorical_columns_are_refused_where_the_format_is_not_csv() {
    let dir = Dir::new("categorical-formats");
    let data = categorical_csv(&dir, "table.csv");
    let model = train(&dir, &data, "m.safetensors", &[]);
    let npy = Dir::new("categorical-formats-npy");
    let x = npy.write("x.npy", "");
    let parts = [
        "the model one-hot encodes categorical columns",
        "give the rows as CSV",
    ];
    fails(
        &["predict", "--model", &model, "--data", x.to_str().unwrap()],
        1,
        &parts,
    );
    let parts = ["--stream", "leave --stream out"];
    fails(
        &["predict", "--model", &model, "--data", &data, "--stream"],
        1,
        &parts,
    );
}

#[test]
fn a_file_of_categorical_features_only_predicts_with_or_without_a_header() {
    let dir = Dir::new("categorical-only");
    let data = dir.write("t.csv", "color,y\nred,0\nblue,1\nred,1\nblue,0\n");
    let model = train(&dir, data.to_str().unwrap(), "m.safetensors", &[]);
    let with_header = dir.write("h.csv", "color\nred\nblue\n");
    let headerless = dir.write("n.csv", "red\nblue\n");
    let a = ok(&[
        "predict",
        "--model",
        &model,
        "--data",
        with_header.to_str().unwrap(),
    ]);
    let b = ok(&[
        "predict",
        "--model",
        &model,
        "--data",
        headerless.to_str().unwrap(),
    ]);
    assert_eq!(a, b);
    assert_eq!(a.lines().count(), 3, "a header and two rows:\n{a}");
    // A headerless first row with a new category is that row, an error.
    let unseen = dir.write("u.csv", "green\nred\n");
    let parts = ["row 1, column 1 (`color`): category `green` was not seen"];
    fails(
        &[
            "predict",
            "--model",
            &model,
            "--data",
            unseen.to_str().unwrap(),
        ],
        1,
        &parts,
    );
}
