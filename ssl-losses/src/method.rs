//! One interface over every loss of Table 1 (and SwAV of Table 2): select a
//! method by name, read its hyper-parameters with the paper's defaults
//! (serde, so a TOML config can embed them), learn which extra networks it
//! needs, and compute its loss from the network outputs.
//!
//! In a TOML config the method is a table tagged by `name`; omitted keys
//! take the defaults below:
//!
//! ```
//! let m: ssl_losses::Method = toml::from_str("name = \"cw-rgp\"\nw_size = 128\ngroups = 2").unwrap();
//! assert_eq!(m.name(), "cw-rgp");
//! assert!(!m.networks().predictor);
//! ```

use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;
use whitening_core::{WhiteningAxis, WhiteningConfig, WhiteningKind};

use crate::barlow_twins::{barlow_twins_loss, BarlowTwinsParams};
use crate::byol::{byol_loss, ByolParams};
use crate::names::MethodName;
use crate::norm_mse::PlainParams;
use crate::shuffled_dbn::ShuffledDbnParams;
use crate::simclr::{nt_xent, SimclrParams};
use crate::simsiam::{simsiam_loss, SimsiamParams};
use crate::swav::{swav_loss, SwavParams};
use crate::vicreg::{vicreg_loss, VicRegWeights};
use crate::whitening_loss::{PcaWhiteningParams, WhiteningLoss, WhiteningParams};
use crate::zero_cl::{zero_cl_instance_loss, ZeroClParams};
use crate::LossError;

fn cw_defaults() -> WhiteningParams {
    WhiteningParams {
        groups: 1,
        ..WhiteningParams::default()
    }
}

fn w_mse_defaults() -> WhiteningParams {
    WhiteningParams {
        groups: 1,
        w_size: 128,
        ..WhiteningParams::default()
    }
}

/// A method of Table 1 (or SwAV) with its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Method {
    /// Channel whitening, ZCA, random group partition.
    CwRgp(WhiteningParams),
    /// Channel whitening, ZCA, fixed contiguous groups (1 by default: no groups).
    #[serde(deserialize_with = "cw_params")]
    Cw(WhiteningParams),
    /// Channel whitening, ZCA, fixed contiguous groups (4 by default).
    CwGp(WhiteningParams),
    /// Batch whitening, Cholesky (W-MSE).
    #[serde(deserialize_with = "w_mse_params")]
    WMse(WhiteningParams),
    /// PCA whitening along `axis` (the paper's failure case).
    #[serde(deserialize_with = "pca_params")]
    PcaWhitening(PcaWhiteningParams),
    /// Batch standardisation per sub-batch.
    ShuffledDbn(ShuffledDbnParams),
    /// No whitening at all: the collapsing control.
    Plain(PlainParams),
    /// NT-Xent.
    Simclr(SimclrParams),
    /// Predictor + EMA target.
    Byol(ByolParams),
    /// Predictor + stop-gradient.
    Simsiam(SimsiamParams),
    /// Cross-correlation to the identity.
    BarlowTwins(BarlowTwinsParams),
    /// Variance, invariance, covariance.
    Vicreg(VicRegWeights),
    /// Zero-CL's instance loss.
    ZeroCl(ZeroClParams),
    /// Swapped prediction with Sinkhorn–Knopp codes.
    Swav(SwavParams),
}

/// `base` with the keys a config gives replacing its fields: how the
/// variants whose defaults differ from [`WhiteningParams::default`] (CW:
/// one group; W-MSE: one group and `w_size` 128) deserialize, so that
/// `name = "cw"` alone means the same as [`Method::from_name`]`("cw")`.
/// Unknown keys and wrong types are rejected as for every other variant.
fn overlay<'de, D, T>(deserializer: D, base: T) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Serialize + serde::de::DeserializeOwned,
{
    use serde::de::Error;
    let given = serde_json::Value::deserialize(deserializer)?;
    let mut merged = serde_json::to_value(&base).map_err(D::Error::custom)?;
    match (&mut merged, given) {
        (serde_json::Value::Object(fields), serde_json::Value::Object(given)) => {
            // Checked here as well: a flattened struct (PCA whitening) cannot
            // use `deny_unknown_fields`.
            if let Some(unknown) = given.keys().find(|k| !fields.contains_key(*k)) {
                let known: Vec<&str> = fields.keys().map(String::as_str).collect();
                return Err(D::Error::custom(format!(
                    "unknown field `{unknown}`, expected one of {}",
                    known.join(", ")
                )));
            }
            fields.extend(given);
        }
        (_, other) => {
            return Err(D::Error::custom(format!(
                "expected a table of method parameters, found {other}"
            )))
        }
    }
    serde_json::from_value(merged).map_err(D::Error::custom)
}

