//! The published numbers printed beside ours: the paper's Tables 1–3 and
//! its ablation, as `docs/reference.md` §8 transcribes them; nothing is
//! measured or rounded here. A test below holds every value to those
//! tables, cell by cell.

/// Table 1's datasets, in the paper's column order (preset folder names).
pub const TABLE1_DATASETS: [&str; 4] = ["cifar10", "cifar100", "stl10", "tiny-imagenet"];

/// One row of Table 1 (or of the CIFAR ablation): the preset row name under
/// `configs/<dataset>/`, the paper's label, and per dataset of
/// [`TABLE1_DATASETS`] the published (linear top-1, 5-NN top-1) in %.
#[derive(Debug, Clone, Copy)]
pub struct Table1Row {
    pub row: &'static str,
    pub label: &'static str,
    pub cells: [Option<(f64, f64)>; 4],
    /// A Table 1 row (`false`: the CW/CW-GP ablation, CIFAR only).
    pub main: bool,
}

const fn all(c: [(f64, f64); 4]) -> [Option<(f64, f64)>; 4] {
    [Some(c[0]), Some(c[1]), Some(c[2]), Some(c[3])]
}

const fn cifar(c10: (f64, f64), c100: (f64, f64)) -> [Option<(f64, f64)>; 4] {
    [Some(c10), Some(c100), None, None]
}

/// The paper's Table 1 (ResNet-18; top-1 linear / 5-NN accuracy, %;
/// `docs/reference.md` §8.1), then its ablation of the random group
/// partition (CIFAR-10/100 only, §8.2).
pub const TABLE1: &[Table1Row] = &[
    Table1Row {
        row: "simclr",
        label: "SimCLR",
        cells: all([
            (91.80, 88.42),
            (66.83, 56.56),
            (90.51, 85.68),
            (48.84, 32.86),
        ]),
        main: true,
    },
    Table1Row {
        row: "byol",
        label: "BYOL",
        cells: all([
            (91.73, 89.45),
            (66.60, 56.82),
            (91.99, 88.64),
            (51.00, 36.24),
        ]),
        main: true,
    },
    Table1Row {
        row: "simsiam",
        label: "SimSiam (repro.)",
        cells: all([
            (90.51, 86.82),
            (66.04, 55.79),
            (88.91, 84.84),
            (48.29, 34.21),
        ]),
        main: true,
    },
    Table1Row {
        row: "shuffled-dbn",
        label: "Shuffled-DBN (repro.)",
        cells: all([
            (90.45, 88.15),
            (66.07, 56.97),
            (89.20, 84.51),
            (48.60, 32.14),
        ]),
        main: true,
    },
    Table1Row {
        row: "barlow-twins",
        label: "Barlow Twins (repro.)",
        cells: all([
            (88.51, 86.53),
            (65.78, 55.76),
            (88.36, 83.71),
            (47.44, 32.65),
        ]),
        main: true,
    },
    Table1Row {
        row: "vicreg",
        label: "VICReg (repro.)",
        cells: all([
            (90.32, 88.41),
            (66.45, 56.78),
            (90.78, 85.72),
            (48.71, 33.35),
        ]),
        main: true,
    },
    Table1Row {
        row: "zero-cl",
        label: "Zero-ICL (repro.)",
        cells: all([
            (88.12, 86.64),
            (61.91, 53.47),
            (86.35, 82.51),
            (46.25, 32.74),
        ]),
        main: true,
    },
    Table1Row {
        row: "w-mse-2",
        label: "W-MSE 2",
        cells: all([
            (91.55, 89.69),
            (66.10, 56.69),
            (90.36, 87.10),
            (48.20, 34.16),
        ]),
        main: true,
    },
    Table1Row {
        row: "w-mse-4",
        label: "W-MSE 4",
        cells: all([
            (91.99, 89.87),
            (67.64, 56.45),
            (91.75, 88.59),
            (49.22, 35.44),
        ]),
        main: true,
    },
    Table1Row {
        row: "cw-rgp-2",
        label: "CW-RGP 2",
        cells: all([
            (91.92, 89.54),
            (67.51, 57.35),
            (90.76, 87.34),
            (49.23, 34.04),
        ]),
        main: true,
    },
    Table1Row {
        row: "cw-rgp-4",
        label: "CW-RGP 4",
        cells: all([
            (92.47, 90.74),
            (68.26, 58.67),
            (92.04, 88.95),
            (50.24, 35.99),
        ]),
        main: true,
    },
    // The ablation (docs/reference.md §8.2): CIFAR-10 and CIFAR-100 only.
    Table1Row {
        row: "cw-2",
        label: "CW 2",
        cells: cifar((91.66, 88.99), (66.26, 56.36)),
        main: false,
    },
    Table1Row {
        row: "cw-gp-2",
        label: "CW-GP 2",
        cells: cifar((91.61, 88.89), (66.17, 56.53)),
        main: false,
    },
    Table1Row {
        row: "cw-4",
        label: "CW 4",
        cells: cifar((92.10, 90.12), (66.90, 57.12)),
        main: false,
    },
    Table1Row {
        row: "cw-gp-4",
        label: "CW-GP 4",
        cells: cifar((92.08, 90.06), (67.34, 57.28)),
        main: false,
    },
];

