//! The distributed step and what the ranks must agree on around it: the
//! state they start from, the run they are in, and the numbers every
//! decision reads (losses, validation).

use super::{Collective, agree, share_bounds, shared_error};
use crate::backend::{Backend, BatchShare, BatchSums, DeviceData, LayerNorms, StepsReport};
use crate::checkpoint::{BestEpoch, Checkpoint, EpochOrder};
use crate::data::{Dataset, ShuffleWindow, Targets};
use crate::error::{Error, Kept, Result};
use crate::model::Mlp;
use crate::stop::StopFlag;

/// Per step, after the gradients: the share's loss (÷ the whole batch),
/// whether this rank's stop flag is requested, then one fault flag a rank.
const LOSS: usize = 0;
const STOP: usize = 1;
const FAULTS: usize = 2;

/// The rows of a distributed call's steps.
pub(crate) enum StepRows<'a> {
    /// The order of every batch's rows (the one process's order): each
    /// rank takes its share of each batch.
    All(&'a [u32]),
    /// This rank's shares alone, as a streamed epoch's reader keeps them:
    /// batches of `batch_size` over `positions` rows of the order (the
    /// last one shorter), and this rank's share of each
    /// ([`share_bounds`]), one after another. Rows without weights.
    Own { positions: usize, own: &'a [u32] },
}

impl StepRows<'_> {
    /// Each batch's length and this rank's rows of it, in order.
    fn batches(
        &self,
        batch_size: usize,
        rank: usize,
        size: usize,
    ) -> impl Iterator<Item = (usize, &[u32])> + '_ {
        let (order, positions, own) = match *self {
            StepRows::All(order) => (Some(order), order.len(), &[][..]),
            StepRows::Own { positions, own } => (None, positions, own),
        };
        let mut taken = 0;
        (0..positions.div_ceil(batch_size.max(1))).map(move |k| {
            let first = k * batch_size;
            let len = batch_size.min(positions - first);
            let share = share_bounds(len, rank, size);
            match order {
                Some(order) => (len, &order[first + share.start..first + share.end]),
                None => {
                    let rows = &own[taken..taken + share.len()];
                    taken += share.len();
                    (len, rows)
                }
            }
        })
    }
}

/// What [`Backend::train_steps`] does, on every rank together: whole steps
/// over `rows` in batches of `batch_size`, each rank running forward and
/// backward on its share of each batch ([`share_bounds`]), the gradients
/// summed over ranks ([`Collective::all_reduce_sum`]), then the same
/// update (clipping acts on the sum) on every rank. `steps_done` is the
/// optimizer's step count before the first.
///
/// The loss, every rank's stop flag and a fault flag per rank travel in
/// the same all-reduce as the gradients, so that every rank makes the same
/// decision at the same step: stop (any rank's flag; the step is not
/// taken), diverge (the summed loss is not finite; the step is not taken)
/// or fail (a rank's forward, backward or read-back failed: every rank
/// returns that rank's error).
#[allow(clippy::too_many_arguments)]
pub(crate) fn train_steps(
    collective: &dyn Collective,
    backend: &mut dyn Backend,
    mlp: &Mlp,
    data: &DeviceData<'_>,
    rows: StepRows<'_>,
    batch_size: usize,
    max_steps: u64,
    lr: f64,
    steps_done: u64,
    stop_flag: Option<&StopFlag>,
    norms_every: Option<u64>,
) -> Result<StepsReport> {
    let (rank, size) = (collective.rank(), collective.size());
    let parameters = mlp.parameter_count();
    let mut result = StepsReport::default();
    let mut step = steps_done;
    let mut buffer = vec![0f32; parameters + FAULTS + size];
    for (batch_len, share) in rows
        .batches(batch_size, rank, size)
        .take(max_steps.try_into().unwrap_or(usize::MAX))
    {
        let stop = stop_flag.is_some_and(StopFlag::is_requested);
        let batch_weight = match rows {
            StepRows::All(order) => {
                let first = result.rows;
                data.dataset().weight_of(&order[first..first + batch_len])
            }
            StepRows::Own { .. } => batch_len as f64,
        };
        let offset = share_bounds(batch_len, rank, size).start;
        let sums = SyncSums::new(collective);
        let local = backend
            .forward_backward(
                data,
                BatchShare {
                    rows: share,
                    batch_rows: batch_len,
                    offset,
                    batch_weight: Some(batch_weight),
                    across: Some(&sums),
                },
            )
            .and_then(|loss| sums.outcome().map(|()| loss))
            .and_then(|loss| Ok((loss, backend.gradients()?)));
        let tail = &mut buffer[parameters..];
        tail.fill(0.0);
        tail[STOP] = stop as u8 as f32;
        let local_error = match local {
            Ok((loss, grads)) => {
                buffer[..parameters].copy_from_slice(&grads);
                buffer[parameters + LOSS] = loss as f32;
                None
            }
            Err(e) => {
                buffer[..parameters].fill(0.0);
                buffer[parameters + FAULTS + rank] = 1.0;
                Some(e)
            }
        };
        collective.all_reduce_sum(&mut buffer)?;
        let tail = &buffer[parameters..];
        if let Some(failed) = tail[FAULTS..].iter().position(|&f| f > 0.0) {
            return Err(shared_error(collective, failed, local_error)?);
        }
        if tail[STOP] > 0.0 {
            result.stopped = true;
            break;
        }
        let loss = tail[LOSS];
        if !loss.is_finite() {
            return Err(Error::Diverged {
                step: step + 1,
                loss: loss as f64,
                kept: Kept {
                    steps: step,
                    epoch: 0,
                    rows_done: result.rows,
                    loss_sum: result.loss_sum,
                },
            });
        }
        let grads = &buffer[..parameters];
        step += 1;
        if norms_every.is_some_and(|n| step.is_multiple_of(n)) {
            let params = backend.parameters()?;
            result
                .norms
                .extend(LayerNorms::of(mlp, step, grads, &params));
        }
        backend.set_gradients(grads)?;
        backend.update(lr)?;
        result.loss_sum += loss as f64 * batch_weight;
        result.rows += batch_len;
        result.steps += 1;
    }
    Ok(result)
}

