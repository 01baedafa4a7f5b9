//! The networks a method trains (paper §5; the release's
//! `base/methods/*.py`): encoder + projection head, and per method a
//! predictor (BYOL, SimSiam), an EMA target (BYOL) or SwAV prototypes.
//! Variable names: `encoder.<torchvision name>`, `head.<i>.…`,
//! `predictor.<i>.…`, `prototypes.weight`.
//!
//! The encoder is the configured ResNet, or any [`Backbone`] a caller
//! brings ([`Networks::with_backbone`]): a tch module mapping an image
//! batch `[m, 3, H, W]` to features `[m, out_dim]`.

use std::sync::Arc;

use ssl_models::{
    batch_norm, store_channels_last, Acceleration, AccelerationStatus, BatchNorm, BatchNormConfig,
    BufferUpdate, Depth, EmaTarget, Mlp, ProjectionHeadConfig, Prototypes, ResNet, ResNetConfig,
    Stem,
};
use tch::nn::{self, ModuleT, VarStore};
use tch::{Device, Tensor};

use crate::config::{Config, DatasetName};
use crate::error::{Context, Result};
use crate::methods::{Head, Method, MethodOutputs, Predictor};

/// An encoder: any tch module from an image batch `[m, 3, H, W]` to
/// features `[m, out_dim()]`. The ResNets of ssl-models are backbones; so
/// is a caller's own network.
pub trait Backbone: ModuleT {
    /// The feature width the head receives.
    fn out_dim(&self) -> i64;

    /// The ResNet behind this backbone, if it is one (for the
    /// throughput options that only ResNets have, such as bf16).
    fn as_resnet_mut(&mut self) -> Option<&mut ResNet> {
        None
    }
}

impl Backbone for ResNet {
    fn out_dim(&self) -> i64 {
        ResNet::out_dim(self)
    }

    fn as_resnet_mut(&mut self) -> Option<&mut ResNet> {
        Some(self)
    }
}

/// Builds an encoder under a var-store path (`encoder.…`). Called once for
/// the online network and once more for BYOL's EMA target, so it must
/// build the same variables each time.
pub type BackboneBuilder =
    Arc<dyn Fn(&nn::Path<'_>) -> Result<Box<dyn Backbone>> + Send + Sync + 'static>;

/// The EMA copy of encoder + head (BYOL).
#[derive(Debug)]
pub struct Target {
    /// The EMA weights.
    pub ema: EmaTarget,
    encoder: Box<dyn Backbone>,
    head: Mlp,
}

/// How a method's head runs over the views, as the release's
/// `base/methods/<name>.py` runs it (see [`Networks::forward`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardPlan {
    /// The head runs on each view's batch on its own (its BatchNorm sees
    /// one view), not on the views concatenated.
    pub head_per_view: bool,
    /// `bn_last` runs on each view on its own (Barlow Twins) rather than on
    /// the views concatenated (SimCLR).
    pub bn_last_per_view: bool,
}

impl ForwardPlan {
    /// The plan of `method`, as its file in [`crate::methods`] says:
    /// BYOL, SimSiam (`byol.py`, `simsiam.py`), Barlow Twins, VICReg and
    /// Zero-CL (`barlow_twins.py`, `vicreg.py`, `zero_icl.py`:
    /// `z1 = self.head(self.model(samples[0]))`, ...) run the head per
    /// view; the whitening methods and SimCLR on the views concatenated
    /// (`self.head(torch.cat(h))`).
    pub fn of(method: &Method) -> Self {
        method.networks().plan
    }
}

/// Whether `method` normalises its head output with a learnable
/// `BatchNorm1d(emb)` before the loss: SimCLR (with `batch_norm`, its
/// `bn_last`) and Barlow Twins (the release's `self.bn`).
pub fn has_bn_last(method: &Method) -> bool {
    method.networks().bn_last
}

/// Every network a method trains, in one var store.
#[derive(Debug)]
pub struct Networks {
    /// Online parameters and buffers (checkpointed, optimised).
    pub vs: VarStore,
    /// The encoder (its features are what the evaluations measure).
    pub encoder: Box<dyn Backbone>,
    /// The projection head.
    pub head: Mlp,
    /// BYOL's and SimSiam's predictor.
    pub predictor: Option<Mlp>,
    /// SwAV's prototypes.
    pub prototypes: Option<Prototypes>,
    /// BYOL's EMA target.
    pub target: Option<Target>,
    /// The learnable `BatchNorm1d(emb)` (affine) on the head output of
    /// SimCLR (all views together) and Barlow Twins (each view on its own),
    /// `bn_last.…`.
    pub bn_last: Option<BatchNorm>,
    /// How the head (and `bn_last`) runs over the views.
    pub plan: ForwardPlan,
    /// What `run.channels_last` / `run.bf16` switched on, with notes to log.
    pub acceleration: AccelerationStatus,
}

