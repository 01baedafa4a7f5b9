//! The networks a method trains (SPEC §4): encoder + projection head, and
//! per method a predictor (BYOL, SimSiam), an EMA target (BYOL) or SwAV
//! prototypes. Variable names: `encoder.<torchvision name>`, `head.<i>.…`,
//! `predictor.<i>.…`, `prototypes.weight`.

use anyhow::{Context, Result};
use ssl_losses::{Method, MethodOutputs};
use ssl_models::{
    Acceleration, AccelerationStatus, BufferUpdate, Depth, EmaTarget, Mlp, ProjectionHeadConfig,
    Prototypes, ResNet, ResNetConfig, Stem,
};
use tch::nn::{self, ModuleT, VarStore};
use tch::{Device, Tensor};

use crate::config::{Config, DatasetName};

/// The EMA copy of encoder + head (BYOL).
#[derive(Debug)]
pub struct Target {
    pub ema: EmaTarget,
    encoder: ResNet,
    head: Mlp,
}

#[derive(Debug)]
pub struct Networks {
    pub vs: VarStore,
    pub encoder: ResNet,
    pub head: Mlp,
    pub predictor: Option<Mlp>,
    pub prototypes: Option<Prototypes>,
    pub target: Option<Target>,
    /// What `run.channels_last` / `run.bf16` switched on, with notes to log.
    pub acceleration: AccelerationStatus,
}

/// One step's outputs, each `[views, m, d]`.
#[derive(Debug)]
pub struct StepOutputs {
    pub embeddings: Tensor,
    pub predictions: Option<Tensor>,
    pub target_embeddings: Option<Tensor>,
}

impl StepOutputs {
    pub fn as_method_outputs<'a>(&'a self, nets: &'a Networks) -> MethodOutputs<'a> {
        MethodOutputs {
            embeddings: &self.embeddings,
            predictions: self.predictions.as_ref(),
            target_embeddings: self.target_embeddings.as_ref(),
            prototypes: nets.prototypes.as_ref().map(|p| &p.weight),
        }
    }
}

fn stem_for(dataset: DatasetName) -> Stem {
    match dataset {
        DatasetName::Cifar10 | DatasetName::Cifar100 | DatasetName::Synthetic => Stem::Cifar,
        DatasetName::Stl10 | DatasetName::TinyImagenet => Stem::SmallWithMaxPool,
        DatasetName::Imagenet => Stem::ImageNet,
    }
}

/// Encoder and head under `path` (`encoder.…`, `head.…`).
fn encoder_and_head(path: &nn::Path<'_>, cfg: &Config) -> Result<(ResNet, Mlp)> {
    let depth = Depth::parse(&cfg.model.arch)?;
    let rcfg = ResNetConfig::new(depth, stem_for(cfg.data.dataset)).with_width(cfg.model.width);
    let encoder = ResNet::new(&(path / "encoder"), &rcfg)?;
    let head = match &cfg.method {
        Method::Simsiam(_) => Mlp::simsiam_head(
            &(path / "head"),
            encoder.out_dim(),
            cfg.model.head_size,
            cfg.model.emb,
        ),
        _ => Mlp::projection_head(
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
    /// Builds every network the method needs, initialised from libtorch's
    /// RNG (seed it first for repeatable runs).
    pub fn new(cfg: &Config, device: Device) -> Result<Self> {
        let vs = VarStore::new(device);
        let root = vs.root();
        let (encoder, head) = encoder_and_head(&root, cfg)?;
        let emb = cfg.model.emb;
        let predictor = match &cfg.method {
            Method::Byol(_) => Some(Mlp::byol_predictor(
                &(&root / "predictor"),
                emb,
                cfg.model.head_size,
            )),
            Method::Simsiam(p) => Some(Mlp::simsiam_predictor(
                &(&root / "predictor"),
                emb,
                p.predictor_hidden,
            )),
            _ => None,
        };
        let prototypes = cfg
            .method
            .networks()
            .prototypes
            .map(|k| Prototypes::new(&(&root / "prototypes"), emb, k));
        let accel = Acceleration {
            channels_last: cfg.run.channels_last,
            bf16: cfg.run.bf16,
        };
        let mut encoder = encoder;
        let acceleration = accel.apply(&vs, &mut encoder);
        let target = if cfg.method.networks().ema_target {
            let (ema, (mut encoder, head)) = EmaTarget::new(&vs, BufferUpdate::Copy, |p| {
                encoder_and_head(p, cfg)
                    .map_err(|e| ssl_models::ModelError::Config(format!("{e:#}")))
            })
            .context("building the EMA target")?;
            accel.apply(ema.var_store(), &mut encoder);
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
            acceleration,
        })
    }

    /// The views' forward pass as the reference runs it (winci-ai/CW-RGP,
    /// `base/methods/*.py`; the peer baseline's `step` does the same): the
    /// encoder runs once per view, so its BatchNorm statistics are those of
    /// one view's batch (`[self.model(x) for x in samples]`); the head runs
    /// on the views concatenated (`self.head(torch.cat(h))`) except for the
    /// predictor methods BYOL and SimSiam, whose head, predictor and target
    /// run per view (`[self.head(self.model(x)) for x in samples]`).
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
        let z = if self.predictor.is_some() {
            per_view(&|h| self.head.forward_t(h, train), &features)
        } else {
            self.head.forward_t(&Tensor::cat(&features, 0), train)
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
