//! The method registry: one file per method of Table 1 (and SwAV), as
//! solo-learn's `methods/<name>.py`. Each file says what networks the
//! method trains around the encoder (head shape, predictor, EMA target,
//! prototypes, the learnable `bn_last`, whether the head runs per view:
//! [`ExtraNetworks`]), its defaults, and how its loss is fed from the
//! network outputs. The pure loss functions and their parameter structs
//! are ssl-losses', and so is the one list of names ([`MethodName`]),
//! which [`Method`] matches exhaustively both ways.
//!
//! In a TOML config the method is a table tagged by `name`; omitted keys
//! take that method's defaults:
//!
//! ```
//! let m: ssl_train::Method = toml::from_str("name = \"cw-rgp\"\nw_size = 128\ngroups = 2").unwrap();
//! assert_eq!(m.name(), "cw-rgp");
//! assert!(m.networks().predictor.is_none());
//! ```
//!
//! A method's loss without the trainer, from the outputs of your own
//! networks:
//!
//! ```
//! use rand::SeedableRng;
//! use ssl_train::{Method, MethodOutputs};
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let z = tch::Tensor::randn([4, 128, 512], (tch::Kind::Float, tch::Device::Cpu));
//! let method = Method::from_name("cw-rgp")?; // g = 4, w_size = 64
//! let loss = method.loss(&MethodOutputs::embeddings(&z), 0, &mut rng)?;
//! assert!(loss.double_value(&[]).is_finite());
//! # Ok::<(), ssl_losses::LossError>(())
//! ```

pub mod barlow_twins;
pub mod byol;
pub mod cw;
pub mod cw_gp;
pub mod cw_rgp;
pub mod pca_whitening;
pub mod plain;
pub mod shuffled_dbn;
pub mod simclr;
pub mod simsiam;
pub mod swav;
pub mod vicreg;
pub mod w_mse;
pub mod zero_cl;

use rand::Rng;
use serde::{Deserialize, Serialize};
use tch::Tensor;

pub use ssl_losses::{
    AxisName, BarlowTwinsParams, ByolParams, CpuThreads, LossError, MethodName, PcaWhiteningParams,
    PlainParams, ShuffledDbnParams, SimclrParams, SimsiamParams, SwavParams, VicRegWeights,
    WhiteningLoss, WhiteningParams, ZeroClParams, METHOD_NAMES,
};

use crate::networks::{ForwardPlan, Networks, StepOutputs};

/// A method of Table 1 (or SwAV) with its hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum Method {
    /// Channel whitening, ZCA, random group partition ([`cw_rgp`]).
    CwRgp(WhiteningParams),
    /// Channel whitening, ZCA, fixed contiguous groups, 1 by default: no
    /// groups ([`cw`]).
    #[serde(deserialize_with = "cw::deserialize")]
    Cw(WhiteningParams),
    /// Channel whitening, ZCA, fixed contiguous groups, 4 by default
    /// ([`cw_gp`]).
    CwGp(WhiteningParams),
    /// Batch whitening, Cholesky ([`w_mse`]).
    #[serde(deserialize_with = "w_mse::deserialize")]
    WMse(WhiteningParams),
    /// PCA whitening along `axis`, the paper's failure case
    /// ([`pca_whitening`]).
    #[serde(deserialize_with = "pca_whitening::deserialize")]
    PcaWhitening(PcaWhiteningParams),
    /// Batch standardisation per sub-batch ([`shuffled_dbn`]).
    ShuffledDbn(ShuffledDbnParams),
    /// No whitening at all: the collapsing control ([`plain`]).
    Plain(PlainParams),
    /// NT-Xent ([`simclr`]).
    Simclr(SimclrParams),
    /// Predictor + EMA target ([`byol`]).
    Byol(ByolParams),
    /// Predictor + stop-gradient ([`simsiam`]).
    Simsiam(SimsiamParams),
    /// Cross-correlation to the identity ([`barlow_twins`]).
    BarlowTwins(BarlowTwinsParams),
    /// Variance, invariance, covariance ([`vicreg`]).
    Vicreg(VicRegWeights),
    /// Zero-CL's instance loss ([`zero_cl`]).
    ZeroCl(ZeroClParams),
    /// Swapped prediction with Sinkhorn–Knopp codes ([`swav`]).
    Swav(SwavParams),
}

