//! The loss zoo of "An Investigation into Whitening Loss for
//! Self-supervised Learning" (Weng et al., NeurIPS 2022), Table 1 and
//! SwAV of Table 2 (docs/reference.md §3), each usable on plain tensors without a
//! trainer, one file per method:
//!
//! | method | entry point |
//! |---|---|
//! | CW-RGP, CW, CW-GP, W-MSE, PCA whitening, Shuffled-DBN, plain | [`WhiteningLoss`] |
//! | SimCLR | [`nt_xent`] |
//! | BYOL | [`byol_loss`], [`byol_tau`], [`ema_update`] |
//! | SimSiam | [`simsiam_loss`] |
//! | Barlow Twins | [`barlow_twins_loss`], [`barlow_twins_loss_of_normalized`] |
//! | VICReg | [`vicreg_loss`] |
//! | Zero-CL (instance loss) | [`zero_cl_instance_loss`] |
//! | SwAV | [`swav_loss`], [`sinkhorn_knopp`] |
//! | every method's name | [`MethodName`], [`METHOD_NAMES`] |
//!
//! Each loss's parameter struct sits beside it in its file (with serde, so
//! a TOML config can embed it). Which networks a method trains, its
//! defaults and how its loss is fed from the network outputs are the
//! trainer's (`ssl-train`'s method registry, one file per method);
//! [`MethodName`] is the one list of names it matches.
//!
//! **Input convention** ([`views`]): the embeddings of all views are one
//! tensor `[views, m, d]`; row `r` of every view comes from the same image.
//!
//! ```
//! use rand::SeedableRng;
//! use ssl_losses::{WhiteningLoss, WhiteningParams};
//! use whitening_core::WhiteningConfig;
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let z = tch::Tensor::randn([4, 128, 512], (tch::Kind::Float, tch::Device::Cpu));
//! let p = WhiteningParams::default(); // CW-RGP: g = 4, w_size = 64
//! let loss = WhiteningLoss::from_params(WhiteningConfig::cw_rgp(p.groups), &p);
//! let value = loss.loss(&z, 0, &mut rng)?;
//! assert!(value.double_value(&[]).is_finite());
//! assert_eq!(ssl_losses::MethodName::parse("cw-rgp")?.as_str(), "cw-rgp");
//! # Ok::<(), ssl_losses::LossError>(())
//! ```

pub mod barlow_twins;
pub mod batch_norm;
pub mod byol;
pub mod error;
pub mod names;
pub mod norm_mse;
pub mod shuffled_dbn;
pub mod simclr;
pub mod simsiam;
mod single_threaded;
pub mod swav;
pub mod vicreg;
pub mod views;
pub mod whitening_loss;
mod zca_whitening_loss;
pub mod zero_cl;

pub use barlow_twins::{barlow_twins_loss, barlow_twins_loss_of_normalized, BarlowTwinsParams};
pub use batch_norm::batch_standardize;
pub use byol::{byol_loss, byol_tau, ema_update, ByolParams};
pub use error::LossError;
pub use names::{MethodName, METHOD_NAMES};
pub use norm_mse::{l2_normalize, norm_mse, plain_mse, PlainParams};
pub use shuffled_dbn::{sub_batch_standardize, ShuffledDbnParams};
pub use simclr::{nt_xent, SimclrParams};
pub use simsiam::{simsiam_loss, SimsiamParams};
pub use swav::{sinkhorn_knopp, swav_loss, SwavParams};
pub use vicreg::{vicreg_loss, VicRegWeights};
pub use whitening_loss::{
    covariance_loss, pairwise_view_loss, AxisName, CovarianceTerm, CpuThreads, PcaWhiteningParams,
    ViewTransform, WhiteningLoss, WhiteningParams,
};
pub use zero_cl::{zero_cl_instance_loss, ZeroClParams};