/// Batch normalisation's sums over the ranks during a step's pass
/// (SyncBatchNorm), through the run's collective in f64 and rank order:
/// every rank gets the same bits. The first failure is kept for
/// [`SyncSums::outcome`], after which the sums are zeros (the pass's
/// result is discarded).
struct SyncSums<'a> {
    collective: &'a dyn Collective,
    failed: std::cell::RefCell<Option<Error>>,
}

impl<'a> SyncSums<'a> {
    fn new(collective: &'a dyn Collective) -> SyncSums<'a> {
        SyncSums {
            collective,
            failed: std::cell::RefCell::new(None),
        }
    }

    /// The first failure of a sum in the pass, if any.
    fn outcome(&self) -> Result<()> {
        self.failed.borrow_mut().take().map_or(Ok(()), Err)
    }
}

impl BatchSums for SyncSums<'_> {
    fn sum(&self, values: &mut [f64]) {
        if self.failed.borrow().is_some() {
            values.fill(0.0);
            return;
        }
        if let Err(e) = self.collective.all_reduce_sum_f64(values) {
            values.fill(0.0);
            *self.failed.borrow_mut() = Some(e);
        }
    }
}

/// Evaluates rank `rank`'s share of `data`'s rows with `evaluate` and sums
/// the loss and the count right over ranks (in rank order), so that every
/// rank sees the same numbers. A failure on any rank is every rank's.
pub(crate) fn evaluate_shard(
    collective: &dyn Collective,
    data: &crate::data::Dataset,
    evaluate: impl FnOnce(&crate::data::Dataset) -> Result<(f64, Option<usize>)>,
) -> Result<(f64, Option<usize>)> {
    let rows = share_bounds(data.rows(), collective.rank(), collective.size());
    let indices: Vec<u32> = (rows.start as u32..rows.end as u32).collect();
    let local = if indices.is_empty() {
        Ok((0.0, None))
    } else {
        evaluate(&data.select(&indices))
    };
    sum_evaluations(collective, local)
}

/// Every rank's evaluation of its share (the loss summed over its rows,
/// and the count right), summed over ranks in rank order: the same numbers
/// on every rank. A failure on any rank is every rank's.
pub(crate) fn sum_evaluations(
    collective: &dyn Collective,
    local: Result<(f64, Option<usize>)>,
) -> Result<(f64, Option<usize>)> {
    let (loss_sum, correct) = agree(collective, local)?;
    // [loss, count right, whether counted]
    let mut sums = [
        loss_sum,
        correct.unwrap_or(0) as f64,
        correct.is_some() as u8 as f64,
    ];
    collective.all_reduce_sum_f64(&mut sums)?;
    Ok((sums[0], (sums[2] > 0.0).then_some(sums[1] as usize)))
}