/// The rows `--table 1` runs when `--methods` is not given: Table 1 proper.
pub fn table1_default_rows() -> Vec<&'static str> {
    TABLE1.iter().filter(|r| r.main).map(|r| r.row).collect()
}

pub fn table1_row(row: &str) -> Option<&'static Table1Row> {
    TABLE1.iter().find(|r| r.row == row)
}

/// The published (linear, 5-NN) of `row` on `dataset`, if the paper has it.
pub fn table1_cell(row: &str, dataset: &str) -> Option<(f64, f64)> {
    let d = TABLE1_DATASETS.iter().position(|&x| x == dataset)?;
    table1_row(row)?.cells[d]
}

/// A Table 2 entry: ImageNet linear top-1 (%), ResNet-50; `None` = "–".
#[derive(Debug, Clone, Copy)]
pub struct Table2Row {
    pub label: &'static str,
    pub batch: u32,
    pub ep100: Option<f64>,
    pub ep200: Option<f64>,
    /// Our preset rows (configs/imagenet/<row>.toml) for 100 and 200 epochs.
    pub presets: Option<(&'static str, &'static str)>,
}

/// The paper's Table 2 (ImageNet linear top-1, %; batch, 100 ep, 200 ep;
/// `docs/reference.md` §8.3).
pub const TABLE2: &[Table2Row] = &[
    t2("SimCLR", 4096, Some(66.5), Some(68.3)),
    t2("MoCo v2", 256, Some(67.4), Some(69.9)),
    t2("BYOL", 4096, Some(66.5), Some(70.6)),
    t2("SwAV", 4096, Some(66.5), Some(69.1)),
    t2("SimSiam", 256, Some(68.1), Some(70.0)),
    t2("W-MSE 4", 4096, Some(69.4), None),
    t2("Zero-CL", 1024, Some(68.9), None),
    t2("BYOL (repro.)", 512, Some(66.1), Some(69.2)),
    t2("SwAV (repro.)", 512, Some(65.8), Some(67.9)),
    t2("W-MSE 4 (repro.)", 512, Some(66.7), Some(67.9)),
    Table2Row {
        label: "CW-RGP 4",
        batch: 512,
        ep100: Some(69.7),
        ep200: Some(71.0),
        presets: Some(("cw-rgp-4-100ep", "cw-rgp-4-200ep")),
    },
];

const fn t2(label: &'static str, batch: u32, ep100: Option<f64>, ep200: Option<f64>) -> Table2Row {
    Table2Row {
        label,
        batch,
        ep100,
        ep200,
        presets: None,
    }
}

/// The published ImageNet linear top-1 of one of our ImageNet presets.
pub fn table2_published(preset_row: &str) -> Option<(&'static str, f64)> {
    TABLE2.iter().find_map(|r| {
        let (p100, p200) = r.presets?;
        if preset_row == p100 {
            Some((r.label, r.ep100?))
        } else if preset_row == p200 {
            Some((r.label, r.ep200?))
        } else {
            None
        }
    })
}

/// AP50 / AP / AP75 of one benchmark, with the published std where given.
#[derive(Debug, Clone, Copy)]
pub struct Ap {
    pub ap50: f64,
    pub ap: f64,
    pub ap75: f64,
    pub std: Option<(f64, f64, f64)>,
}

/// A Table 3 row: VOC07+12 detection, COCO detection, COCO instance
/// segmentation (200-epoch ImageNet pre-training).
#[derive(Debug, Clone, Copy)]
pub struct Table3Row {
    pub label: &'static str,
    pub voc: Ap,
    pub coco_det: Ap,
    pub coco_seg: Ap,
}

const fn ap(ap50: f64, ap: f64, ap75: f64) -> Ap {
    Ap {
        ap50,
        ap,
        ap75,
        std: None,
    }
}

