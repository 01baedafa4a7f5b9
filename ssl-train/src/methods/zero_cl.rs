//! Zero-CL (Zhang et al., 2022), its instance loss (the release's
//! `zero_icl.py`).

use rand::Rng;
use ssl_losses::{zero_cl_instance_loss, LossError, ZeroClParams};
use tch::Tensor;

use super::{ExtraNetworks, LossContext, MethodOutputs};
use crate::networks::ForwardPlan;

/// No hyper-parameters.
pub fn defaults() -> ZeroClParams {
    ZeroClParams::default()
}

/// The head runs per view (`zero_icl.py`).
pub fn networks(_: &ZeroClParams) -> ExtraNetworks {
    ExtraNetworks {
        plan: ForwardPlan {
            head_per_view: true,
            bn_last_per_view: false,
        },
        ..ExtraNetworks::NONE
    }
}

/// Two views exactly.
pub const FIXED_VIEWS: Option<i64> = Some(2);

/// The loss of the embeddings.
pub fn loss<R: Rng + ?Sized>(
    _: &ZeroClParams,
    out: &MethodOutputs<'_>,
    _ctx: &LossContext,
    _rng: &mut R,
) -> Result<Tensor, LossError> {
    zero_cl_instance_loss(out.embeddings)
}