/// `base` with the keys a config gives replacing its fields: how the
/// variants whose defaults differ from their parameter struct's `Default`
/// (CW: one group; W-MSE: one group and `w_size` 128; PCA whitening)
/// deserialize, so that `name = "cw"` alone means the same as
/// [`Method::from_name`]`("cw")`. Unknown keys and wrong types are
/// rejected as for every other variant.
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

/// The projection head's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// `model.head_layers` linear layers with BatchNorm + ReLU between
    /// (`model.head_size` wide, `model.emb` out).
    Projection,
    /// SimSiam's head (`simsiam.py`): its last layer batch-normalised too.
    Simsiam,
}

/// A predictor MLP on the head output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Predictor {
    /// BYOL's: `emb → model.head_size → emb`.
    Byol,
    /// SimSiam's: `emb → hidden → emb`.
    Simsiam {
        /// Its hidden width.
        hidden: i64,
    },
}

/// The EMA target's schedule (BYOL): after every step the target moves to
/// the online weights at [`ssl_losses::byol_tau`] of the epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EmaSchedule {
    /// The starting coefficient τ₀.
    pub tau0: f64,
}

/// The networks a method trains beside the encoder, and how they run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExtraNetworks {
    /// The projection head's shape.
    pub head: Head,
    /// A predictor MLP on the head output (BYOL, SimSiam).
    pub predictor: Option<Predictor>,
    /// An EMA copy of encoder + head (BYOL), updated after every step with
    /// [`ssl_losses::ema_update`] at the epoch's [`ssl_losses::byol_tau`].
    pub ema_target: Option<EmaSchedule>,
    /// A learnable `[K, d]` prototype matrix (SwAV): `Some(K)`.
    pub prototypes: Option<i64>,
    /// A learnable `BatchNorm1d(emb)` (affine) on the head output before
    /// the loss: SimCLR's `bn_last`, Barlow Twins' `self.bn`.
    pub bn_last: bool,
    /// How the head (and `bn_last`) runs over the views.
    pub plan: ForwardPlan,
}

impl ExtraNetworks {
    /// Encoder and projection head alone, the head (and nothing else)
    /// running on the views concatenated: the whitening methods.
    pub const NONE: Self = Self {
        head: Head::Projection,
        predictor: None,
        ema_target: None,
        prototypes: None,
        bn_last: false,
        plan: ForwardPlan {
            head_per_view: false,
            bn_last_per_view: false,
        },
    };
}

/// The network outputs a loss is computed from, all `[views, m, d]`
/// except `prototypes` (`[K, d]`).
#[derive(Debug, Clone, Copy)]
pub struct MethodOutputs<'a> {
    /// The projection head's output `z` (all methods), after `bn_last`
    /// when the method has one and the networks ran it.
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

    fn required(
        input: Option<&'a Tensor>,
        method: MethodName,
        name: &'static str,
        why: &'static str,
    ) -> Result<&'a Tensor, LossError> {
        input.ok_or(LossError::MissingInput {
            method: method.as_str(),
            input: name,
            why,
        })
    }

    /// The predictions `method` needs, or the error naming them.
    pub(crate) fn predictions_for(&self, method: MethodName) -> Result<&'a Tensor, LossError> {
        Self::required(
            self.predictions,
            method,
            "predictions",
            "the predictor's output",
        )
    }

    /// The EMA target's embeddings `method` needs, or the error naming them.
    pub(crate) fn targets_for(&self, method: MethodName) -> Result<&'a Tensor, LossError> {
        Self::required(
            self.target_embeddings,
            method,
            "target_embeddings",
            "the EMA target's head output",
        )
    }

    /// The prototypes `method` needs, or the error naming them.
    pub(crate) fn prototypes_for(&self, method: MethodName) -> Result<&'a Tensor, LossError> {
        Self::required(
            self.prototypes,
            method,
            "prototypes",
            "the prototype matrix",
        )
    }
}

