//! The tables: Markdown for people, CSV for scripts, an SVG plot for Table 1
//! (grouped bars, ours beside the paper's). Accuracies are in %, Δ = ours −
//! paper.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::paper;
use super::runs::{Outcome, LINEAR_EVAL_JSON};

fn pct(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

fn diff(ours: Option<f64>, paper: Option<f64>) -> Option<f64> {
    Some(ours? - paper?)
}

fn signed(x: Option<f64>) -> String {
    x.map(|v| {
        let r = (v * 100.0).round() / 100.0;
        format!("{:+.2}", if r == 0.0 { 0.0 } else { r })
    })
    .unwrap_or_else(|| "–".into())
}

fn csv_num(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.4}")).unwrap_or_default()
}

fn status(o: &Outcome) -> &'static str {
    match (&o.eval, &o.failure) {
        (Some(_), None) => "finished",
        (_, Some(_)) => "failed",
        (None, None) => "not finished",
    }
}

fn dataset_title(d: &str) -> &'static str {
    match d {
        "cifar10" => "CIFAR-10",
        "cifar100" => "CIFAR-100",
        "stl10" => "STL-10",
        "tiny-imagenet" => "Tiny-ImageNet",
        "imagenet" => "ImageNet",
        _ => "?",
    }
}

/// One cell pair of Table 1: the paper's and our (linear, 5-NN), in %.
#[derive(Debug, Clone)]
pub struct Table1Line<'a> {
    pub outcome: &'a Outcome,
    pub label: &'static str,
    pub paper: Option<(f64, f64)>,
    pub linear: Option<f64>,
    pub knn: Option<f64>,
    pub linear_top5: Option<f64>,
}

pub fn table1_lines(outcomes: &[Outcome]) -> Vec<Table1Line<'_>> {
    outcomes
        .iter()
        .map(|o| {
            let row = paper::table1_row(&o.job.row);
            Table1Line {
                outcome: o,
                label: row.map_or("?", |r| r.label),
                paper: paper::table1_cell(&o.job.row, &o.job.dataset),
                linear: o.eval.and_then(|e| e.linear_top1).map(|x| 100.0 * x),
                knn: o.eval.map(|e| 100.0 * e.knn_top1),
                linear_top5: o.eval.and_then(|e| e.linear_top5).map(|x| 100.0 * x),
            }
        })
        .collect()
}

/// Writes `table1.md`, `table1.csv` and `table1.svg` under `out`.
pub fn write_table1(out: &Path, outcomes: &[Outcome]) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let lines = table1_lines(outcomes);
    let smoke = outcomes.iter().any(|o| o.job.epochs == 1)
        && outcomes
            .iter()
            .any(|o| o.job.overrides.iter().any(|s| s == "model.width=0.125"));
    let mut md = String::from(
        "# Table 1: ResNet-18, top-1 accuracy (%) of the linear classifier and of 5-NN\n\n",
    );
    md.push_str(
        "Paper: the published numbers (the paper's Table 1, docs/reference.md §8.1). \
         Ours: the final evaluation (`kind: eval` at the last epoch) of each run's \
         `metrics.jsonl`: `linear_top1` and `knn_top1`. Δ = ours − paper.\n\n",
    );
    if smoke {
        md.push_str(
            "**Smoke run**: synthetic data in each dataset's format, a ResNet-18 at 1/8 \
             width, one epoch; our numbers say the pipeline works, not what the method \
             reaches.\n\n",
        );
    }
    let mut datasets: Vec<&str> = Vec::new();
    for o in outcomes {
        if !datasets.contains(&o.job.dataset.as_str()) {
            datasets.push(&o.job.dataset);
        }
    }
    for d in &datasets {
        let _ = writeln!(md, "## {}\n", dataset_title(d));
        md.push_str(
            "| method | linear paper | linear ours | Δ | 5-NN paper | 5-NN ours | Δ | epochs | status | run |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
        );
        for l in lines.iter().filter(|l| l.outcome.job.dataset == *d) {
            let (pl, pk) = (l.paper.map(|p| p.0), l.paper.map(|p| p.1));
            let run = l
                .outcome
                .job
                .run_dir
                .strip_prefix(out)
                .unwrap_or(&l.outcome.job.run_dir)
                .display()
                .to_string();
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                l.label,
                pct(pl),
                pct(l.linear),
                signed(diff(l.linear, pl)),
                pct(pk),
                pct(l.knn),
                signed(diff(l.knn, pk)),
                l.outcome.job.epochs,
                status(l.outcome),
                run
            );
        }
        md.push('\n');
    }
    let mut csv = String::from("dataset,row,method,metric,paper,ours,diff,epochs,status,run_dir\n");
    for l in &lines {
        let j = &l.outcome.job;
        for (metric, paper, ours) in [
            ("linear_top1", l.paper.map(|p| p.0), l.linear),
            ("knn_top1", l.paper.map(|p| p.1), l.knn),
            ("linear_top5", None, l.linear_top5),
        ] {
            let _ = writeln!(
                csv,
                "{},{},{},{metric},{},{},{},{},{},{}",
                j.dataset,
                j.row,
                l.label,
                csv_num(paper),
                csv_num(ours),
                csv_num(diff(ours, paper)),
                j.epochs,
                status(l.outcome),
                j.run_dir.display()
            );
        }
    }
    let md_path = out.join("table1.md");
    let csv_path = out.join("table1.csv");
    let svg_path = out.join("table1.svg");
    crate::download::atomic_write(&md_path, md.as_bytes())?;
    crate::download::atomic_write(&csv_path, csv.as_bytes())?;
    plot_table1(&svg_path, &datasets, &lines)?;
    Ok(vec![md_path, csv_path, svg_path])
}