/// Makes rank 0's `checkpoint` every rank's (parameters, optimizer state,
/// counters, scheduler), so that every rank starts from the same state.
pub(crate) fn broadcast_checkpoint(
    collective: &dyn Collective,
    checkpoint: &mut Checkpoint,
) -> Result<()> {
    let mut bytes = if collective.rank() == 0 {
        encode(checkpoint)
    } else {
        Vec::new()
    };
    collective.broadcast(0, &mut bytes)?;
    if collective.rank() != 0 {
        *checkpoint = decode(&bytes).ok_or_else(|| Error::Rank {
            rank: 0,
            message: format!(
                "a training state of {} bytes that does not decode",
                bytes.len()
            ),
        })?;
    }
    Ok(())
}

/// An error on every rank unless every rank describes its run (network and
/// configuration, in words) as rank 0 does: ranks that disagree would
/// train different models while summing their gradients.
pub(crate) fn check_same_run(collective: &dyn Collective, description: &str) -> Result<()> {
    let mut root = description.as_bytes().to_vec();
    collective.broadcast(0, &mut root)?;
    let same = if root == description.as_bytes() {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "this rank's network or training configuration differs from rank 0's \
             (every rank must be started with the same arguments): {description} against {}",
            String::from_utf8_lossy(&root)
        )))
    };
    agree(collective, same)
}

/// What ranks compare of a data set before they train on it: its rows,
/// features and target width, and a hash of every input and target bit.
fn data_fingerprint(data: &Dataset) -> [u64; 4] {
    // FNV-1a over 64-bit words: the order of the values counts, and one
    // flipped bit changes the hash.
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut add = |words: &[u32]| {
        for pair in words.chunks(2) {
            let word = pair[0] as u64 | (pair.get(1).copied().unwrap_or(0) as u64) << 32;
            hash = (hash ^ word).wrapping_mul(PRIME);
        }
        hash = (hash ^ words.len() as u64).wrapping_mul(PRIME);
    };
    add(bytemuck::cast_slice(data.x()));
    match data.targets() {
        Targets::Classes(labels) => add(labels),
        Targets::Values { values, .. } => add(bytemuck::cast_slice(values)),
    }
    [
        data.rows() as u64,
        data.features() as u64,
        data.target_width() as u64,
        hash,
    ]
}

/// An error on every rank unless every rank holds the same `data` as rank
/// 0 ([`data_fingerprint`]); `what` names it (a file, say). Ranks with
/// different data would run different numbers of steps and wait forever
/// for each other's sums.
pub(crate) fn check_same_data(
    collective: &dyn Collective,
    data: &Dataset,
    what: &str,
) -> Result<()> {
    check_same_fingerprint(collective, data_fingerprint(data), what)
}

/// An error on every rank unless every rank's `own` ([rows, features,
/// targets, a hash]) is rank 0's: [`check_same_data`] for data held, and
/// for a streamed file's description.
pub(crate) fn check_same_fingerprint(
    collective: &dyn Collective,
    own: [u64; 4],
    what: &str,
) -> Result<()> {
    let mut root: Vec<u8> = own.iter().flat_map(|v| v.to_le_bytes()).collect();
    collective.broadcast(0, &mut root)?;
    let root: Vec<u64> = root
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        .collect();
    let same = if root == own {
        Ok(())
    } else {
        let shape = |f: &[u64]| format!("{} rows of {} features and {} targets", f[0], f[1], f[2]);
        let differs = if root[..3] == own[..3] {
            format!("the same shape ({}) but other values", shape(&own))
        } else {
            format!("{} against rank 0's {}", shape(&own), shape(&root))
        };
        Err(Error::Config(format!(
            "{what} differs from rank 0's: {differs} (every rank must read the same data)"
        )))
    };
    agree(collective, same)
}

/// A shuffle window as two words: (0, 0) for the whole data set, else its
/// rows and chunk rows.
fn window_words(window: ShuffleWindow) -> (u64, u64) {
    match window {
        ShuffleWindow::Full => (0, 0),
        ShuffleWindow::Rows { rows, chunk_rows } => (rows as u64, chunk_rows as u64),
    }
}