/// What a loss needs beside the outputs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossContext {
    /// The epoch (the covariance term's schedule).
    pub epoch: usize,
    /// libtorch's thread count while a whitening loss runs on the CPU.
    pub threads: CpuThreads,
    /// The embeddings already went through the method's learnable
    /// `bn_last` (SimCLR, Barlow Twins): the loss of normalised inputs.
    pub bn_last_applied: bool,
}

impl Method {
    /// The method called `name` (one of [`METHOD_NAMES`]) with its
    /// defaults; an error lists the valid names.
    pub fn from_name(name: &str) -> Result<Self, LossError> {
        Ok(Self::defaults(MethodName::parse(name)?))
    }

    /// The method `name` with its defaults (each method's file says them).
    pub fn defaults(name: MethodName) -> Self {
        match name {
            MethodName::CwRgp => Self::CwRgp(cw_rgp::defaults()),
            MethodName::Cw => Self::Cw(cw::defaults()),
            MethodName::CwGp => Self::CwGp(cw_gp::defaults()),
            MethodName::WMse => Self::WMse(w_mse::defaults()),
            MethodName::PcaWhitening => Self::PcaWhitening(pca_whitening::defaults()),
            MethodName::ShuffledDbn => Self::ShuffledDbn(shuffled_dbn::defaults()),
            MethodName::Plain => Self::Plain(plain::defaults()),
            MethodName::Simclr => Self::Simclr(simclr::defaults()),
            MethodName::Byol => Self::Byol(byol::defaults()),
            MethodName::Simsiam => Self::Simsiam(simsiam::defaults()),
            MethodName::BarlowTwins => Self::BarlowTwins(barlow_twins::defaults()),
            MethodName::Vicreg => Self::Vicreg(vicreg::defaults()),
            MethodName::ZeroCl => Self::ZeroCl(zero_cl::defaults()),
            MethodName::Swav => Self::Swav(swav::defaults()),
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

    /// The networks the trainer builds for this method, and how they run.
    pub fn networks(&self) -> ExtraNetworks {
        match self {
            Self::CwRgp(p) => cw_rgp::networks(p),
            Self::Cw(p) => cw::networks(p),
            Self::CwGp(p) => cw_gp::networks(p),
            Self::WMse(p) => w_mse::networks(p),
            Self::PcaWhitening(p) => pca_whitening::networks(p),
            Self::ShuffledDbn(p) => shuffled_dbn::networks(p),
            Self::Plain(p) => plain::networks(p),
            Self::Simclr(p) => simclr::networks(p),
            Self::Byol(p) => byol::networks(p),
            Self::Simsiam(p) => simsiam::networks(p),
            Self::BarlowTwins(p) => barlow_twins::networks(p),
            Self::Vicreg(p) => vicreg::networks(p),
            Self::ZeroCl(p) => zero_cl::networks(p),
            Self::Swav(p) => swav::networks(p),
        }
    }

    /// Number of views the loss accepts: `Some(2)` for the two-view
    /// losses, `None` for any number ≥ 2 (all pairs).
    pub fn fixed_views(&self) -> Option<i64> {
        match self {
            Self::CwRgp(_) => cw_rgp::FIXED_VIEWS,
            Self::Cw(_) => cw::FIXED_VIEWS,
            Self::CwGp(_) => cw_gp::FIXED_VIEWS,
            Self::WMse(_) => w_mse::FIXED_VIEWS,
            Self::PcaWhitening(_) => pca_whitening::FIXED_VIEWS,
            Self::ShuffledDbn(_) => shuffled_dbn::FIXED_VIEWS,
            Self::Plain(_) => plain::FIXED_VIEWS,
            Self::Simclr(_) => simclr::FIXED_VIEWS,
            Self::Byol(_) => byol::FIXED_VIEWS,
            Self::Simsiam(_) => simsiam::FIXED_VIEWS,
            Self::BarlowTwins(_) => barlow_twins::FIXED_VIEWS,
            Self::Vicreg(_) => vicreg::FIXED_VIEWS,
            Self::ZeroCl(_) => zero_cl::FIXED_VIEWS,
            Self::Swav(_) => swav::FIXED_VIEWS,
        }
    }

    /// The whitening-family loss this method computes, if it is one.
    pub fn whitening_loss(&self) -> Option<WhiteningLoss> {
        Some(match self {
            Self::CwRgp(p) => cw_rgp::whitening_loss(p),
            Self::Cw(p) => cw::whitening_loss(p),
            Self::CwGp(p) => cw_gp::whitening_loss(p),
            Self::WMse(p) => w_mse::whitening_loss(p),
            Self::PcaWhitening(p) => pca_whitening::whitening_loss(p),
            Self::ShuffledDbn(p) => shuffled_dbn::whitening_loss(p),
            Self::Plain(p) => plain::whitening_loss(p),
            Self::Simclr(_)
            | Self::Byol(_)
            | Self::Simsiam(_)
            | Self::BarlowTwins(_)
            | Self::Vicreg(_)
            | Self::ZeroCl(_)
            | Self::Swav(_) => return None,
        })
    }

    /// The loss of one step at `epoch` (the covariance term's schedule)
    /// from outputs of the caller's own networks (no `bn_last` ran; the
    /// program's libtorch thread count as set), drawing sub-batches and
    /// partitions from `rng`.
    pub fn loss<R: Rng + ?Sized>(
        &self,
        out: &MethodOutputs<'_>,
        epoch: usize,
        rng: &mut R,
    ) -> Result<Tensor, LossError> {
        let ctx = LossContext {
            epoch,
            ..LossContext::default()
        };
        self.loss_with(out, &ctx, rng)
    }

    /// The loss of one step from `out` in the context `ctx`, as each
    /// method's file feeds it.
    pub fn loss_with<R: Rng + ?Sized>(
        &self,
        out: &MethodOutputs<'_>,
        ctx: &LossContext,
        rng: &mut R,
    ) -> Result<Tensor, LossError> {
        match self {
            Self::CwRgp(p) => cw_rgp::loss(p, out, ctx, rng),
            Self::Cw(p) => cw::loss(p, out, ctx, rng),
            Self::CwGp(p) => cw_gp::loss(p, out, ctx, rng),
            Self::WMse(p) => w_mse::loss(p, out, ctx, rng),
            Self::PcaWhitening(p) => pca_whitening::loss(p, out, ctx, rng),
            Self::ShuffledDbn(p) => shuffled_dbn::loss(p, out, ctx, rng),
            Self::Plain(p) => plain::loss(p, out, ctx, rng),
            Self::Simclr(p) => simclr::loss(p, out, ctx, rng),
            Self::Byol(p) => byol::loss(p, out, ctx, rng),
            Self::Simsiam(p) => simsiam::loss(p, out, ctx, rng),
            Self::BarlowTwins(p) => barlow_twins::loss(p, out, ctx, rng),
            Self::Vicreg(p) => vicreg::loss(p, out, ctx, rng),
            Self::ZeroCl(p) => zero_cl::loss(p, out, ctx, rng),
            Self::Swav(p) => swav::loss(p, out, ctx, rng),
        }
    }
}

/// The whitening family's loss fed from the embeddings, with the caller's
/// thread choice.
fn whitening_family_loss<R: Rng + ?Sized>(
    loss: WhiteningLoss,
    out: &MethodOutputs<'_>,
    ctx: &LossContext,
    rng: &mut R,
) -> Result<Tensor, LossError> {
    loss.with_cpu_threads(ctx.threads)
        .loss(out.embeddings, ctx.epoch, rng)
}

/// The loss of one step at `epoch` from `out` (what [`Networks::forward`]
/// gave), drawing sub-batches and partitions from `rng`, the whitening
/// losses with the caller's `threads` choice; SimCLR and Barlow Twins take
/// the loss of the embeddings their `bn_last` normalised.
pub fn method_loss<R: Rng + ?Sized>(
    method: &Method,
    nets: &Networks,
    out: &StepOutputs,
    epoch: usize,
    rng: &mut R,
    threads: CpuThreads,
) -> Result<Tensor, LossError> {
    let ctx = LossContext {
        epoch,
        threads,
        bn_last_applied: nets.bn_last.is_some(),
    };
    method.loss_with(&out.as_method_outputs(nets), &ctx, rng)
}
