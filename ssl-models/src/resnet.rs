//! torchvision's ResNet-18/34/50 (`docs/reference.md` §4.1), parameter for
//! parameter.
//!
//! Names are exactly torchvision's `state_dict()` keys relative to the path
//! the network is built at (`conv1.weight`, `bn1.running_mean`,
//! `layer1.0.conv2.weight`, `layer2.0.downsample.0.weight`,
//! `layer2.0.downsample.1.num_batches_tracked`, …); `fc` is removed, so the
//! output is the pooled feature (512-d for ResNet-18/34, 2048-d for
//! ResNet-50 at width 1). Initialisation is torchvision's: convolutions
//! Kaiming-normal with fan-out and ReLU gain (`std = sqrt(2 / (C_out·k·k))`),
//! BatchNorm `γ = 1`, `β = 0`, and with `zero_init_residual` the last BN of
//! every residual block starts at `γ = 0`.

use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

use crate::batch_norm::{batch_norm, BatchNorm, BatchNormConfig};
use crate::ModelError;

/// Which ResNet: blocks per stage and block type are torchvision's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Depth {
    /// BasicBlock × [2, 2, 2, 2].
    ResNet18,
    /// BasicBlock × [3, 4, 6, 3].
    ResNet34,
    /// Bottleneck × [3, 4, 6, 3] (torchvision's v1.5: stride on the 3×3).
    ResNet50,
}

impl Depth {
    fn blocks(self) -> [usize; 4] {
        match self {
            Depth::ResNet18 => [2, 2, 2, 2],
            Depth::ResNet34 | Depth::ResNet50 => [3, 4, 6, 3],
        }
    }

    /// torchvision's name: `resnet18`, `resnet34`, `resnet50`.
    pub fn as_str(self) -> &'static str {
        match self {
            Depth::ResNet18 => "resnet18",
            Depth::ResNet34 => "resnet34",
            Depth::ResNet50 => "resnet50",
        }
    }

    /// The depth with torchvision's name `name`.
    pub fn parse(name: &str) -> Result<Depth, ModelError> {
        [Depth::ResNet18, Depth::ResNet34, Depth::ResNet50]
            .into_iter()
            .find(|d| d.as_str() == name)
            .ok_or_else(|| {
                ModelError::Config(format!(
                    "unknown architecture `{name}`: expected resnet18, resnet34 or resnet50"
                ))
            })
    }

    /// Output channels of a block per unit of stage width: 1 for
    /// BasicBlock, 4 for Bottleneck.
    pub fn expansion(self) -> i64 {
        match self {
            Depth::ResNet18 | Depth::ResNet34 => 1,
            Depth::ResNet50 => 4,
        }
    }
}

/// The input stem, per dataset (`docs/reference.md` §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stem {
    /// CIFAR-10/100: `conv1` 3×3, stride 1, padding 1, no max-pool.
    Cifar,
    /// STL-10 and Tiny-ImageNet: the same 3×3 `conv1`, max-pool 3×3/2 kept.
    SmallWithMaxPool,
    /// ImageNet: `conv1` 7×7, stride 2, padding 3, then max-pool 3×3/2.
    ImageNet,
}

impl Stem {
    /// The stem `docs/reference.md` §4.1 gives a dataset (`cifar10`,
    /// `cifar100`, `stl10`, `tiny-imagenet`, `imagenet`); `None` for any other
    /// name.
    pub fn for_dataset(name: &str) -> Option<Stem> {
        match name {
            "cifar10" | "cifar100" => Some(Stem::Cifar),
            "stl10" | "tiny-imagenet" => Some(Stem::SmallWithMaxPool),
            "imagenet" => Some(Stem::ImageNet),
            _ => None,
        }
    }
}

/// What to build.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// ResNet-18, -34 or -50.
    pub depth: Depth,
    /// The stem for the dataset.
    pub stem: Stem,
    /// Multiplies every stage width (64, 128, 256, 512), each rounded to the
    /// nearest integer and at least 1; 1.0 is torchvision's network, smaller
    /// values give thin networks for CPU demos and tests.
    pub width_multiplier: f64,
    /// Start the last BN of every residual block at `γ = 0`, so each block
    /// begins as the identity (`docs/reference.md` §4.1: on).
    pub zero_init_residual: bool,
}