/// The paper's Table 3 (AP50 / AP / AP75; `docs/reference.md` §8.4).
pub const TABLE3: &[Table3Row] = &[
    t3(
        "Scratch",
        ap(60.2, 33.8, 33.1),
        ap(44.0, 26.4, 27.8),
        ap(46.9, 29.3, 30.8),
    ),
    t3(
        "IN-supervised",
        ap(81.3, 53.5, 58.8),
        ap(58.2, 38.2, 41.2),
        ap(54.7, 33.3, 35.2),
    ),
    t3(
        "SimCLR",
        ap(81.8, 55.5, 61.4),
        ap(57.7, 37.9, 40.9),
        ap(54.6, 33.3, 35.3),
    ),
    t3(
        "MoCo v2",
        ap(82.3, 57.0, 63.3),
        ap(58.8, 39.2, 42.5),
        ap(55.5, 34.3, 36.6),
    ),
    t3(
        "BYOL",
        ap(81.4, 55.3, 61.1),
        ap(57.8, 37.9, 40.9),
        ap(54.3, 33.2, 35.0),
    ),
    t3(
        "SwAV",
        ap(81.5, 55.4, 61.4),
        ap(57.6, 37.6, 40.3),
        ap(54.2, 33.1, 35.1),
    ),
    t3(
        "SimSiam",
        ap(82.0, 56.4, 62.8),
        ap(57.5, 37.9, 40.9),
        ap(54.2, 33.2, 35.2),
    ),
    Table3Row {
        label: "CW-RGP",
        voc: Ap {
            ap50: 82.2,
            ap: 57.2,
            ap75: 63.8,
            std: Some((0.07, 0.10, 0.11)),
        },
        coco_det: Ap {
            ap50: 60.5,
            ap: 40.7,
            ap75: 44.1,
            std: Some((0.28, 0.14, 0.14)),
        },
        coco_seg: Ap {
            ap50: 57.3,
            ap: 35.5,
            ap75: 37.9,
            std: Some((0.16, 0.12, 0.14)),
        },
    },
];

const fn t3(label: &'static str, voc: Ap, coco_det: Ap, coco_seg: Ap) -> Table3Row {
    Table3Row {
        label,
        voc,
        coco_det,
        coco_seg,
    }
}