fn cw_params<'de, D: serde::Deserializer<'de>>(d: D) -> Result<WhiteningParams, D::Error> {
    overlay(d, cw_defaults())
}

fn w_mse_params<'de, D: serde::Deserializer<'de>>(d: D) -> Result<WhiteningParams, D::Error> {
    overlay(d, w_mse_defaults())
}

fn pca_params<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PcaWhiteningParams, D::Error> {
    overlay(d, PcaWhiteningParams::default())
}

/// The extra networks a method needs beside encoder and projection head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtraNetworks {
    /// A predictor MLP on the head output (BYOL, SimSiam).
    pub predictor: bool,
    /// An EMA copy of encoder + head (BYOL), updated after every step with
    /// [`crate::ema_update`] at the epoch's [`crate::byol_tau`].
    pub ema_target: bool,
    /// A learnable `[K, d]` prototype matrix (SwAV): `Some(K)`.
    pub prototypes: Option<i64>,
}

/// The network outputs a loss is computed from, all `[views, m, d]`
/// except `prototypes` (`[K, d]`).
#[derive(Debug, Clone, Copy)]
pub struct MethodOutputs<'a> {
    /// The projection head's output `z` (all methods).
    pub embeddings: &'a Tensor,
    /// The predictor's output `p = pred(z)` (BYOL, SimSiam).
    pub predictions: Option<&'a Tensor>,
    /// The EMA target's head output (BYOL).
    pub target_embeddings: Option<&'a Tensor>,
    /// The prototype matrix (SwAV).
    pub prototypes: Option<&'a Tensor>,
}

impl<'a> MethodOutputs<'a> {
    /// Outputs holding only the head's embeddings.
    pub fn embeddings(embeddings: &'a Tensor) -> Self {
        Self {
            embeddings,
            predictions: None,
            target_embeddings: None,
            prototypes: None,
        }
    }
}

impl Method {
    /// The method called `name` (one of [`METHOD_NAMES`]) with the paper's
    /// defaults; an error lists the valid names.
    pub fn from_name(name: &str) -> Result<Self, LossError> {
        Ok(Self::defaults(MethodName::parse(name)?))
    }

    /// The method `name` with the paper's defaults.
    pub fn defaults(name: MethodName) -> Self {
        match name {
            MethodName::CwRgp => Self::CwRgp(WhiteningParams::default()),
            MethodName::Cw => Self::Cw(cw_defaults()),
            MethodName::CwGp => Self::CwGp(WhiteningParams::default()),
            MethodName::WMse => Self::WMse(w_mse_defaults()),
            MethodName::PcaWhitening => Self::PcaWhitening(PcaWhiteningParams::default()),
            MethodName::ShuffledDbn => Self::ShuffledDbn(ShuffledDbnParams::default()),
            MethodName::Plain => Self::Plain(PlainParams::default()),
            MethodName::Simclr => Self::Simclr(SimclrParams::default()),
            MethodName::Byol => Self::Byol(ByolParams::default()),
            MethodName::Simsiam => Self::Simsiam(SimsiamParams::default()),
            MethodName::BarlowTwins => Self::BarlowTwins(BarlowTwinsParams::default()),
            MethodName::Vicreg => Self::Vicreg(VicRegWeights::default()),
            MethodName::ZeroCl => Self::ZeroCl(ZeroClParams::default()),
            MethodName::Swav => Self::Swav(SwavParams::default()),
        }
    }

