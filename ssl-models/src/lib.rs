//! ssl-models: the networks of `docs/reference.md` §4 and everything that
//! stores them.
//!
//! - [`resnet`]: torchvision's ResNet-18/34/50 with its parameter names
//!   (`conv1.weight`, `layer1.0.bn2.running_mean`, …), initialisation,
//!   `zero_init_residual`, the per-dataset stems and a width multiplier.
//! - [`batch_norm`](mod@batch_norm): BatchNorm with torchvision's three buffers
//!   (`running_mean`, `running_var`, `num_batches_tracked`).
//! - [`head`]: projection heads, the BYOL and SimSiam predictors, the SimSiam
//!   head; [`prototypes`]: SwAV's prototype layer.
//! - [`ema`]: the exponential-moving-average target network (BYOL).
//! - [`optim`]: Adam, SGD and LARS whose state is plain named tensors, so a
//!   checkpoint can hold it and resuming is exact.
//! - [`checkpoint`]: the whole training state, written atomically as
//!   safetensors plus a JSON metadata file, verified by name and shape on load.
//! - [`export`]: the encoder alone (torchvision names) and the Detectron2
//!   backbone pickle (MoCo's key conversion) for the transfer experiments;
//!   [`torch_save`]: named tensors as Python's `torch.save(state_dict)`
//!   writes them (both pickles come from the crate's one pickle encoder).
//! - [`acceleration`]: channels-last (CPU and CUDA) and bf16 autocast on CUDA (reported
//!   no-ops on the CPU).
//!
//! Architecture Invariant: no losses and no datasets; checkpoint and export
//! files are written atomically (temp file + rename); the library never
//! prints, it returns what the caller may log.

pub mod acceleration;
pub mod batch_norm;
pub mod checkpoint;
pub mod ema;
mod error;
pub mod export;
pub mod head;
pub mod optim;
mod pickle;
pub mod prototypes;
pub mod resnet;
mod tensor_file;
pub mod torch_save;

pub use acceleration::{store_channels_last, Acceleration, AccelerationStatus};
pub use batch_norm::{batch_norm, BatchNorm, BatchNormConfig};
pub use checkpoint::{load_checkpoint, Checkpoint, CheckpointMetadata, RngState};
pub use ema::{BufferUpdate, EmaTarget};
pub use error::ModelError;
pub use head::{Mlp, ProjectionHeadConfig};
pub use optim::{adam_update_slice, update_parameter, Optimizer, OptimizerKind};
pub use prototypes::Prototypes;
pub use resnet::{Depth, ResNet, ResNetConfig, Stem};
