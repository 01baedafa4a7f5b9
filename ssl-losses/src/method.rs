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

use crate::barlow_twins::barlow_twins_loss;
use crate::byol::byol_loss;
use crate::simclr::nt_xent;
use crate::simsiam::simsiam_loss;
use crate::swav::{swav_loss, SwavParams};
use crate::vicreg::{vicreg_loss, VicRegWeights};
use crate::whitening_loss::{CovarianceTerm, WhiteningLoss};
use crate::zero_cl::zero_cl_instance_loss;
use crate::LossError;

/// Every method name, in Table 1's order, then SwAV.
pub const METHOD_NAMES: [&str; 14] = [
    "simclr",
    "byol",
    "simsiam",
    "shuffled-dbn",
    "barlow-twins",
    "vicreg",
    "zero-cl",
    "w-mse",
    "cw-rgp",
    "cw",
    "cw-gp",
    "pca-whitening",
    "plain",
    "swav",
];

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

/// Hyper-parameters of the whitening methods (CW-RGP, CW, CW-GP, W-MSE).
/// Defaults: the CW-RGP CIFAR runs (`docs/reference.md` §6.4); W-MSE's
/// `w_size` is 128.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WhiteningParams {
    /// Sub-batch size (`w_size`).
    pub w_size: i64,
    /// Sub-batch splits averaged per step (`w_iter`).
    pub w_iter: usize,
    /// Channel groups `g` (`group`).
    pub groups: i64,
    /// Normalised MSE (`true`) or plain MSE (`--no_norm`).
    pub norm: bool,
    /// Covariance denominator offset (`minus`).
    pub minus: f64,
    /// Shrinkage (`w_eps`).
    pub eps: f64,
    /// Weight of the ImageNet covariance term (`cov_w`; 0 = off).
    pub cov_weight: f64,
    /// First epoch without the covariance term (`cov_stop`).
    pub cov_stop: usize,
}

impl Default for WhiteningParams {
    fn default() -> Self {
        Self {
            w_size: 64,
            w_iter: 1,
            groups: 4,
            norm: true,
            minus: 1.0,
            eps: 0.0,
            cov_weight: 0.0,
            cov_stop: 50,
        }
    }
}

impl WhiteningParams {
    /// CW's defaults: CW-RGP's without groups.
    pub fn cw() -> Self {
        Self {
            groups: 1,
            ..Self::default()
        }
    }

    /// W-MSE's defaults: one group, sub-batches of 128
    /// (`docs/reference.md` §6.3–§6.4).
    pub fn w_mse() -> Self {
        Self {
            groups: 1,
            w_size: 128,
            ..Self::default()
        }
    }
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
    overlay(d, WhiteningParams::cw())
}

fn w_mse_params<'de, D: serde::Deserializer<'de>>(d: D) -> Result<WhiteningParams, D::Error> {
    overlay(d, WhiteningParams::w_mse())
}

fn pca_params<'de, D: serde::Deserializer<'de>>(d: D) -> Result<PcaWhiteningParams, D::Error> {
    overlay(d, PcaWhiteningParams::default())
}

/// The whitening axis as written in a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AxisName {
    /// Batch whitening (BW).
    Batch,
    /// Channel whitening (CW).
    Channel,
}

impl From<AxisName> for WhiteningAxis {
    fn from(a: AxisName) -> Self {
        match a {
            AxisName::Batch => WhiteningAxis::Batch,
            AxisName::Channel => WhiteningAxis::Channel,
        }
    }
}

/// PCA whitening: the whitening parameters and the axis (reference default
/// channel, no groups).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PcaWhiteningParams {
    /// Whitening axis.
    pub axis: AxisName,
    /// The shared whitening parameters.
    #[serde(flatten)]
    pub whitening: WhiteningParams,
}

impl Default for PcaWhiteningParams {
    fn default() -> Self {
        Self {
            axis: AxisName::Channel,
            whitening: WhiteningParams::cw(),
        }
    }
}

/// Shuffled-DBN (reference `bn` method: `w_size` 128). The reference passes
/// `w_eps` (0) as the BatchNorm eps, which torch ≥ 2.x rejects in training
/// ("eps must be positive"); the default here is BatchNorm1d's 1e-5.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShuffledDbnParams {
    /// Sub-batch size.
    pub w_size: i64,
    /// Sub-batch splits averaged per step.
    pub w_iter: usize,
    /// Normalised or plain MSE.
    pub norm: bool,
    /// BatchNorm eps (`w_eps`).
    pub eps: f64,
}