impl ResNetConfig {
    /// torchvision's network at full width with `zero_init_residual`
    /// (`docs/reference.md` §4.1).
    pub fn new(depth: Depth, stem: Stem) -> Self {
        ResNetConfig {
            depth,
            stem,
            width_multiplier: 1.0,
            zero_init_residual: true,
        }
    }

    /// The same with another width multiplier.
    pub fn with_width(self, width_multiplier: f64) -> Self {
        ResNetConfig {
            width_multiplier,
            ..self
        }
    }

    /// Stage widths `round(w·[64, 128, 256, 512])`, each at least 1.
    pub fn stage_widths(&self) -> Result<[i64; 4], ModelError> {
        let w = self.width_multiplier;
        if !(w.is_finite() && w > 0.0) {
            return Err(ModelError::Config(format!(
                "width_multiplier must be a positive number, got {w}"
            )));
        }
        Ok([64.0, 128.0, 256.0, 512.0].map(|c: f64| ((c * w).round() as i64).max(1)))
    }

    /// Feature dimension of the output: last stage width × expansion
    /// (512 for ResNet-18/34, 2048 for ResNet-50, at width 1).
    pub fn out_dim(&self) -> Result<i64, ModelError> {
        Ok(self.stage_widths()?[3] * self.depth.expansion())
    }
}

/// A bias-free 2-D convolution whose weight is `path.weight`, Kaiming-normal
/// with fan-out and ReLU gain.
#[derive(Debug)]
struct Conv {
    weight: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv {
    /// The convolution computed in `kind` (the weight cast on the fly when
    /// `kind` is not the weight's own).
    fn forward(&self, xs: &Tensor, kind: Kind) -> Tensor {
        let weight = if self.weight.kind() == kind {
            self.weight.shallow_clone()
        } else {
            self.weight.to_kind(kind)
        };
        let xs = if xs.kind() == kind {
            xs.shallow_clone()
        } else {
            xs.to_kind(kind)
        };
        xs.conv2d(
            &weight,
            None::<Tensor>,
            [self.stride],
            [self.padding],
            [1],
            1,
        )
    }
}

fn conv(path: nn::Path<'_>, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> Conv {
    let init = nn::Init::Kaiming {
        dist: nn::init::NormalOrUniform::Normal,
        fan: nn::init::FanInOut::FanOut,
        non_linearity: nn::init::NonLinearity::ReLU,
    };
    Conv {
        weight: path.var("weight", &[c_out, c_in, k, k], init),
        stride,
        padding,
    }
}

fn bn(path: nn::Path<'_>, channels: i64) -> BatchNorm {
    batch_norm(&path, channels, BatchNormConfig::default())
}

fn zero_gamma(norm: &BatchNorm) {
    if let Some(weight) = &norm.weight {
        let mut weight = weight.shallow_clone();
        tch::no_grad(|| {
            let _ = weight.fill_(0.0);
        });
    }
}

/// `downsample`: 1×1 convolution with the block's stride, then BN.
#[derive(Debug)]
struct Downsample {
    conv: Conv,
    norm: BatchNorm,
}

impl Downsample {
    fn forward_t(&self, xs: &Tensor, train: bool, kind: Kind) -> Tensor {
        self.norm.forward_t(&self.conv.forward(xs, kind), train)
    }
}

/// One residual block: BasicBlock (two 3×3) or Bottleneck (1×1, 3×3, 1×1).
#[derive(Debug)]
struct Block {
    convs: Vec<Conv>,
    norms: Vec<BatchNorm>,
    downsample: Option<Downsample>,
}

impl Block {
    fn new(
        path: nn::Path<'_>,
        depth: Depth,
        c_in: i64,
        width: i64,
        stride: i64,
        zero_init_residual: bool,
    ) -> Block {
        let c_out = width * depth.expansion();
        let (convs, norms) = match depth {
            Depth::ResNet18 | Depth::ResNet34 => (
                vec![
                    conv(&path / "conv1", c_in, width, 3, stride, 1),
                    conv(&path / "conv2", width, width, 3, 1, 1),
                ],
                vec![bn(&path / "bn1", width), bn(&path / "bn2", width)],
            ),
            Depth::ResNet50 => (
                vec![
                    conv(&path / "conv1", c_in, width, 1, 1, 0),
                    conv(&path / "conv2", width, width, 3, stride, 1),
                    conv(&path / "conv3", width, c_out, 1, 1, 0),
                ],
                vec![
                    bn(&path / "bn1", width),
                    bn(&path / "bn2", width),
                    bn(&path / "bn3", c_out),
                ],
            ),
        };
        if zero_init_residual {
            if let Some(last) = norms.last() {
                zero_gamma(last);
            }
        }
        let downsample = (stride != 1 || c_in != c_out).then(|| {
            let ds = &path / "downsample";
            Downsample {
                conv: conv(&ds / 0, c_in, c_out, 1, stride, 0),
                norm: bn(&ds / 1, c_out),
            }
        });
        Block {
            convs,
            norms,
            downsample,
        }
    }

