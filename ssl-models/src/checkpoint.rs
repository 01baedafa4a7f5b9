//! The whole training state in one atomic safetensors file plus a small JSON
//! metadata file beside it.
//!
//! `<name>.safetensors` holds the tensors under three prefixes —
//! `model/<torchvision name>`, `optimizer/<slot>.<parameter>` (and
//! `optimizer/step`), `ema/<name>` — and, in its header, the
//! [`CheckpointMetadata`] as JSON and a checksum of the tensor data.
//! `<name>.json` is the same metadata for people and tools. Each file is
//! written to a temporary file, synced and renamed into place, so a crash
//! never leaves a half-written checkpoint where the last good one was.
//! Loading reads the metadata from the safetensors header (written together
//! with the tensors), verifies the checksum, and checks every tensor's name,
//! shape and dtype against the model, reporting every mismatch by name.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use crate::ema::EmaTarget;
use crate::optim::Optimizer;
use crate::tensor_file::{self, sorted_variables};
use crate::ModelError;

/// Version of the layout written by this crate.
pub const CHECKPOINT_FORMAT: u32 = 1;
/// Header key of the metadata JSON in the safetensors file.
const METADATA_KEY: &str = "ssl_models.checkpoint";

/// The exact position of a `ChaCha8Rng`: seed, stream and word position
/// (which together determine every later output).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// The 32-byte seed, hex.
    pub seed: String,
    /// The stream number.
    pub stream: u64,
    /// Words consumed (a `u128`, as decimal text since JSON numbers are f64).
    pub word_pos: String,
}

impl RngState {
    /// Captures `rng`'s position.
    pub fn of(rng: &ChaCha8Rng) -> RngState {
        RngState {
            seed: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    /// An RNG at exactly the captured position.
    pub fn restore(&self) -> Result<ChaCha8Rng, ModelError> {
        use rand::SeedableRng;
        let bad =
            |what: &str| ModelError::Config(format!("RNG state has an invalid {what}: {self:?}"));
        if self.seed.len() != 64 || !self.seed.is_ascii() {
            return Err(bad("seed (64 hex digits expected)"));
        }
        let mut seed = [0u8; 32];
        for (i, byte) in seed.iter_mut().enumerate() {
            *byte =
                u8::from_str_radix(&self.seed[2 * i..2 * i + 2], 16).map_err(|_| bad("seed"))?;
        }
        let word_pos: u128 = self.word_pos.parse().map_err(|_| bad("word position"))?;
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(word_pos);
        Ok(rng)
    }
}

/// Everything in a checkpoint that is not a tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    /// [`CHECKPOINT_FORMAT`] of the writer.
    pub format: u32,
    /// Epochs completed.
    pub epoch: u64,
    /// Optimiser steps completed.
    pub step: u64,
    /// The trainer's RNG, when it has one.
    pub rng: Option<RngState>,
    /// The resolved configuration of the run, as the trainer wrote it.
    pub config: serde_json::Value,
    /// Tensors stored per part (`model`, `optimizer`, `ema`), filled in on save.
    #[serde(default)]
    pub tensor_counts: BTreeMap<String, usize>,
}

impl CheckpointMetadata {
    /// Metadata for a state after `epoch` epochs and `step` steps.
    pub fn new(epoch: u64, step: u64, rng: Option<RngState>, config: serde_json::Value) -> Self {
        CheckpointMetadata {
            format: CHECKPOINT_FORMAT,
            epoch,
            step,
            rng,
            config,
            tensor_counts: BTreeMap::new(),
        }
    }
}

/// The parts of a training state a checkpoint holds; the optimiser and EMA
/// target are optional (a run without them saves and loads without them).
#[derive(Debug)]
pub struct Checkpoint<'a> {
    /// The trained network(s): encoder, head, predictor… in one store.
    pub model: &'a VarStore,
    /// The optimiser and its state.
    pub optimizer: Option<&'a Optimizer>,
    /// The EMA target network.
    pub ema: Option<&'a EmaTarget>,
}

/// The metadata file written beside `path`: the same name with `.json`.
pub fn metadata_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

fn prefixed(
    prefix: &str,
    tensors: BTreeMap<String, Tensor>,
) -> impl Iterator<Item = (String, Tensor)> + '_ {
    tensors
        .into_iter()
        .map(move |(k, v)| (format!("{prefix}/{k}"), v))
}

fn part(all: &BTreeMap<String, Tensor>, prefix: &str) -> BTreeMap<String, Tensor> {
    let prefix = format!("{prefix}/");
    all.iter()
        .filter_map(|(k, v)| {
            k.strip_prefix(&prefix)
                .map(|name| (name.to_string(), v.shallow_clone()))
        })
        .collect()
}