/// One step's outputs, each `[views, m, d]`.
#[derive(Debug)]
pub struct StepOutputs {
    /// Head outputs.
    pub embeddings: Tensor,
    /// Predictor outputs (BYOL, SimSiam).
    pub predictions: Option<Tensor>,
    /// The EMA target's head outputs (BYOL), without gradient.
    pub target_embeddings: Option<Tensor>,
}

impl StepOutputs {
    /// The outputs as the method's loss takes them.
    pub fn as_method_outputs<'a>(&'a self, nets: &'a Networks) -> MethodOutputs<'a> {
        MethodOutputs {
            embeddings: &self.embeddings,
            predictions: self.predictions.as_ref(),
            target_embeddings: self.target_embeddings.as_ref(),
            prototypes: nets.prototypes.as_ref().map(|p| &p.weight),
        }
    }
}

/// The ResNet stem of a dataset; a folder's follows its crop size.
fn stem_for(dataset: DatasetName, crop: i64) -> Stem {
    match dataset {
        DatasetName::Cifar10 | DatasetName::Cifar100 | DatasetName::Synthetic => Stem::Cifar,
        DatasetName::Stl10 | DatasetName::TinyImagenet => Stem::SmallWithMaxPool,
        DatasetName::Imagenet => Stem::ImageNet,
        DatasetName::Folder => match crop {
            ..=32 => Stem::Cifar,
            33..=96 => Stem::SmallWithMaxPool,
            _ => Stem::ImageNet,
        },
    }
}

/// The configured ResNet (`model.arch`, `model.width`, the dataset's stem)
/// as a [`BackboneBuilder`].
pub fn resnet_builder(cfg: &Config) -> Result<BackboneBuilder> {
    let depth = Depth::parse(&cfg.model.arch)?;
    let rcfg = ResNetConfig::new(depth, stem_for(cfg.data.dataset, cfg.data.crop))
        .with_width(cfg.model.width);
    Ok(Arc::new(move |path: &nn::Path<'_>| {
        Ok(Box::new(ResNet::new(path, &rcfg)?) as Box<dyn Backbone>)
    }))
}

/// Encoder and head under `path` (`encoder.…`, `head.…`).
fn encoder_and_head(
    path: &nn::Path<'_>,
    cfg: &Config,
    backbone: &BackboneBuilder,
) -> Result<(Box<dyn Backbone>, Mlp)> {
    let encoder = backbone(&(path / "encoder"))?;
    let head = match cfg.method.networks().head {
        Head::Simsiam => Mlp::simsiam_head(
            &(path / "head"),
            encoder.out_dim(),
            cfg.model.head_size,
            cfg.model.emb,
        ),
        Head::Projection => Mlp::projection_head(
            &(path / "head"),
            &ProjectionHeadConfig {
                in_dim: encoder.out_dim(),
                hidden_dim: cfg.model.head_size,
                out_dim: cfg.model.emb,
                layers: cfg.model.head_layers as usize,
                batch_norm: true,
            },
        )?,
    };
    Ok((encoder, head))
}

impl Networks {
    /// Builds every network the method needs around the configured ResNet,
    /// initialised from libtorch's RNG (seed it first for repeatable runs).
    pub fn new(cfg: &Config, device: Device) -> Result<Self> {
        Self::with_backbone(cfg, device, &resnet_builder(cfg)?)
    }

