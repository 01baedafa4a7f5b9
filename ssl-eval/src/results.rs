//! The typed results of an evaluation, serialised as JSON: what the
//! trainer writes, the CLI prints and the reproduction harness reads.

use std::path::Path;

use serde::{Deserialize, Serialize};
use whitening_core::diagnostics::RankDiagnostics;

use crate::knn::KnnMetric;
use crate::EvalError;

/// Which output of the network was evaluated (the paper's analysis 2
/// compares all three, `docs/reference.md` §9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Representation {
    /// The encoder output `h` (the default, `docs/reference.md` §4.4).
    Encoder,
    /// The projection head's embedding `z` (`eval_head`).
    Head,
    /// The whitened embedding `Ẑ`.
    Whitened,
}

/// Outcome of the k-NN protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KnnResult {
    /// Number of neighbours.
    pub k: i64,
    /// Distance and vote.
    pub metric: KnnMetric,
    /// Top-1 accuracy in [0, 1].
    pub top1: f64,
    /// Top-5 accuracy in [0, 1] (weighted cosine vote only).
    pub top5: Option<f64>,
    /// Training (classifier split) examples.
    pub n_train: i64,
    /// Test examples.
    pub n_test: i64,
}

/// Which linear protocol produced a [`LinearResult`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinearProtocol {
    /// Adam probe on frozen features (`docs/reference.md` §7.3, small
    /// datasets).
    AdamProbe,
    /// ImageNet protocol of Table 2 with SGD + momentum.
    ImagenetSgd,
    /// ImageNet protocol of Table 2 with LARS.
    ImagenetLars,
    /// ImageNet protocol with apex's LARC (the release's `--lars`).
    ImagenetLarc,
}

/// Outcome of a linear protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearResult {
    /// The protocol.
    pub protocol: LinearProtocol,
    /// Epochs trained.
    pub epochs: usize,
    /// Top-1 accuracy in [0, 1].
    pub top1: f64,
    /// Top-5 accuracy in [0, 1].
    pub top5: f64,
    /// Mean cross-entropy on the training data at the end (for the ImageNet
    /// protocol: the mean over the last epoch's batches).
    pub train_loss: f64,
    /// Training examples (per epoch).
    pub n_train: i64,
    /// Test (validation) examples.
    pub n_test: i64,
    /// The ImageNet protocol validates every epoch and reports the best
    /// (`top1`, `top5` are that epoch's), as the release's `lincls.py`
    /// reports `best_acc1`: which epoch (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_epoch: Option<usize>,
    /// ... and the last epoch's top-1 beside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_top1: Option<f64>,
}

/// Rank diagnostics of a feature matrix (whitening-core's
/// [`RankDiagnostics`], in serialisable form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RankSummary {
    /// Singular values, descending.
    pub singular_values: Vec<f64>,
    /// Stable rank `‖A‖²_F / ‖A‖²_2`.
    pub stable_rank: f64,
    /// Stable rank / `min(n, d)`.
    pub normalised_stable_rank: f64,
    /// Effective rank `exp(H(σ / Σσ))`.
    pub effective_rank: f64,
}

impl From<RankDiagnostics> for RankSummary {
    fn from(r: RankDiagnostics) -> Self {
        Self {
            singular_values: r.singular_values,
            stable_rank: r.stable_rank,
            normalised_stable_rank: r.normalised_stable_rank,
            effective_rank: r.effective_rank,
        }
    }
}

/// Collapse diagnostics of a set of features (`docs/reference.md` §7.5, §9).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiagnosticsResult {
    /// Rows of the feature matrix.
    pub n: i64,
    /// Columns of the feature matrix.
    pub d: i64,
    /// Spectrum and ranks.
    pub rank: RankSummary,
    /// Mean cosine similarity of distinct examples of one class, averaged
    /// over classes (present when labels were given).
    pub intra_class_cosine: Option<f64>,
    /// Mean cosine similarity of examples of two different classes,
    /// averaged over class pairs (present when labels were given).
    pub inter_class_cosine: Option<f64>,
}

/// Everything one evaluation measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalResults {
    /// Which network output the features are.
    pub representation: Representation,
    /// k-NN protocol.
    pub knn: Option<KnnResult>,
    /// Linear probe (or the ImageNet linear protocol).
    pub linear: Option<LinearResult>,
    /// Collapse diagnostics.
    pub diagnostics: Option<DiagnosticsResult>,
}

impl EvalResults {
    /// Empty results for `representation`.
    pub fn new(representation: Representation) -> Self {
        Self {
            representation,
            knn: None,
            linear: None,
            diagnostics: None,
        }
    }

    /// Pretty-printed JSON.
    pub fn to_json(&self) -> String {
        // Plain data (no maps with non-string keys): serialisation cannot fail.
        serde_json::to_string_pretty(self)
            .unwrap_or_else(|e| unreachable!("EvalResults serialise: {e}"))
    }

    /// Writes [`Self::to_json`] to `path`.
    pub fn save(&self, path: &Path) -> Result<(), EvalError> {
        std::fs::write(path, self.to_json()).map_err(|source| EvalError::Io {
            action: "write",
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads results written by [`Self::save`].
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| EvalError::Json {
            path: path.to_path_buf(),
            source,
        })
    }
}
