//! How each method's loss is fed from the networks' outputs. The pure loss
//! functions and their parameters are ssl-losses'; what the trainer adds is
//! the release's wiring around them: which networks run before the loss
//! ([`crate::networks::ForwardPlan`], `bn_last`) and, where a network
//! already normalised the head output, the loss of normalised inputs.

use rand::Rng;
use ssl_losses::{barlow_twins_loss_of_normalized, nt_xent, CpuThreads, LossError, Method};
use tch::Tensor;

use crate::networks::{Networks, StepOutputs};

/// The loss of one step at `epoch` from `out` (what [`Networks::forward`]
/// gave), drawing sub-batches and partitions from `rng`:
/// - SimCLR with `bn_last`: NT-Xent of the learnable BatchNorm's output
///   (the loss's own non-affine batch norm off);
/// - Barlow Twins: the cross-correlation of the views each normalised by
///   the learnable `BatchNorm1d(emb)` (the release's `self.bn`);
/// - the whitening family: its [`ssl_losses::WhiteningLoss`] with the
///   caller's `threads` choice;
/// - every other method: [`Method::loss`] as it is.
pub fn method_loss<R: Rng + ?Sized>(
    method: &Method,
    nets: &Networks,
    out: &StepOutputs,
    epoch: usize,
    rng: &mut R,
    threads: CpuThreads,
) -> Result<Tensor, LossError> {
    if let Some(loss) = method.whitening_loss() {
        return loss
            .with_cpu_threads(threads)
            .loss(&out.embeddings, epoch, rng);
    }
    match method {
        Method::Simclr(p) if nets.bn_last.is_some() => nt_xent(&out.embeddings, p.tau, false),
        Method::BarlowTwins(p) if nets.bn_last.is_some() => {
            barlow_twins_loss_of_normalized(&out.embeddings, p.lambda)
        }
        m => m.loss(&out.as_method_outputs(nets), epoch, rng),
    }
}
