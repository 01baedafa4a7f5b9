//! Channels-last memory layout (CPU and CUDA) and bf16 mixed precision (CUDA).
//!
//! Channels-last helps on both devices: cuDNN's tensor-core kernels and
//! oneDNN's NHWC CPU kernels prefer it. On the 2-core AMD development CPU,
//! ResNet-18's CIFAR convolutions at batch 64 ran forward 1.1–1.8× faster
//! NHWC (the stem 5×) and backward about the same; the CW-RGP train step's
//! forward took 15–30% less time, the whole step 0–10% less. bf16 is a GPU option: on the CPU it is skipped and the
//! returned [`AccelerationStatus`] says so, for the caller to log.
//! bf16 is done by the encoder itself ([`ResNet::set_conv_kind`]) rather
//! than with `tch::autocast`, which can only switch on CUDA autocast with its
//! default float16 (tch exposes no way to choose bfloat16).

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

use crate::resnet::ResNet;

/// What to switch on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Acceleration {
    /// Store convolution weights and inputs as NHWC (`channels_last`), which
    /// cuDNN's tensor-core kernels and oneDNN's CPU kernels prefer.
    pub channels_last: bool,
    /// Run the ResNet's convolutions in bfloat16 as
    /// `torch.autocast(dtype=torch.bfloat16)` does: weights kept in float32
    /// and cast on the fly, activations in bfloat16, BN parameters and
    /// running statistics in float32, the pooled output in float32.
    pub bf16: bool,
}

/// What is in effect, with one line per option explaining a skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccelerationStatus {
    /// Channels-last is in effect.
    pub channels_last: bool,
    /// bf16 convolutions are in effect.
    pub bf16: bool,
    /// Lines for the caller's log.
    pub notes: Vec<String>,
}

impl Acceleration {
    /// Applies the options to `encoder` (built in `vs`): channels-last
    /// converts every 4-D float variable of `vs` to NHWC strides (the values
    /// are unchanged; see [`store_channels_last`]) on any device; bf16 sets
    /// the encoder's convolution kind on CUDA and is skipped, with a note,
    /// elsewhere.
    pub fn apply(&self, vs: &VarStore, encoder: &mut ResNet) -> AccelerationStatus {
        let device = vs.device();
        let cuda = matches!(device, Device::Cuda(_));
        let mut notes = Vec::new();
        let channels_last = self.channels_last;
        if channels_last {
            store_channels_last(vs);
            notes.push(format!(
                "channels-last: convolution weights on {device:?} stored NHWC"
            ));
        }
        let bf16 = self.bf16 && cuda;
        if bf16 {
            encoder.set_conv_kind(Kind::BFloat16);
            notes.push("bf16: encoder convolutions run in bfloat16, weights stay float32".into());
        } else if self.bf16 {
            notes.push(format!(
                "bf16: skipped, the device is {device:?} (CUDA only)"
            ));
        }
        AccelerationStatus {
            channels_last,
            bf16,
            notes,
        }
    }
}

/// Gives every 4-D floating-point variable of `vs` channels-last (NHWC)
/// strides in place; values, names and shapes are unchanged, and so are
/// checkpoints (they store values in NCHW order whatever the strides).
pub fn store_channels_last(vs: &VarStore) {
    for (_, mut var) in vs.variables() {
        if var.dim() == 4 && var.is_floating_point() {
            let nhwc = var.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
            tch::no_grad(|| var.set_data(&nhwc));
        }
    }
}

impl AccelerationStatus {
    /// The input batch in the layout the network expects: NHWC strides when
    /// channels-last is in effect, else `x` itself.
    pub fn prepare_input(&self, x: &Tensor) -> Tensor {
        if self.channels_last && x.dim() == 4 {
            x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
        } else {
            x.shallow_clone()
        }
    }
}