    /// `relu(F(x) + shortcut(x))`, F = conv–BN–ReLU … conv–BN.
    fn forward_t(&self, xs: &Tensor, train: bool, kind: Kind) -> Tensor {
        let mut ys = xs.shallow_clone();
        let last = self.convs.len() - 1;
        for (i, (conv, norm)) in self.convs.iter().zip(&self.norms).enumerate() {
            ys = norm.forward_t(&conv.forward(&ys, kind), train);
            if i < last {
                ys = ys.relu();
            }
        }
        let shortcut = match &self.downsample {
            Some(ds) => ds.forward_t(xs, train, kind),
            None => xs.shallow_clone(),
        };
        (ys + shortcut).relu()
    }
}

/// A ResNet without `fc`: `x [N, 3, H, W] ↦ avgpool(layer4(…layer1(stem(x)))) [N, out_dim]`.
#[derive(Debug)]
pub struct ResNet {
    conv1: Conv,
    bn1: BatchNorm,
    max_pool: bool,
    stages: Vec<Vec<Block>>,
    out_dim: i64,
    conv_kind: Kind,
}

impl ResNet {
    /// Builds the network at `path` (its parameters are `path.conv1.weight`,
    /// …) with torchvision's initialisation drawn from libtorch's global RNG
    /// (`tch::manual_seed` fixes it).
    pub fn new(path: &nn::Path<'_>, config: &ResNetConfig) -> Result<ResNet, ModelError> {
        let widths = config.stage_widths()?;
        let (k, stride, padding, max_pool) = match config.stem {
            Stem::Cifar => (3, 1, 1, false),
            Stem::SmallWithMaxPool => (3, 1, 1, true),
            Stem::ImageNet => (7, 2, 3, true),
        };
        let conv1 = conv(path / "conv1", 3, widths[0], k, stride, padding);
        let bn1 = bn(path / "bn1", widths[0]);
        let mut c_in = widths[0];
        let mut stages = Vec::with_capacity(4);
        for (s, (&width, &n_blocks)) in widths.iter().zip(&config.depth.blocks()).enumerate() {
            let stage_path = path / format!("layer{}", s + 1);
            let stage_stride = if s == 0 { 1 } else { 2 };
            let mut blocks = Vec::with_capacity(n_blocks);
            for b in 0..n_blocks {
                let stride = if b == 0 { stage_stride } else { 1 };
                blocks.push(Block::new(
                    &stage_path / b,
                    config.depth,
                    c_in,
                    width,
                    stride,
                    config.zero_init_residual,
                ));
                c_in = width * config.depth.expansion();
            }
            stages.push(blocks);
        }
        Ok(ResNet {
            conv1,
            bn1,
            max_pool,
            stages,
            out_dim: c_in,
            conv_kind: Kind::Float,
        })
    }

    /// Dimension of the output features.
    pub fn out_dim(&self) -> i64 {
        self.out_dim
    }

    /// The precision convolutions run in: `Kind::Float` (the default) or a
    /// reduced one such as `Kind::BFloat16` (weights stay float32 and are
    /// cast on the fly, so gradients reach them in float32; the pooled
    /// output is float32 whatever the kind). See [`crate::Acceleration`].
    pub fn set_conv_kind(&mut self, kind: Kind) {
        self.conv_kind = kind;
    }
}

impl ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let kind = self.conv_kind;
        let mut ys = self
            .bn1
            .forward_t(&self.conv1.forward(xs, kind), train)
            .relu();
        if self.max_pool {
            ys = ys.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for block in self.stages.iter().flatten() {
            ys = block.forward_t(&ys, train, kind);
        }
        ys.adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .to_kind(Kind::Float)
    }
}
