//! The members of a run as files ([`crate::train::Members`]): a model
//! file of every member and a checkpoint of every member.
//!
//! Member m's tensors are its model file's under `members.{m}.`
//! (`members.{m}.layers.{i}.weight`, `[out, in]`), so the file is the
//! `state_dict` of
//!
//! ```python
//! class Members(torch.nn.Module):
//!     def __init__(self, sizes, k):
//!         super().__init__()
//!         self.members = torch.nn.ModuleList([Mlp(sizes) for _ in range(k)])
//! ```
//!
//! (`Mlp` as in [`crate::io`]). The metadata holds what the members share
//! as a model file does (`retroprop.arch`, `retroprop.activations`,
//! `retroprop.loss`, the standardisation), `retroprop.members` (how many)
//! and each member's own settings as `retroprop.member.{m}` (its
//! [`Member::text`](crate::train::Member::text)). A checkpoint adds each
//! member's optimizer state (`members.{m}.optimizer.exp_avg`, …), its
//! counters and run state under `retroprop.member.{m}.…` (the keys a
//! lone checkpoint has under `retroprop.…`), and where it stands
//! (`retroprop.member.{m}.state`: `training`, `stopped_early`,
//! `stopped`, or `diverged:STEP:LOSS`).

use super::{
    LoadedModel, Parts, RunNotes, SavedModel, checkpoint_parts, encode_f32_safetensors,
    model_parts, notes_metadata, open_safetensors, parse_checkpoint, parse_model, read_file,
    write_atomic,
};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::optim::Optimizer;
use crate::train::MemberState;
use std::collections::BTreeMap;
use std::path::Path;

/// How many members a file holds.
const COUNT: &str = "retroprop.members";

/// The metadata every member shares, kept once: a model file's own keys,
/// and the optimizer's kind and state layout.
const SHARED: [&str; 9] = [
    "format",
    "retroprop.version",
    "retroprop.arch",
    "retroprop.activations",
    "retroprop.loss",
    "retroprop.mean",
    "retroprop.std",
    "retroprop.optimizer",
    "retroprop.optimizer_state",
];

/// Every member of a run: the network, loss and standardisation they
/// share, each one's parameters and each one's settings in words.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedMembers {
    /// What the members share (its `params` are not read).
    pub model: SavedModel,
    /// Each member's flat parameters.
    pub params: Vec<Vec<f32>>,
    /// Each member's own settings ([`Member::text`](crate::train::Member::text)).
    pub settings: Vec<String>,
}

/// What a members file holds, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedMembers {
    /// Each member's model, as a model file of its own would load.
    pub members: Vec<LoadedModel>,
    /// Each member's own settings.
    pub settings: Vec<String>,
}

/// Whether a safetensors file's bytes hold the members of a run (rather
/// than one network).
pub fn is_members(buffer: &[u8], path: &Path) -> Result<bool> {
    let (meta, _) = open_safetensors(buffer, path)?;
    Ok(meta.contains_key(COUNT))
}

/// The bytes of a model file of every member, with `notes` (as
/// [`noted_model_bytes`](super::noted_model_bytes)).
pub fn members_bytes(name: &Path, members: &SavedMembers, notes: &RunNotes) -> Result<Vec<u8>> {
    members.model.mlp.require_plain("a file of members")?;
    let parts = members
        .params
        .iter()
        .map(|params| {
            let model = SavedModel {
                params: params.clone(),
                ..members.model.clone()
            };
            model_parts(name, &model, Vec::new(), notes_metadata(notes))
        })
        .collect::<Result<Vec<_>>>()?;
    encode_members(name, parts, &members.settings, &[])
}

/// Writes [`members_bytes`] to `path`, atomically.
pub fn save_members(path: &Path, members: &SavedMembers, notes: &RunNotes) -> Result<()> {
    write_atomic(path, &members_bytes(path, members, notes)?)
}

