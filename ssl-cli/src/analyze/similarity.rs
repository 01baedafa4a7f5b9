//! `ssl analyze similarity RUN` (docs/reference.md §9.3): similarity within a class
//! falls as whitening grows. The encoder output and the embedding of the
//! test split are whitened to a power `p`, `x ↦ Σ^{-p/2}(x − μ)`, for `p`
//! from 0 (centred only) to 1 (full ZCA whitening), with `μ` and `Σ = U Λ Uᵀ`
//! fitted on the classifier split (`Λ + ε`, `ε = 1e-4 · mean λ`, so
//! dead channels do not divide by zero); for each `p`, the mean intra- and
//! inter-class cosine similarity of the test features and the k-NN accuracy.
//!
//! Writes `similarity.{svg,png}` (cosine vs p), `similarity-knn.{svg,png}`,
//! `similarity.{md,csv,json}`.

use anyhow::Result;
use clap::Args;
use serde_json::json;
use ssl_eval::{class_cosine_similarity, knn_evaluate, Features, KnnConfig};
use tch::{Kind, Tensor};

use super::{encoder_and_embedding, open_checkpoint, pct, write_json, CheckpointArgs, Table};
use crate::plot::{LineChart, Series};

#[derive(Debug, Clone, Args)]
pub struct SimilarityArgs {
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
    /// Number of whitening powers p, evenly spaced over [0, 1].
    #[arg(long, default_value_t = 11)]
    pub steps: usize,
}

/// `x ↦ (x − μ) U (Λ + ε)^{-p/2} Uᵀ` fitted on `fit`, in f64.
struct PowerWhitening {
    mean: Tensor,
    u: Tensor,
    eig: Tensor,
}

impl PowerWhitening {
    fn fit(x: &Tensor) -> Result<Self> {
        let x = x.to_kind(Kind::Double);
        let mean = x.mean_dim(0, true, None);
        let xc = &x - &mean;
        let cov = xc.transpose(0, 1).matmul(&xc) / (x.size()[0] - 1).max(1) as f64;
        let (eig, u) = cov.f_linalg_eigh("L")?;
        let eig = eig.clamp_min(0.0);
        let eps = 1e-4 * eig.mean(None).double_value(&[]).max(1e-300);
        Ok(Self {
            mean,
            u,
            eig: eig + eps,
        })
    }

    fn apply(&self, x: &Tensor, p: f64) -> Tensor {
        let xc = x.to_kind(Kind::Double) - &self.mean;
        let scale = self.eig.pow_tensor_scalar(-p / 2.0).unsqueeze(0);
        (xc.matmul(&self.u) * scale).matmul(&self.u.transpose(0, 1))
    }
}

pub fn run(args: &SimilarityArgs) -> Result<serde_json::Value> {
    let ck = open_checkpoint(&args.checkpoint)?;
    let out = args.checkpoint.out.out.clone();
    let cfg = &ck.config;
    let (h_tr, z_tr) = encoder_and_embedding(
        cfg,
        &ck.nets,
        &ck.splits.labelled()?.classifier,
        &ck.splits.eval_pipeline,
        ck.device,
        "classifier",
    )?;
    let (h_te, z_te) = encoder_and_embedding(
        cfg,
        &ck.nets,
        &ck.splits.labelled()?.test,
        &ck.splits.eval_pipeline,
        ck.device,
        "test",
    )?;
    let steps = args.steps.max(2);
    let powers: Vec<f64> = (0..steps).map(|i| i as f64 / (steps - 1) as f64).collect();
    let knn_cfg = KnnConfig {
        k: cfg.eval.knn_k as i64,
        ..KnnConfig::reference()
    };
    let mut table = Table::new(&[
        "features",
        "p",
        "intra-class cosine",
        "inter-class cosine",
        "gap",
        "k-NN top-1 %",
    ]);
    let mut cos_chart = LineChart::new(
        format!(
            "Class cosine similarity under Σ^(-p/2) whitening ({})",
            cfg.method.name()
        ),
        "whitening power p",
        "mean cosine similarity",
    )
    .markers(true);
    let mut knn_chart = LineChart::new(
        format!(
            "k-NN accuracy under Σ^(-p/2) whitening ({})",
            cfg.method.name()
        ),
        "whitening power p",
        "k-NN top-1 %",
    )
    .markers(true);
    let mut entries = Vec::new();
    for (name, tr, te) in [("encoder", &h_tr, &h_te), ("embedding", &z_tr, &z_te)] {
        let pw = tch::no_grad(|| PowerWhitening::fit(&tr.x))?;
        let (mut intra, mut inter, mut knn) = (Vec::new(), Vec::new(), Vec::new());
        for &p in &powers {
            let (xtr, xte) = tch::no_grad(|| (pw.apply(&tr.x, p), pw.apply(&te.x, p)));
            let cos = class_cosine_similarity(&xte, &te.y)?;
            let (a, b) = (cos.intra.unwrap_or(f64::NAN), cos.inter.unwrap_or(f64::NAN));
            let acc = knn_evaluate(
                &Features::new(xtr, tr.y.shallow_clone(), "classifier")?,
                &Features::new(xte, te.y.shallow_clone(), "test")?,
                &knn_cfg,
            )?
            .top1;
            table.row(vec![
                name.into(),
                format!("{p:.2}"),
                format!("{a:.4}"),
                format!("{b:.4}"),
                format!("{:.4}", a - b),
                pct(acc),
            ]);
            intra.push((p, a));
            inter.push((p, b));
            knn.push((p, 100.0 * acc));
        }
        entries.push(json!({
            "features": name,
            "p": powers,
            "intra": intra.iter().map(|x| x.1).collect::<Vec<_>>(),
            "inter": inter.iter().map(|x| x.1).collect::<Vec<_>>(),
            "knn_top1": knn.iter().map(|x| x.1 / 100.0).collect::<Vec<_>>(),
        }));
        cos_chart = cos_chart
            .series(Series::new(format!("{name} intra-class"), intra))
            .series(Series::new(format!("{name} inter-class"), inter));
        knn_chart = knn_chart.series(Series::new(name, knn));
    }
    cos_chart.write(&out.join("similarity"))?;
    knn_chart.write(&out.join("similarity-knn"))?;
    table.write(&out.join("similarity"))?;
    let report = json!({
        "analysis": "similarity",
        "checkpoint": args.checkpoint.run,
        "method": cfg.method.name(),
        "representations": entries,
    });
    write_json(&out.join("similarity.json"), &report)?;
    print!("{}", table.markdown());
    println!("analyze similarity | wrote {}", out.display());
    Ok(report)
}