/// Grouped bars: one panel per dataset and metric, for each method the
/// paper's bar (grey) beside ours (blue), on a 0–100 % axis. Only plotters'
/// SVG primitives (rectangles, lines, text) are used, so no font is needed.
fn plot_table1(path: &Path, datasets: &[&str], lines: &[Table1Line<'_>]) -> Result<()> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    const PANEL_W: u32 = 720;
    const PANEL_H: u32 = 360;
    let rows = datasets.len().max(1) as u32;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (2 * PANEL_W, rows * PANEL_H + 40))
            .into_drawing_area();
        root.fill(&WHITE)?;
        let paper_colour = RGBColor(160, 160, 160);
        let ours_colour = RGBColor(31, 119, 180);
        let font = |size: i32| ("sans-serif", size).into_font().color(&BLACK);
        root.draw(&Text::new(
            "Table 1: ours vs the paper (top-1 %)",
            (20, 12),
            font(22),
        ))?;
        for (i, (name, colour)) in [("paper", paper_colour), ("ours", ours_colour)]
            .into_iter()
            .enumerate()
        {
            let x = 2 * PANEL_W as i32 - 220 + 100 * i as i32;
            root.draw(&Rectangle::new([(x, 12), (x + 14, 26)], colour.filled()))?;
            root.draw(&Text::new(name, (x + 20, 12), font(17)))?;
        }
        let body = root.margin(40, 0, 0, 0);
        let panels = body.split_evenly((rows as usize, 2));
        for (p, panel) in panels.iter().enumerate() {
            let dataset = datasets.get(p / 2).copied().unwrap_or("");
            let linear = p % 2 == 0;
            let entries: Vec<&Table1Line<'_>> = lines
                .iter()
                .filter(|l| l.outcome.job.dataset == dataset)
                .collect();
            let (left, right, top, bottom) =
                (48i32, PANEL_W as i32 - 12, 28i32, PANEL_H as i32 - 118);
            let y_of =
                |v: f64| bottom - ((v.clamp(0.0, 100.0) / 100.0) * (bottom - top) as f64) as i32;
            panel.draw(&Text::new(
                format!(
                    "{} — {}",
                    dataset_title(dataset),
                    if linear { "linear top-1" } else { "5-NN top-1" }
                ),
                (left, 4),
                font(18),
            ))?;
            for t in (0..=100).step_by(20) {
                let y = y_of(t as f64);
                panel.draw(&PathElement::new(
                    vec![(left, y), (right, y)],
                    RGBColor(225, 225, 225),
                ))?;
                panel.draw(&Text::new(
                    format!("{t}"),
                    (left - 6, y),
                    font(13).pos(Pos::new(HPos::Right, VPos::Center)),
                ))?;
            }
            panel.draw(&PathElement::new(vec![(left, top), (left, bottom)], BLACK))?;
            let n = entries.len().max(1) as i32;
            let group = (right - left) / n;
            let bar = (group * 2 / 5).max(2);
            for (k, l) in entries.iter().enumerate() {
                let x0 = left + k as i32 * group + group / 10;
                let paper = l.paper.map(|p| if linear { p.0 } else { p.1 });
                let ours = if linear { l.linear } else { l.knn };
                for (j, (v, colour)) in [(paper, paper_colour), (ours, ours_colour)]
                    .into_iter()
                    .enumerate()
                {
                    if let Some(v) = v {
                        let x = x0 + j as i32 * bar;
                        panel.draw(&Rectangle::new(
                            [(x, y_of(v)), (x + bar - 1, bottom)],
                            colour.filled(),
                        ))?;
                    }
                }
                panel.draw(&Text::new(
                    l.label.to_string(),
                    (x0 + bar, bottom + 6),
                    font(13)
                        .transform(FontTransform::Rotate90)
                        .pos(Pos::new(HPos::Left, VPos::Center)),
                ))?;
            }
        }
        root.present()?;
    }
    crate::download::atomic_write(path, svg.as_bytes())?;
    Ok(())
}