/// Writes a checkpoint of every member: each one's model, optimizer state,
/// counters and settings (as [`save_checkpoint`](super::save_checkpoint)
/// writes a lone run's) and where it stands. Atomic; refuses NaN.
pub fn save_members_checkpoint(
    path: &Path,
    members: &SavedMembers,
    optimizer: &Optimizer,
    checkpoints: &[Checkpoint],
    states: &[MemberState],
) -> Result<()> {
    members.model.mlp.require_plain("a checkpoint of members")?;
    if checkpoints.len() != members.settings.len() || states.len() != checkpoints.len() {
        return Err(Error::Shape {
            what: format!("checkpoints of the members for {}", path.display()),
            expected: members.settings.len(),
            got: checkpoints.len().min(states.len()),
        });
    }
    let parts = checkpoints
        .iter()
        .map(|c| {
            let model = SavedModel {
                params: c.params.clone(),
                ..members.model.clone()
            };
            let (tensors, meta) = checkpoint_parts(path, &model, optimizer, c)?;
            model_parts(path, &model, tensors, meta)
        })
        .collect::<Result<Vec<_>>>()?;
    let states: Vec<String> = states.iter().map(state_text).collect();
    write_atomic(
        path,
        &encode_members(path, parts, &members.settings, &states)?,
    )
}

/// Reads a model file of every member ([`save_members`]).
pub fn load_members(path: &Path) -> Result<LoadedMembers> {
    parse_members(&read_file(path)?, path)
}

/// [`load_members`] on a file's bytes; `path` names it in errors.
pub fn parse_members(buffer: &[u8], path: &Path) -> Result<LoadedMembers> {
    let split = split_members(buffer, path)?;
    Ok(LoadedMembers {
        members: split
            .files
            .iter()
            .map(|bytes| parse_model(bytes, path))
            .collect::<Result<_>>()?,
        settings: split.settings,
    })
}

/// What a checkpoint of every member holds, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedMembersCheckpoint {
    /// What the members share, and each one's parameters.
    pub members: LoadedMembers,
    /// The optimizer's name.
    pub optimizer: String,
    /// Each member's checkpoint.
    pub checkpoints: Vec<Checkpoint>,
    /// Where each member stood.
    pub states: Vec<MemberState>,
}

/// Reads a checkpoint of every member ([`save_members_checkpoint`]).
pub fn load_members_checkpoint(path: &Path) -> Result<LoadedMembersCheckpoint> {
    parse_members_checkpoint(&read_file(path)?, path)
}

/// [`load_members_checkpoint`] on a file's bytes.
pub fn parse_members_checkpoint(buffer: &[u8], path: &Path) -> Result<LoadedMembersCheckpoint> {
    let split = split_members(buffer, path)?;
    let mut members = Vec::new();
    let mut checkpoints = Vec::new();
    let mut optimizer = String::new();
    for bytes in &split.files {
        let (model, name, checkpoint) = parse_checkpoint(bytes, path)?;
        members.push(model);
        checkpoints.push(checkpoint);
        optimizer = name;
    }
    let states = split
        .states
        .iter()
        .enumerate()
        .map(|(m, text)| {
            parse_state(text).ok_or_else(|| Error::Parse {
                path: path.to_path_buf(),
                message: format!("metadata retroprop.member.{m}.state: `{text}` is not a state"),
            })
        })
        .collect::<Result<_>>()?;
    Ok(LoadedMembersCheckpoint {
        members: LoadedMembers {
            members,
            settings: split.settings,
        },
        optimizer,
        checkpoints,
        states,
    })
}

/// Each member's file as a lone run's, cut out of a members file.
struct Split {
    files: Vec<Vec<u8>>,
    settings: Vec<String>,
    states: Vec<String>,
}

