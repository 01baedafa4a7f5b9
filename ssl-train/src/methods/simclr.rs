//! SimCLR (Chen et al., 2020): NT-Xent over all views. The release's
//! `simclr.py` batch-normalises the head output with a learnable
//! `BatchNorm1d(emb)` (`bn_last`, all views together) before the loss.

use rand::Rng;
use ssl_losses::{nt_xent, LossError, SimclrParams};
use tch::Tensor;

use super::{ExtraNetworks, LossContext, MethodOutputs};

/// τ 0.5, batch-normalised head output.
pub fn defaults() -> SimclrParams {
    SimclrParams::default()
}

/// The head on the views concatenated, and with `batch_norm` the
/// learnable `bn_last` on all views together.
pub fn networks(p: &SimclrParams) -> ExtraNetworks {
    ExtraNetworks {
        bn_last: p.batch_norm,
        ..ExtraNetworks::NONE
    }
}

/// Any number of views ≥ 2.
pub const FIXED_VIEWS: Option<i64> = None;

/// NT-Xent of the embeddings: after the trainer's `bn_last`, without the
/// loss's own (non-affine) batch norm; otherwise with it when
/// `batch_norm`.
pub fn loss<R: Rng + ?Sized>(
    p: &SimclrParams,
    out: &MethodOutputs<'_>,
    ctx: &LossContext,
    _rng: &mut R,
) -> Result<Tensor, LossError> {
    let batch_norm = p.batch_norm && !ctx.bn_last_applied;
    nt_xent(out.embeddings, p.tau, batch_norm)
}