/// The CW-RGP row of Table 3 (what our run is compared with).
pub fn table3_cw_rgp() -> &'static Table3Row {
    TABLE3
        .iter()
        .find(|r| r.label == "CW-RGP")
        .expect("Table 3 has a CW-RGP row")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table1_row_has_a_preset_for_each_of_its_datasets() {
        let root = crate::project_root();
        for r in TABLE1 {
            for (d, ds) in TABLE1_DATASETS.iter().enumerate() {
                let preset = root
                    .join("configs")
                    .join(ds)
                    .join(format!("{}.toml", r.row));
                assert_eq!(
                    r.cells[d].is_some(),
                    preset.is_file(),
                    "{ds}/{}: published number vs preset file",
                    r.row
                );
            }
        }
        assert_eq!(table1_default_rows().len(), 11);
        assert_eq!(table1_cell("cw-rgp-4", "cifar10"), Some((92.47, 90.74)));
        assert_eq!(table1_cell("cw-4", "stl10"), None);
    }

    #[test]
    fn table2_presets_exist_and_map_to_the_published_cw_rgp_numbers() {
        let root = crate::project_root();
        assert_eq!(table2_published("cw-rgp-4-100ep"), Some(("CW-RGP 4", 69.7)));
        assert_eq!(table2_published("cw-rgp-4-200ep"), Some(("CW-RGP 4", 71.0)));
        for p in ["cw-rgp-4-100ep", "cw-rgp-4-200ep"] {
            assert!(root
                .join("configs/imagenet")
                .join(format!("{p}.toml"))
                .is_file());
        }
        assert_eq!(table3_cw_rgp().coco_det.ap, 40.7);
    }

    /// The rows of the table under the heading `### {number} ` of
    /// `docs/reference.md`: (first cell, the other cells), header and
    /// separator left out.
    fn reference_table(number: &str) -> Vec<(String, Vec<String>)> {
        let path = crate::project_root().join("docs/reference.md");
        let doc =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let heading = format!("### {number} ");
        let body: Vec<&str> = doc
            .lines()
            .skip_while(|l| !l.starts_with(&heading))
            .skip(1)
            .take_while(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with('|'))
            .collect();
        assert!(
            body.len() > 2,
            "docs/reference.md has no table under {heading:?}"
        );
        body[2..]
            .iter()
            .map(|l| {
                let cells: Vec<String> = l
                    .trim()
                    .trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().to_string())
                    .collect();
                (cells[0].clone(), cells[1..].to_vec())
            })
            .collect()
    }

    fn row<'a>(table: &'a [(String, Vec<String>)], label: &str, section: &str) -> &'a [String] {
        &table
            .iter()
            .find(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("docs/reference.md §{section} has no row {label:?}"))
            .1
    }

    fn number(cell: &str) -> f64 {
        cell.parse()
            .unwrap_or_else(|_| panic!("{cell:?} is not a number"))
    }

    /// A cell that may be "–" (not reported).
    fn maybe(cell: &str) -> Option<f64> {
        (cell != "–").then(|| number(cell))
    }

    /// "mean" or "mean ± std".
    fn with_std(cell: &str) -> (f64, Option<f64>) {
        match cell.split_once('±') {
            Some((m, s)) => (number(m.trim()), Some(number(s.trim()))),
            None => (number(cell), None),
        }
    }

    #[test]
    fn table1_and_the_ablation_equal_docs_reference() {
        let main = reference_table("8.1");
        let ablation = reference_table("8.2");
        let main_rows: Vec<_> = TABLE1.iter().filter(|r| r.main).collect();
        assert_eq!(main.len(), main_rows.len(), "rows of §8.1");
        for r in main_rows {
            let cells = row(&main, r.label, "8.1");
            assert_eq!(cells.len(), 8, "{}", r.label);
            for (d, c) in r.cells.iter().enumerate() {
                let (lin, knn) = c.expect("Table 1 rows have every dataset");
                assert_eq!(
                    (lin, knn),
                    (number(&cells[2 * d]), number(&cells[2 * d + 1])),
                    "{} on {}: paper.rs vs docs/reference.md §8.1",
                    r.label,
                    TABLE1_DATASETS[d]
                );
            }
        }
        // The ablation: its own rows, and the CW-RGP rows it shares with Table 1.
        let mut ablation_rows = 0;
        for r in TABLE1
            .iter()
            .filter(|r| !r.main || r.row.starts_with("cw-rgp"))
        {
            ablation_rows += 1;
            let cells = row(&ablation, r.label, "8.2");
            assert_eq!(cells.len(), 4, "{}", r.label);
            for (d, c) in r.cells.iter().enumerate() {
                match c {
                    Some((lin, knn)) if d < 2 => assert_eq!(
                        (*lin, *knn),
                        (number(&cells[2 * d]), number(&cells[2 * d + 1])),
                        "{} on {}: paper.rs vs docs/reference.md §8.2",
                        r.label,
                        TABLE1_DATASETS[d]
                    ),
                    Some(_) => {}
                    None => assert!(d >= 2, "{}: the ablation has CIFAR-10 and -100", r.label),
                }
            }
        }
        assert_eq!(ablation.len(), ablation_rows, "rows of §8.2");
    }

    #[test]
    fn table2_equals_docs_reference() {
        let table = reference_table("8.3");
        assert_eq!(table.len(), TABLE2.len(), "rows of §8.3");
        for r in TABLE2 {
            let cells = row(&table, r.label, "8.3");
            assert_eq!(cells.len(), 3, "{}", r.label);
            assert_eq!(
                (Some(f64::from(r.batch)), r.ep100, r.ep200),
                (maybe(&cells[0]), maybe(&cells[1]), maybe(&cells[2])),
                "{}: paper.rs vs docs/reference.md §8.3",
                r.label
            );
        }
    }

    #[test]
    fn table3_equals_docs_reference() {
        let table = reference_table("8.4");
        assert_eq!(table.len(), TABLE3.len(), "rows of §8.4");
        for r in TABLE3 {
            let cells = row(&table, r.label, "8.4");
            assert_eq!(cells.len(), 9, "{}", r.label);
            for (k, ap) in [r.voc, r.coco_det, r.coco_seg].iter().enumerate() {
                let [(ap50, s50), (a, s), (ap75, s75)] =
                    [0, 1, 2].map(|i| with_std(&cells[3 * k + i]));
                assert_eq!(
                    (ap.ap50, ap.ap, ap.ap75),
                    (ap50, a, ap75),
                    "{} benchmark {k}: paper.rs vs docs/reference.md §8.4",
                    r.label
                );
                let std = match (s50, s, s75) {
                    (Some(x), Some(y), Some(z)) => Some((x, y, z)),
                    (None, None, None) => None,
                    other => panic!("{} benchmark {k}: partial std {other:?}", r.label),
                };
                assert_eq!(ap.std, std, "{} benchmark {k}: std", r.label);
            }
        }
    }
}
