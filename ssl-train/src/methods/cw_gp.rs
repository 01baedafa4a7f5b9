//! CW-GP: channel whitening by ZCA over fixed contiguous groups of channels
//! (4 by default), per random sub-batch of `w_size`: CW-RGP without the
//! random partition. The method is CW's ([`super::cw`]) with CW-RGP's
//! default of 4 groups; only the defaults are its own.

use ssl_losses::WhiteningParams;

pub use super::cw::{loss, networks, whitening_loss, FIXED_VIEWS};

/// CW-RGP's defaults: 4 groups.
pub fn defaults() -> WhiteningParams {
    WhiteningParams::default()
}
