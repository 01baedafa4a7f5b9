//! Restoring a trained run for evaluation, analysis and export: the
//! configuration comes from the checkpoint's own metadata (what the run was
//! trained with), the weights from the checkpoint.

use std::path::{Path, PathBuf};

use ssl_models::checkpoint::{load_checkpoint, metadata_path, CheckpointMetadata};
use tch::Device;

use crate::config::Config;
use crate::error::{bail, Context, Result};
use crate::networks::Networks;
use crate::trainer::checkpoint_path;

/// A run restored from its checkpoint.
#[derive(Debug)]
pub struct Restored {
    /// The checkpoint file that was read.
    pub checkpoint: PathBuf,
    /// The configuration the run was trained with (device possibly replaced).
    pub config: Config,
    /// Encoder, head, predictor (and target) with the trained weights.
    pub nets: Networks,
    /// Epoch/step/RNG metadata of the checkpoint.
    pub meta: CheckpointMetadata,
}

/// Resolves `path` — a checkpoint file, or a run directory holding
/// `checkpoint.safetensors` — to the checkpoint file.
pub fn checkpoint_file(path: &Path) -> Result<PathBuf> {
    let file = if path.is_dir() {
        checkpoint_path(path)
    } else {
        path.to_path_buf()
    };
    if !file.is_file() {
        if path.is_dir() {
            bail!(
                "{}: a run directory without checkpoint.safetensors (has the run finished an epoch?)",
                path.display()
            );
        }
        bail!(
            "{}: no such checkpoint (give a run directory or its checkpoint.safetensors)",
            path.display()
        );
    }
    Ok(file)
}

/// The configuration stored in a checkpoint's metadata (`NAME.json` beside it).
pub fn stored_config(checkpoint: &Path) -> Result<Config> {
    let meta_path = metadata_path(checkpoint);
    let text = std::fs::read_to_string(&meta_path)
        .with_context(|| format!("reading the checkpoint metadata {}", meta_path.display()))?;
    let meta: CheckpointMetadata = serde_json::from_str(&text)
        .with_context(|| format!("{}: not checkpoint metadata", meta_path.display()))?;
    let config: Config = serde_json::from_value(meta.config)
        .with_context(|| format!("{}: the stored config does not parse", meta_path.display()))?;
    Ok(config)
}

/// Restores the run at `path` (run directory or checkpoint file) on `device`.
/// Data locations can be changed afterwards on `config` (e.g. `data.root`).
pub fn restore(path: &Path, device: Device) -> Result<Restored> {
    let checkpoint = checkpoint_file(path)?;
    let config = stored_config(&checkpoint)?;
    let nets = Networks::new(&config, device)?;
    let meta = load_checkpoint(
        &checkpoint,
        &nets.vs,
        None,
        nets.target.as_ref().map(|t| &t.ema),
    )
    .with_context(|| format!("loading {}", checkpoint.display()))?;
    Ok(Restored {
        checkpoint,
        config,
        nets,
        meta,
    })
}