impl Default for ShuffledDbnParams {
    fn default() -> Self {
        Self {
            w_size: 128,
            w_iter: 1,
            norm: true,
            eps: 1e-5,
        }
    }
}

/// The plain control.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PlainParams {
    /// Normalised or plain MSE.
    pub norm: bool,
}

impl Default for PlainParams {
    fn default() -> Self {
        Self { norm: true }
    }
}

/// SimCLR (τ 0.5, batch-norm on the head output).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimclrParams {
    /// Temperature τ.
    pub tau: f64,
    /// Batch-normalise the head output before L2 normalisation.
    pub batch_norm: bool,
}

impl Default for SimclrParams {
    fn default() -> Self {
        Self {
            tau: 0.5,
            batch_norm: true,
        }
    }
}

/// BYOL (τ₀ 0.99; the predictor's hidden size is the head size).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ByolParams {
    /// Starting EMA coefficient τ₀ (`byol_tau`).
    pub tau0: f64,
}

impl Default for ByolParams {
    fn default() -> Self {
        Self { tau0: 0.99 }
    }
}

/// SimSiam (predictor hidden size 512).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimsiamParams {
    /// Hidden size of the predictor.
    pub predictor_hidden: i64,
}

impl Default for SimsiamParams {
    fn default() -> Self {
        Self {
            predictor_hidden: 512,
        }
    }
}

/// Barlow Twins (λ 0.008, the CW-RGP reference default).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BarlowTwinsParams {
    /// Off-diagonal weight λ (`barlow_lambda`).
    pub lambda: f64,
}

impl Default for BarlowTwinsParams {
    fn default() -> Self {
        Self { lambda: 0.008 }
    }
}

/// Zero-CL's instance loss has no hyper-parameters of its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZeroClParams {}

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
        Ok(match name {
            "cw-rgp" => Self::CwRgp(WhiteningParams::default()),
            "cw" => Self::Cw(WhiteningParams::cw()),
            "cw-gp" => Self::CwGp(WhiteningParams::default()),
            "w-mse" => Self::WMse(WhiteningParams::w_mse()),
            "pca-whitening" => Self::PcaWhitening(PcaWhiteningParams::default()),
            "shuffled-dbn" => Self::ShuffledDbn(ShuffledDbnParams::default()),
            "plain" => Self::Plain(PlainParams::default()),
            "simclr" => Self::Simclr(SimclrParams::default()),
            "byol" => Self::Byol(ByolParams::default()),
            "simsiam" => Self::Simsiam(SimsiamParams::default()),
            "barlow-twins" => Self::BarlowTwins(BarlowTwinsParams::default()),
            "vicreg" => Self::Vicreg(VicRegWeights::default()),
            "zero-cl" => Self::ZeroCl(ZeroClParams::default()),
            "swav" => Self::Swav(SwavParams::default()),
            _ => {
                return Err(LossError::UnknownMethod {
                    name: name.to_owned(),
                    valid: METHOD_NAMES.join(", "),
                })
            }
        })
    }

    /// The method's name, as [`Method::from_name`] and configs spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::CwRgp(_) => "cw-rgp",
            Self::Cw(_) => "cw",
            Self::CwGp(_) => "cw-gp",
            Self::WMse(_) => "w-mse",
            Self::PcaWhitening(_) => "pca-whitening",
            Self::ShuffledDbn(_) => "shuffled-dbn",
            Self::Plain(_) => "plain",
            Self::Simclr(_) => "simclr",
            Self::Byol(_) => "byol",
            Self::Simsiam(_) => "simsiam",
            Self::BarlowTwins(_) => "barlow-twins",
            Self::Vicreg(_) => "vicreg",
            Self::ZeroCl(_) => "zero-cl",
            Self::Swav(_) => "swav",
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
        let whitened = |cfg: WhiteningConfig, p: &WhiteningParams| {
            let cfg = WhiteningConfig {
                minus: p.minus,
                eps: p.eps,
                ..cfg
            };
            let axis = cfg.axis;
            let loss = WhiteningLoss::whitened(cfg, p.w_size)
                .with_w_iter(p.w_iter)
                .with_normalized(p.norm);
            if p.cov_weight != 0.0 {
                loss.with_covariance(CovarianceTerm {
                    weight: p.cov_weight,
                    stop_epoch: p.cov_stop,
                    axis,
                })
            } else {
                loss
            }
        };
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