/// The members' tensors and metadata, each member's under its prefix, and
/// what they share once.
fn encode_members(
    path: &Path,
    parts: Vec<Parts>,
    settings: &[String],
    states: &[String],
) -> Result<Vec<u8>> {
    let mut tensors = Vec::new();
    let mut meta = BTreeMap::new();
    meta.insert(COUNT.to_string(), parts.len().to_string());
    for (m, (member_tensors, member_meta)) in parts.into_iter().enumerate() {
        for (name, data, shape) in member_tensors {
            tensors.push((format!("members.{m}.{name}"), data, shape));
        }
        for (key, value) in member_meta {
            match key.strip_prefix("retroprop.") {
                Some(_) if SHARED.contains(&key.as_str()) => {
                    meta.insert(key, value);
                }
                Some(rest) => {
                    meta.insert(format!("retroprop.member.{m}.{rest}"), value);
                }
                None => {
                    meta.insert(key, value);
                }
            }
        }
        meta.insert(
            format!("retroprop.member.{m}"),
            settings.get(m).cloned().unwrap_or_default(),
        );
        if let Some(state) = states.get(m) {
            meta.insert(format!("retroprop.member.{m}.state"), state.clone());
        }
    }
    encode_f32_safetensors(tensors, &meta).map_err(|message| Error::Parse {
        path: path.to_path_buf(),
        message,
    })
}

/// Cuts a members file into a lone run's file a member (its tensors
/// without their prefix, the shared metadata with its own).
fn split_members(buffer: &[u8], path: &Path) -> Result<Split> {
    let parse = |message: String| Error::Parse {
        path: path.to_path_buf(),
        message,
    };
    let (meta, file) = open_safetensors(buffer, path)?;
    let count: usize = meta
        .get(COUNT)
        .ok_or_else(|| {
            parse(format!(
                "metadata {COUNT} is missing: not a file of members"
            ))
        })?
        .parse()
        .map_err(|_| parse(format!("metadata {COUNT} is not a count")))?;
    let mut split = Split {
        files: Vec::new(),
        settings: Vec::new(),
        states: Vec::new(),
    };
    for m in 0..count {
        let own = format!("retroprop.member.{m}.");
        let mut member_meta = BTreeMap::new();
        for (key, value) in &meta {
            if let Some(rest) = key.strip_prefix(&own) {
                if rest == "state" {
                    split.states.push(value.clone());
                } else {
                    member_meta.insert(format!("retroprop.{rest}"), value.clone());
                }
            } else if SHARED.contains(&key.as_str()) {
                member_meta.insert(key.clone(), value.clone());
            }
        }
        split.settings.push(
            meta.get(&format!("retroprop.member.{m}"))
                .cloned()
                .unwrap_or_default(),
        );
        let prefix = format!("members.{m}.");
        let mut tensors = Vec::new();
        for name in file.names() {
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let view = file
                .tensor(name)
                .map_err(|e| parse(format!("tensor {name}: {e}")))?;
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(parse(format!("tensor {name} is not float32")));
            }
            tensors.push((
                rest.to_string(),
                view.data().to_vec(),
                view.shape().to_vec(),
            ));
        }
        if tensors.is_empty() {
            return Err(parse(format!("no tensor of member {m} (members.{m}.…)")));
        }
        split
            .files
            .push(encode_f32_safetensors(tensors, &member_meta).map_err(&parse)?);
    }
    Ok(split)
}

/// A member's state as the file writes it.
fn state_text(state: &MemberState) -> String {
    match state {
        MemberState::Training => "training".into(),
        MemberState::StoppedEarly => "stopped_early".into(),
        MemberState::Stopped => "stopped".into(),
        MemberState::Diverged { step, loss } => format!("diverged:{step}:{loss}"),
    }
}

/// [`state_text`] read back.
fn parse_state(text: &str) -> Option<MemberState> {
    match text {
        "training" => Some(MemberState::Training),
        "stopped_early" => Some(MemberState::StoppedEarly),
        "stopped" => Some(MemberState::Stopped),
        _ => {
            let mut parts = text.strip_prefix("diverged:")?.splitn(2, ':');
            Some(MemberState::Diverged {
                step: parts.next()?.parse().ok()?,
                loss: parts.next()?.parse().ok()?,
            })
        }
    }
}
