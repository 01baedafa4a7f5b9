//! ssl-eval: the evaluation protocols of the paper (`docs/reference.md` §7)
//! and its collapse diagnostics (§7.5, §9).
//!
//! - [`features`]: run a frozen network over a split, one `[n, d]` tensor out;
//! - [`knn`]: 5-NN Euclidean majority vote (the reference) or solo-learn's
//!   temperature-weighted cosine vote, in bounded-memory blocks;
//! - [`linear_probe`]: Adam, 500 epochs, 1e-2 → 1e-6, batches of 1000;
//! - [`imagenet_linear`]: Table 2's frozen-encoder protocol (SGD or LARS, cosine);
//! - [`diagnostics`]: spectrum, stable/effective rank, class cosine similarity;
//! - [`results`]: the typed results, as JSON.
//!
//! ```no_run
//! use ssl_eval::{knn_evaluate, linear_probe, Features, KnnConfig, LinearProbeConfig};
//! # fn main() -> Result<(), ssl_eval::EvalError> {
//! let opts = (tch::Kind::Float, tch::Device::Cpu);
//! let train = Features::new(tch::Tensor::randn([1000, 64], opts), tch::Tensor::randint(10, [1000], (tch::Kind::Int64, tch::Device::Cpu)), "train")?;
//! let test = Features::new(tch::Tensor::randn([200, 64], opts), tch::Tensor::randint(10, [200], (tch::Kind::Int64, tch::Device::Cpu)), "test")?;
//! let knn = knn_evaluate(&train, &test, &KnnConfig::reference())?;
//! let (_clf, linear) = linear_probe(&train, &test, &LinearProbeConfig::reference())?;
//! println!("5-NN {:.3}, linear {:.3}", knn.top1, linear.top1);
//! # Ok(()) }
//! ```
//!
//! Architecture Invariant: evaluates features it is given or an encoder it
//! is handed; never trains the encoder.

pub mod diagnostics;
pub mod error;
pub mod features;
pub mod imagenet_linear;
pub mod knn;
mod knn_cpu;
mod knn_quant;
pub mod linear_classifier;
pub mod linear_probe;
pub mod optim;
mod probe_kernel;
pub mod results;

pub use diagnostics::{class_cosine_similarity, collapse_diagnostics, ClassCosine};
pub use error::EvalError;
pub use features::{extract_features, extract_features_module, num_classes, Features};
pub use imagenet_linear::{
    imagenet_linear, ImagenetLinearConfig, ImagenetLinearTask, LinearOptimizer,
};
pub use knn::{knn_evaluate, knn_scores, nearest_neighbours, KnnConfig, KnnMetric, Neighbours};
pub use linear_classifier::{top_k_accuracy, LinearClassifier};
pub use linear_probe::{epoch_permutation, linear_probe, train_linear_probe, LinearProbeConfig};
pub use optim::TensorOptimizer;
pub use results::{
    DiagnosticsResult, EvalResults, KnnResult, LinearProtocol, LinearResult, RankSummary,
    Representation,
};
