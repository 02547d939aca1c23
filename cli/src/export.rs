//! `retroprop export`: a model file as an ONNX graph (`retroprop::io::onnx`):
//! one network, or of a file of members the ensemble's mean or one member.

use crate::cli::ExportArgs;
use crate::predict::ModelFile;
use retroprop::io::onnx::{MembersOnnx, OnnxOptions, members_onnx_bytes, onnx_bytes};

/// Reads `--model` and writes `--onnx`.
pub fn export(args: ExportArgs) -> Result<(), String> {
    let options = OnnxOptions {
        probabilities: args.probabilities,
        both_classes: args.both_classes,
    };
    let bytes = match ModelFile::open(&args.model, args.member)? {
        ModelFile::One(model) => onnx_bytes(&model, &options),
        ModelFile::Members(members) => members_onnx_bytes(
            &members,
            &MembersOnnx {
                member: None,
                options,
            },
        ),
    };
    bytes
        .and_then(|bytes| retroprop::io::write_atomic(&args.onnx, &bytes))
        .map_err(|e| format!("--onnx: {e}"))
}