/// The ImageNet linear evaluation `ssl eval --protocol imagenet-linear`
/// wrote (ssl-eval's `EvalResults` JSON): `linear.top1` and `linear.top5`
/// in [0, 1], when its protocol is the ImageNet one (`imagenet_sgd` or
/// `imagenet_lars`).
pub fn read_linear_eval(path: &Path) -> Option<(f64, f64)> {
    let text = fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let linear = v.get("linear")?;
    let protocol = linear.get("protocol")?.as_str()?;
    if !protocol.starts_with("imagenet") {
        return None;
    }
    Some((linear.get("top1")?.as_f64()?, linear.get("top5")?.as_f64()?))
}

/// Writes `table2.md` and `table2.csv`: our ImageNet rows beside the
/// published CW-RGP 4 numbers, then the paper's other rows for context.
pub fn write_table2(out: &Path, outcomes: &[Outcome]) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(out)?;
    let mut md =
        String::from("# Table 2: ImageNet, ResNet-50, linear classification top-1 (%)\n\n");
    md.push_str(
        "Paper: the paper's Table 2 (docs/reference.md §8.3; top-1 only). Ours: \
         `linear_eval.json` of `ssl eval --protocol imagenet-linear` where it ran (the \
         ImageNet linear protocol of docs/reference.md §7.4); otherwise the last \
         `kind: eval` record of `metrics.jsonl` (the evaluation `ssl train` runs: k-NN and the feature probe), \
         marked as such. Δ = ours − paper.\n\n\
         | row | epochs | paper top-1 | ours top-1 | Δ | ours top-5 | source | status |\n\
         |---|---:|---:|---:|---:|---:|---|---|\n",
    );
    let mut csv = String::from(
        "row,method,epochs,paper_top1,ours_top1,diff,ours_top5,source,status,run_dir\n",
    );
    for o in outcomes {
        let published = paper::table2_published(&o.job.row);
        let (ours1, ours5, source) = match read_linear_eval(&o.job.run_dir.join(LINEAR_EVAL_JSON)) {
            Some((a, b)) => (Some(100.0 * a), Some(100.0 * b), "imagenet-linear"),
            None => match o.eval {
                Some(e) if e.linear_top1.is_some() => (
                    e.linear_top1.map(|x| 100.0 * x),
                    e.linear_top5.map(|x| 100.0 * x),
                    "ssl-train feature probe",
                ),
                Some(e) => (Some(100.0 * e.knn_top1), None, "ssl-train 5-NN"),
                None => (None, None, "–"),
            },
        };
        let p = published.map(|x| x.1);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {source} | {} |",
            o.job.row,
            o.job.epochs,
            pct(p),
            pct(ours1),
            signed(diff(ours1, p)),
            pct(ours5),
            status(o)
        );
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{},{},{source},{},{}",
            o.job.row,
            published.map_or("", |x| x.0),
            o.job.epochs,
            csv_num(p),
            csv_num(ours1),
            csv_num(diff(ours1, p)),
            csv_num(ours5),
            status(o),
            o.job.run_dir.display()
        );
    }
    md.push_str("\nThe paper's Table 2 (batch, 100 ep, 200 ep):\n\n| method | batch | 100 ep | 200 ep |\n|---|---:|---:|---:|\n");
    for r in paper::TABLE2 {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            r.label,
            r.batch,
            r.ep100.map_or("–".into(), |v| format!("{v:.1}")),
            r.ep200.map_or("–".into(), |v| format!("{v:.1}"))
        );
    }
    let md_path = out.join("table2.md");
    let csv_path = out.join("table2.csv");
    crate::download::atomic_write(&md_path, md.as_bytes())?;
    crate::download::atomic_write(&csv_path, csv.as_bytes())?;
    Ok(vec![md_path, csv_path])
}

