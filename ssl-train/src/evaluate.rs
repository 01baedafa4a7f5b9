//! Evaluating an encoder during training and after it (the protocols of
//! the paper §5): k-NN on the encoder (or head) output of the classifier
//! split, the linear probe, and the collapse diagnostics of the test
//! features.

use serde::{Deserialize, Serialize};
use ssl_eval::{
    collapse_diagnostics, knn_evaluate, linear_probe, EvalResults, KnnConfig, LinearProbeConfig,
    Representation,
};
use tch::nn::ModuleT;
use tch::{Device, Tensor};

use crate::config::Config;
use crate::data::{split_features, Splits};
use crate::error::Result;
use crate::networks::Networks;
use crate::records::Spectrum;

/// The headline numbers of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalSummary {
    /// k-NN top-1 (NaN when k-NN did not run).
    pub knn_top1: f64,
    /// Linear-probe top-1, when the probe ran.
    pub linear_top1: Option<f64>,
    /// Linear-probe top-5, when the probe ran.
    pub linear_top5: Option<f64>,
    /// Stable rank of the test features over their width.
    pub normalised_stable_rank: f64,
}

/// Which protocols an evaluation runs, on which output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalRequest {
    /// k-NN (`eval.knn_k` neighbours).
    pub knn: bool,
    /// The Adam linear probe (`eval.linear_epochs` epochs).
    pub linear: bool,
    /// The head output (`eval.head`) instead of the encoder output.
    pub head: bool,
}

impl EvalRequest {
    /// What training evaluates: k-NN always, the probe with `eval.linear`.
    pub fn from_config(cfg: &Config) -> Self {
        Self {
            knn: true,
            linear: cfg.eval.linear,
            head: cfg.eval.head,
        }
    }
}

/// Everything one evaluation measured: the summary the trainer logs, the
/// typed results (`eval.json`) and the covariance spectrum of the test
/// features (the plots' spectrum).
#[derive(Debug)]
pub struct Evaluation {
    /// The headline numbers.
    pub summary: EvalSummary,
    /// Every protocol's full results.
    pub results: EvalResults,
    /// Eigenvalues of the test features' covariance, descending.
    pub covariance_eigenvalues: Vec<f64>,
}

impl Evaluation {
    /// The test features' spectrum, for `spectrum.json` and the plot.
    pub fn spectrum(&self, epoch: usize) -> Spectrum {
        Spectrum {
            epoch,
            representation: match self.results.representation {
                Representation::Head => "head",
                Representation::Whitened => "whitened",
                Representation::Encoder => "encoder",
            }
            .into(),
            singular_values: self
                .results
                .diagnostics
                .as_ref()
                .map(|d| d.rank.singular_values.clone())
                .unwrap_or_default(),
            covariance_eigenvalues: self.covariance_eigenvalues.clone(),
        }
    }
}

/// Features of the classifier and test splits (encoder or head output,
/// evaluation transform), then the requested protocols and the collapse
/// diagnostics of the test features. A protocol not run reads NaN in the
/// summary and `None` in the results. Fails when `splits` has no labelled
/// splits.
pub fn evaluate_with(
    cfg: &Config,
    nets: &Networks,
    splits: &Splits,
    device: Device,
    req: &EvalRequest,
) -> Result<Evaluation> {
    let labelled = splits.labelled()?;
    let encode = |x: &Tensor| {
        let h = nets.encoder.forward_t(x, false);
        if req.head {
            nets.head.forward_t(&h, false)
        } else {
            h
        }
    };
    let train = split_features(
        cfg,
        &labelled.classifier,
        &splits.eval_pipeline,
        device,
        encode,
        "classifier",
    )?;
    let test = split_features(
        cfg,
        &labelled.test,
        &splits.eval_pipeline,
        device,
        encode,
        "test",
    )?;
    let mut results = EvalResults::new(if req.head {
        Representation::Head
    } else {
        Representation::Encoder
    });
    if req.knn {
        results.knn = Some(knn_evaluate(
            &train,
            &test,
            &KnnConfig {
                k: cfg.eval.knn_k as i64,
                ..KnnConfig::reference()
            },
        )?);
    }
    if req.linear {
        let probe = LinearProbeConfig {
            epochs: cfg.eval.linear_epochs,
            seed: cfg.run.seed,
            ..LinearProbeConfig::reference()
        };
        results.linear = Some(linear_probe(&train, &test, &probe)?.1);
    }
    let diagnostics = collapse_diagnostics(&test.x, Some(&test.y))?;
    let covariance_eigenvalues = whitening_core::diagnostics::covariance_spectrum(&test.x)?;
    let summary = EvalSummary {
        knn_top1: results.knn.as_ref().map_or(f64::NAN, |k| k.top1),
        linear_top1: results.linear.as_ref().map(|l| l.top1),
        linear_top5: results.linear.as_ref().map(|l| l.top5),
        normalised_stable_rank: diagnostics.rank.normalised_stable_rank,
    };
    results.diagnostics = Some(diagnostics);
    Ok(Evaluation {
        summary,
        results,
        covariance_eigenvalues,
    })
}

/// [`evaluate_with`] what training evaluates ([`EvalRequest::from_config`]).
pub fn evaluate(
    cfg: &Config,
    nets: &Networks,
    splits: &Splits,
    device: Device,
) -> Result<Evaluation> {
    evaluate_with(cfg, nets, splits, device, &EvalRequest::from_config(cfg))
}