impl Checkpoint<'_> {
    /// Writes the state to `path` (a `.safetensors` file) and the metadata to
    /// [`metadata_path`]`(path)`, each atomically; returns the metadata
    /// written (with `tensor_counts` filled in).
    pub fn save(
        &self,
        path: &Path,
        metadata: &CheckpointMetadata,
    ) -> Result<CheckpointMetadata, ModelError> {
        let mut tensors = BTreeMap::new();
        let mut meta = metadata.clone();
        meta.format = CHECKPOINT_FORMAT;
        meta.tensor_counts.clear();
        let mut add = |prefix: &str, part: BTreeMap<String, Tensor>| {
            meta.tensor_counts.insert(prefix.to_string(), part.len());
            tensors.extend(prefixed(prefix, part));
        };
        add("model", sorted_variables(self.model));
        if let Some(optimizer) = self.optimizer {
            add("optimizer", optimizer.state());
        }
        if let Some(ema) = self.ema {
            add("ema", sorted_variables(ema.var_store()));
        }
        let json = serde_json::to_string_pretty(&meta)
            .map_err(|e| ModelError::Config(format!("cannot encode checkpoint metadata: {e}")))?;
        let header = HashMap::from([(METADATA_KEY.to_string(), json.clone())]);
        let bytes = tensor_file::encode(&tensors, header)?;
        tensor_file::write_atomic(path, &bytes)?;
        tensor_file::write_atomic(&metadata_path(path), json.as_bytes())?;
        Ok(meta)
    }
}

/// Reads the checkpoint at `path` into `model`, and into `optimizer` and
/// `ema` when given (each must be present in the file then), after checking
/// every name, shape and dtype; returns its metadata. A truncated,
/// corrupted or foreign file is [`ModelError::Damaged`] naming it; a file
/// for another network is [`ModelError::Mismatch`] listing every difference.
/// Nothing is modified unless the whole file checks out.
pub fn load_checkpoint(
    path: &Path,
    model: &VarStore,
    optimizer: Option<&mut Optimizer>,
    ema: Option<&EmaTarget>,
) -> Result<CheckpointMetadata, ModelError> {
    let (tensors, header) = tensor_file::decode(path)?;
    let damaged = |reason: String| ModelError::Damaged {
        path: path.to_path_buf(),
        reason,
    };
    let json = header.get(METADATA_KEY).ok_or_else(|| {
        damaged(format!(
            "no `{METADATA_KEY}` metadata: not a checkpoint of this crate"
        ))
    })?;
    let meta: CheckpointMetadata = serde_json::from_str(json)
        .map_err(|e| damaged(format!("checkpoint metadata is not valid ({e})")))?;
    if meta.format != CHECKPOINT_FORMAT {
        return Err(damaged(format!(
            "checkpoint format {} is not the supported format {CHECKPOINT_FORMAT}",
            meta.format
        )));
    }
    let unknown: Vec<String> = tensors
        .keys()
        .filter(|k| {
            !["model/", "optimizer/", "ema/"]
                .iter()
                .any(|p| k.starts_with(p))
        })
        .map(|k| format!("unexpected `{k}` outside model/, optimizer/ and ema/"))
        .collect();
    let model_expected = sorted_variables(model);
    let model_found = part(&tensors, "model");
    let mut all = unknown;
    all.extend(
        tensor_file::mismatches(&model_expected, &model_found)
            .into_iter()
            .map(|m| format!("model: {m}")),
    );
    let optimizer_found = part(&tensors, "optimizer");
    if let Some(optimizer) = optimizer.as_ref() {
        let expected = optimizer.state();
        all.extend(
            tensor_file::mismatches(&expected, &optimizer_found)
                .into_iter()
                .map(|m| format!("optimizer: {m}")),
        );
    }
    let ema_found = part(&tensors, "ema");
    let ema_expected = ema.map(|e| sorted_variables(e.var_store()));
    if let Some(expected) = &ema_expected {
        all.extend(
            tensor_file::mismatches(expected, &ema_found)
                .into_iter()
                .map(|m| format!("ema: {m}")),
        );
    }
    if !all.is_empty() {
        return Err(ModelError::Mismatch {
            path: path.to_path_buf(),
            mismatches: all,
        });
    }
    tensor_file::copy_into(path, &model_expected, &model_found)?;
    if let Some(optimizer) = optimizer {
        optimizer.load_state(path, &optimizer_found)?;
    }
    if let Some(expected) = &ema_expected {
        tensor_file::copy_into(path, expected, &ema_found)?;
    }
    Ok(meta)
}
