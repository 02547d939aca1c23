//! `retroprop export`: a model file as an ONNX graph (`retroprop::io::onnx`).

use crate::cli::ExportArgs;
use retroprop::io::load_model;
use retroprop::io::onnx::{OnnxOptions, export_onnx};

/// Reads `--model` and writes `--onnx`.
pub fn export(args: ExportArgs) -> Result<(), String> {
    let model = load_model(&args.model)
        .and_then(|m| m.complete(&args.model))
        .map_err(|e| e.to_string())?;
    let options = OnnxOptions {
        probabilities: args.probabilities,
        both_classes: args.both_classes,
    };
    export_onnx(&args.onnx, &model, &options).map_err(|e| format!("--onnx: {e}"))
}