#[cfg(test)]
mod tests {
    use super::super::runs::{eval_records, Job, Preset};
    use super::*;

    fn outcome(out: &Path, row: &str, jsonl: &str, linear: Option<&str>) -> Outcome {
        let root = crate::project_root();
        let preset = Preset::read(
            &root.join(format!("configs/imagenet/{row}.toml")),
            "imagenet",
        )
        .unwrap();
        let job = Job::new(
            &preset,
            "imagenet",
            row,
            out,
            Path::new(""),
            1.0,
            false,
            None,
        );
        fs::create_dir_all(&job.run_dir).unwrap();
        if let Some(l) = linear {
            fs::write(job.run_dir.join(LINEAR_EVAL_JSON), l).unwrap();
        }
        Outcome {
            job,
            eval: eval_records(jsonl).last().copied(),
            failure: None,
            seconds: 0.0,
        }
    }

    #[test]
    fn table2_prefers_the_imagenet_linear_protocol_and_says_where_numbers_come_from() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path();
        let eval = r#"{"kind":"eval","epoch":100,"step":9,"knn_top1":0.5,"linear_top1":null,"linear_top5":null,"normalised_stable_rank":0.4}"#;
        let linear = r#"{"representation":"encoder","knn":{"k":5,"metric":"euclidean","top1":0.1,"top5":0.2,"n_train":1,"n_test":1},
            "linear":{"protocol":"imagenet_sgd","epochs":100,"top1":0.6912,"top5":0.89,"train_loss":1.0,"n_train":1,"n_test":1},"diagnostics":null}"#;
        let outcomes = [
            outcome(out, "cw-rgp-4-100ep", eval, Some(linear)),
            outcome(out, "cw-rgp-4-200ep", eval, None),
        ];
        assert_eq!(
            read_linear_eval(&outcomes[0].job.run_dir.join(LINEAR_EVAL_JSON)),
            Some((0.6912, 0.89))
        );
        write_table2(out, &outcomes).unwrap();
        let md = fs::read_to_string(out.join("table2.md")).unwrap();
        assert!(
            md.contains("| cw-rgp-4-100ep | 100 | 69.70 | 69.12 | -0.58 | 89.00 | imagenet-linear | finished |"),
            "{md}"
        );
        assert!(
            md.contains(
                "| cw-rgp-4-200ep | 200 | 71.00 | 50.00 | -21.00 | – | ssl-train 5-NN | finished |"
            ),
            "{md}"
        );
        let csv = fs::read_to_string(out.join("table2.csv")).unwrap();
        assert!(csv.contains(
            "cw-rgp-4-100ep,CW-RGP 4,100,69.7000,69.1200,-0.5800,89.0000,imagenet-linear"
        ));
    }
}