/// The numbers of a checkpoint as bytes: what ranks must share to go on
/// alike (the settings and the record of changes each rank has from the
/// same arguments and file).
fn encode(c: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::new();
    let (lr, best, bad, cooldown) = c.scheduler;
    let best_epoch = c.best.as_ref();
    for v in [
        c.params.len() as u64,
        c.optimizer_state.len() as u64,
        c.step,
        c.epoch,
        c.rows_done as u64,
        c.epoch_loss_sum.to_bits(),
        lr.to_bits(),
        best.to_bits(),
        bad as u64,
        cooldown as u64,
        best_epoch.map_or(0, |b| b.params.len() as u64),
        best_epoch.map_or(0, |b| b.loss.to_bits()),
        best_epoch.map_or(u64::MAX, |b| b.epoch),
        c.epoch_order.map_or(u64::MAX, |o| u64::from(o.shuffle)),
        c.epoch_order.map_or(0, |o| o.seed),
        c.epoch_order.map_or(0, |o| window_words(o.window).0),
        c.epoch_order.map_or(0, |o| window_words(o.window).1),
        c.buffers.len() as u64,
        best_epoch.map_or(0, |b| b.buffers.len() as u64),
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let best_params = best_epoch.map_or(&[][..], |b| &b.params[..]);
    let best_buffers = best_epoch.map_or(&[][..], |b| &b.buffers[..]);
    let floats = (c.params.iter().chain(&c.optimizer_state).chain(best_params))
        .chain(&c.buffers)
        .chain(best_buffers);
    for v in floats {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn decode(bytes: &[u8]) -> Option<Checkpoint> {
    let (head, rest) = bytes.split_at_checked(152)?;
    let word = |i: usize| u64::from_le_bytes(head[i * 8..i * 8 + 8].try_into().unwrap());
    let (params, state, best) = (word(0) as usize, word(1) as usize, word(10) as usize);
    let (buffers, best_buffers) = (word(17) as usize, word(18) as usize);
    let total = [state, best, buffers, best_buffers]
        .into_iter()
        .try_fold(params, usize::checked_add)?;
    if rest.len() != total.checked_mul(4)? {
        return None;
    }
    let floats: Vec<f32> = rest
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    Some(Checkpoint {
        params: floats[..params].to_vec(),
        optimizer_state: floats[params..params + state].to_vec(),
        step: word(2),
        epoch: word(3),
        rows_done: word(4) as usize,
        epoch_loss_sum: f64::from_bits(word(5)),
        scheduler: (
            f64::from_bits(word(6)),
            f64::from_bits(word(7)),
            word(8) as usize,
            word(9) as usize,
        ),
        best: (word(12) != u64::MAX).then(|| BestEpoch {
            loss: f64::from_bits(word(11)),
            epoch: word(12),
            params: floats[params + state..params + state + best].to_vec(),
            buffers: floats[total - best_buffers..].to_vec(),
        }),
        buffers: floats[params + state + best..total - best_buffers].to_vec(),
        epoch_order: (word(13) != u64::MAX).then(|| EpochOrder {
            shuffle: word(13) == 1,
            seed: word(14),
            window: match (word(15), word(16)) {
                (0, _) => ShuffleWindow::Full,
                (rows, chunk_rows) => ShuffleWindow::Rows {
                    rows: rows as usize,
                    chunk_rows: chunk_rows as usize,
                },
            },
        }),
        ..Checkpoint::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_survives_its_encoding() {
        let c = Checkpoint {
            params: vec![1.5, -2.0, f32::MIN_POSITIVE],
            optimizer_state: vec![0.25; 6],
            step: 7,
            epoch: 2,
            rows_done: 33,
            epoch_loss_sum: 1.0 / 3.0,
            scheduler: (0.1, f64::INFINITY, 2, 1),
            best: Some(BestEpoch {
                loss: 0.5,
                epoch: 1,
                params: vec![0.5, 1.0, -1.0],
                buffers: vec![0.0, 2.0],
            }),
            buffers: vec![0.125, 1.5],
            ..Checkpoint::default()
        };
        assert_eq!(decode(&encode(&c)), Some(c.clone()));
        let without_best = Checkpoint {
            best: None,
            ..c.clone()
        };
        assert_eq!(decode(&encode(&without_best)), Some(without_best));
        let bytes = encode(&c);
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
    }
}