    /// As [`Networks::new`], with the encoder `backbone` builds (the head,
    /// predictor, target and prototypes follow the config).
    pub fn with_backbone(cfg: &Config, device: Device, backbone: &BackboneBuilder) -> Result<Self> {
        let vs = VarStore::new(device);
        let root = vs.root();
        let (mut encoder, head) = encoder_and_head(&root, cfg, backbone)?;
        let emb = cfg.model.emb;
        let extra = cfg.method.networks();
        let predictor = extra.predictor.map(|p| match p {
            Predictor::Byol => {
                Mlp::byol_predictor(&(&root / "predictor"), emb, cfg.model.head_size)
            }
            Predictor::Simsiam { hidden } => {
                Mlp::simsiam_predictor(&(&root / "predictor"), emb, hidden)
            }
        });
        let prototypes = extra
            .prototypes
            .map(|k| Prototypes::new(&(&root / "prototypes"), emb, k));
        let bn_last = extra
            .bn_last
            .then(|| batch_norm(&(&root / "bn_last"), emb, BatchNormConfig::default()));
        let accel = Acceleration {
            channels_last: cfg.run.channels_last,
            bf16: cfg.run.bf16,
        };
        let acceleration = accelerate(&accel, &vs, encoder.as_mut());
        let target = if extra.ema_target.is_some() {
            let (ema, (mut encoder, head)) = EmaTarget::new(&vs, BufferUpdate::Copy, |p| {
                encoder_and_head(p, cfg, backbone)
                    .map_err(|e| ssl_models::ModelError::Config(e.to_string()))
            })
            .context("building the EMA target")?;
            accelerate(&accel, ema.var_store(), encoder.as_mut());
            Some(Target { ema, encoder, head })
        } else {
            None
        };
        Ok(Self {
            vs,
            encoder,
            head,
            predictor,
            prototypes,
            target,
            bn_last,
            plan: extra.plan,
            acceleration,
        })
    }

    /// The views' forward pass as the release runs it (winci-ai/CW-RGP,
    /// `base/methods/*.py`; the peer baseline's `step` does the same): the
    /// encoder runs once per view, so its BatchNorm statistics are those of
    /// one view's batch (`[self.model(x) for x in samples]`); the head runs
    /// on the views concatenated (`self.head(torch.cat(h))`) or per view
    /// ([`ForwardPlan`]); `bn_last` follows (SimCLR on all views, Barlow
    /// Twins per view); the predictor and the target run per view.
    /// Outputs are reshaped to `[views, m, d]`.
    pub fn forward(&self, views: &[Tensor], train: bool) -> StepOutputs {
        let v = views.len() as i64;
        let per_view = |f: &dyn Fn(&Tensor) -> Tensor, xs: &[Tensor]| {
            Tensor::cat(&xs.iter().map(f).collect::<Vec<_>>(), 0)
        };
        let features: Vec<Tensor> = views
            .iter()
            .map(|x| self.encoder.forward_t(x, train))
            .collect();
        let z = if self.plan.head_per_view {
            per_view(&|h| self.head.forward_t(h, train), &features)
        } else {
            self.head.forward_t(&Tensor::cat(&features, 0), train)
        };
        let z = match &self.bn_last {
            Some(bn) if self.plan.bn_last_per_view => {
                per_view(&|zi| bn.forward_t(zi, train), &z.chunk(v, 0))
            }
            Some(bn) => bn.forward_t(&z, train),
            None => z,
        };
        drop(features);
        let m = z.size()[0] / v;
        let predictions = self
            .predictor
            .as_ref()
            .map(|p| per_view(&|zi| p.forward_t(zi, train), &z.chunk(v, 0)).view([v, m, -1]));
        let target_embeddings = self.target.as_ref().map(|t| {
            tch::no_grad(|| {
                per_view(
                    &|x| t.head.forward_t(&t.encoder.forward_t(x, train), train),
                    views,
                )
                .view([v, m, -1])
            })
        });
        StepOutputs {
            embeddings: z.view([v, m, -1]),
            predictions,
            target_embeddings,
        }
    }
}

/// The throughput options on any backbone: ResNets take both, another
/// backbone gets channels-last weights and no bf16 (with a note).
fn accelerate(
    accel: &Acceleration,
    vs: &VarStore,
    encoder: &mut dyn Backbone,
) -> AccelerationStatus {
    if let Some(resnet) = encoder.as_resnet_mut() {
        return accel.apply(vs, resnet);
    }
    let mut notes = Vec::new();
    if accel.channels_last {
        store_channels_last(vs);
        notes.push(format!(
            "channels-last: convolution weights on {:?} stored NHWC",
            vs.device()
        ));
    }
    if accel.bf16 {
        notes.push("bf16: skipped, the encoder is not one of ssl-models' ResNets".into());
    }
    AccelerationStatus {
        channels_last: accel.channels_last,
        bf16: false,
        notes,
    }
}