    /// The method's name, as [`Method::from_name`] and configs spell it.
    pub fn name(&self) -> &'static str {
        self.method_name().as_str()
    }

    /// The method's entry in the list of names.
    pub fn method_name(&self) -> MethodName {
        match self {
            Self::CwRgp(_) => MethodName::CwRgp,
            Self::Cw(_) => MethodName::Cw,
            Self::CwGp(_) => MethodName::CwGp,
            Self::WMse(_) => MethodName::WMse,
            Self::PcaWhitening(_) => MethodName::PcaWhitening,
            Self::ShuffledDbn(_) => MethodName::ShuffledDbn,
            Self::Plain(_) => MethodName::Plain,
            Self::Simclr(_) => MethodName::Simclr,
            Self::Byol(_) => MethodName::Byol,
            Self::Simsiam(_) => MethodName::Simsiam,
            Self::BarlowTwins(_) => MethodName::BarlowTwins,
            Self::Vicreg(_) => MethodName::Vicreg,
            Self::ZeroCl(_) => MethodName::ZeroCl,
            Self::Swav(_) => MethodName::Swav,
        }
    }

    /// Which extra networks the trainer must build.
    pub fn networks(&self) -> ExtraNetworks {
        ExtraNetworks {
            predictor: matches!(self, Self::Byol(_) | Self::Simsiam(_)),
            ema_target: matches!(self, Self::Byol(_)),
            prototypes: match self {
                Self::Swav(p) => Some(p.prototypes),
                _ => None,
            },
        }
    }

    /// Number of views the loss accepts: `Some(2)` for the two-view
    /// losses, `None` for any number ≥ 2 (all pairs).
    pub fn fixed_views(&self) -> Option<i64> {
        match self {
            Self::Simsiam(_) | Self::BarlowTwins(_) | Self::Vicreg(_) | Self::ZeroCl(_) => Some(2),
            _ => None,
        }
    }

    /// The whitening-family loss this method computes, if it is one.
    pub fn whitening_loss(&self) -> Option<WhiteningLoss> {
        let whitened = WhiteningLoss::from_params;
        let channel_zca = WhiteningConfig::new(WhiteningAxis::Channel, WhiteningKind::Zca);
        Some(match self {
            Self::CwRgp(p) => whitened(WhiteningConfig::cw_rgp(p.groups), p),
            Self::Cw(p) | Self::CwGp(p) => whitened(channel_zca.with_groups(p.groups), p),
            Self::WMse(p) => whitened(WhiteningConfig::w_mse().with_groups(p.groups), p),
            Self::PcaWhitening(p) => whitened(
                WhiteningConfig::new(p.axis.into(), WhiteningKind::Pca)
                    .with_groups(p.whitening.groups),
                &p.whitening,
            ),
            Self::ShuffledDbn(p) => WhiteningLoss::shuffled_dbn(p.w_size, p.eps)
                .with_w_iter(p.w_iter)
                .with_normalized(p.norm),
            Self::Plain(p) => WhiteningLoss::plain().with_normalized(p.norm),
            _ => return None,
        })
    }

    /// The loss of one step at `epoch` (the covariance term's schedule),
    /// drawing sub-batches and partitions from `rng`.
    pub fn loss<R: Rng + ?Sized>(
        &self,
        out: &MethodOutputs<'_>,
        epoch: usize,
        rng: &mut R,
    ) -> Result<Tensor, LossError> {
        if let Some(loss) = self.whitening_loss() {
            return loss.loss(out.embeddings, epoch, rng);
        }
        let name = self.name();
        let predictions = || {
            out.predictions.ok_or(LossError::MissingInput {
                method: name,
                input: "predictions",
                why: "the predictor's output",
            })
        };
        match self {
            Self::Simclr(p) => nt_xent(out.embeddings, p.tau, p.batch_norm),
            Self::Byol(_) => {
                let targets = out.target_embeddings.ok_or(LossError::MissingInput {
                    method: name,
                    input: "target_embeddings",
                    why: "the EMA target's head output",
                })?;
                byol_loss(predictions()?, targets)
            }
            Self::Simsiam(_) => simsiam_loss(predictions()?, out.embeddings),
            Self::BarlowTwins(p) => barlow_twins_loss(out.embeddings, p.lambda),
            Self::Vicreg(w) => vicreg_loss(out.embeddings, w),
            Self::ZeroCl(_) => zero_cl_instance_loss(out.embeddings),
            Self::Swav(p) => {
                let prototypes = out.prototypes.ok_or(LossError::MissingInput {
                    method: name,
                    input: "prototypes",
                    why: "the prototype matrix",
                })?;
                swav_loss(out.embeddings, prototypes, p)
            }
            Self::CwRgp(_)
            | Self::Cw(_)
            | Self::CwGp(_)
            | Self::WMse(_)
            | Self::PcaWhitening(_)
            | Self::ShuffledDbn(_)
            | Self::Plain(_) => unreachable!("whitening methods return above"),
        }
    }
}
