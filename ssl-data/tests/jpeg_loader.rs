//! The loader over JPEG folders: decoding only the union of the views'
//! crop boxes gives the very batches that decoding every file whole gives
//! (ImageNet SSL and linear-evaluation recipes, 1 and 2 threads), and it
//! really decodes less; files that cannot be decoded stop the epoch with an
//! error naming them, or, with `skip_unreadable`, are replaced, counted and
//! reported, the batches keeping their size and staying thread-count
//! independent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ssl_data::augment::random_resized_crop::CropBox;
use ssl_data::{
    Batch, DataError, Dataset, ImageFolder, Loader, LoaderConfig, PartSample, Pipeline, Sample,
};

/// 24 JPEGs in two classes, of several sizes, subsamplings, progressive,
/// grey and CMYK, written by Pillow.
const WRITE: &str = r#"
import sys, os
import numpy as np
from PIL import Image
d = sys.argv[1]
rng = np.random.default_rng(9)
kinds = [dict(subsampling=2), dict(subsampling=1), dict(subsampling=0), dict(subsampling=2, progressive=True)]
for i in range(24):
    w, h = [(500, 375), (375, 500), (333, 250), (640, 427)][i % 4]
    small = Image.fromarray(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8))
    im = small.resize((w, h), Image.BICUBIC)
    if i % 11 == 5:
        im = im.convert("L")
    if i % 11 == 7:
        im = im.convert("CMYK")
    folder = os.path.join(d, f"class{i % 2}")
    os.makedirs(folder, exist_ok=True)
    im.save(os.path.join(folder, f"{i:02d}.JPEG"), quality=[75, 90, 95][i % 3], **kinds[(i // 2) % 4])
"#;

fn write_folder() -> tempfile::TempDir {
    let dir = test_support::scratch_dir();
    test_support::run_python(WRITE, &[dir.path().to_str().unwrap()]);
    dir
}

fn same(a: &[Batch], b: &[Batch]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.indices == y.indices
                && x.labels.equal(&y.labels)
                && x.views.iter().zip(&y.views).all(|(u, v)| u.equal(v))
        })
}

fn collect<D: Dataset + 'static>(loader: &Loader<D>, epoch: u64) -> Vec<Batch> {
    loader.epoch(epoch).map(|b| b.unwrap()).collect()
}

/// An image folder that notes how many pixels each `get_part` decoded.
#[derive(Debug)]
struct Counting {
    inner: ImageFolder,
    decoded: AtomicUsize,
    whole: AtomicUsize,
}

impl Dataset for Counting {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn get(&self, index: usize) -> Result<Sample, DataError> {
        self.inner.get(index)
    }
    fn get_part(
        &self,
        index: usize,
        need: &mut dyn FnMut(usize, usize) -> Option<CropBox>,
    ) -> Result<PartSample, DataError> {
        let mut size = (0, 0);
        let part = self.inner.get_part(index, &mut |h, w| {
            size = (h, w);
            need(h, w)
        })?;
        let img = &part.sample.image;
        self.decoded
            .fetch_add(img.width() * img.height(), Ordering::Relaxed);
        self.whole.fetch_add(size.0 * size.1, Ordering::Relaxed);
        Ok(part)
    }
}

#[test]
fn partial_decoding_gives_the_batches_of_whole_decoding() {
    let dir = write_folder();
    let folder = ImageFolder::open(dir.path()).unwrap();
    assert_eq!(folder.len(), 24);
    for pipeline in [Pipeline::ssl_imagenet(), Pipeline::linear_train_imagenet()] {
        let whole = Arc::new(folder.clone().with_partial_decode(false));
        let part = Arc::new(Counting {
            inner: folder.clone(),
            decoded: AtomicUsize::new(0),
            whole: AtomicUsize::new(0),
        });
        let cfg = |threads| LoaderConfig {
            threads,
            ..LoaderConfig::new(6, 2, 11)
        };
        let reference = collect(&Loader::new(whole, pipeline.clone(), cfg(1)).unwrap(), 0);
        for threads in [1, 2] {
            let loader = Loader::new(part.clone(), pipeline.clone(), cfg(threads)).unwrap();
            for epoch in [0, 3] {
                let batches = collect(&loader, epoch);
                if epoch == 0 {
                    assert!(
                        same(&batches, &reference),
                        "partial decoding changed the batches ({threads} threads)"
                    );
                }
                assert_eq!(batches.len(), 4);
            }
        }
        // The two crops' union is on average well under the whole image.
        let (decoded, all) = (
            part.decoded.load(Ordering::Relaxed),
            part.whole.load(Ordering::Relaxed),
        );
        assert!(
            (decoded as f64) < 0.97 * all as f64,
            "decoded {decoded} of {all} pixels"
        );
    }
}

#[test]
fn unreadable_files_stop_the_epoch_or_are_skipped_and_counted() {
    let dir = write_folder();
    // Three broken files: truncated, not an image, empty.
    let good = std::fs::read(dir.path().join("class0/00.JPEG")).unwrap();
    let bad = [
        ("class0/00.JPEG", good[..good.len() / 2].to_vec()),
        ("class1/03.JPEG", b"plain text, not an image".to_vec()),
        ("class1/09.JPEG", Vec::new()),
    ];
    for (name, bytes) in &bad {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let folder = Arc::new(ImageFolder::open(dir.path()).unwrap());
    let bad_index = |name: &str| {
        folder
            .entries()
            .iter()
            .position(|(p, _)| p.ends_with(name))
            .unwrap()
    };
    let bad_indices: Vec<usize> = bad.iter().map(|(n, _)| bad_index(n)).collect();

    // By default the first broken file met stops the epoch, naming it.
    let strict = Loader::new(
        folder.clone(),
        Pipeline::ssl_imagenet(),
        LoaderConfig::new(24, 2, 5),
    )
    .unwrap();
    let err = strict.epoch(0).next().unwrap().unwrap_err();
    assert!(matches!(err, DataError::Decode { .. }), "{err:?}");
    assert!(
        bad.iter().any(|(n, _)| err.to_string().contains(&n[7..])),
        "{err}"
    );
    assert_eq!(strict.skipped().count, 0);

    // Skipping: every batch full, the bad files counted once each per epoch.
    let lenient = |threads| {
        Loader::new(
            folder.clone(),
            Pipeline::ssl_imagenet(),
            LoaderConfig {
                threads,
                skip_unreadable: true,
                ..LoaderConfig::new(8, 2, 5)
            },
        )
        .unwrap()
    };
    let one = lenient(1);
    let mut runs = Vec::new();
    let mut after_first = 0;
    for epoch in 0..2 {
        let batches = collect(&one, epoch);
        assert_eq!(batches.len(), 3);
        for b in &batches {
            assert_eq!(b.views[0].size(), [8, 3, 224, 224]);
            assert!(b.indices.iter().all(|i| !bad_indices.contains(i)));
        }
        runs.push(batches);
        if epoch == 0 {
            after_first = one.skipped().count;
        }
    }
    // Each bad file is met once an epoch, and again when it comes up as the
    // substitute of another.
    let report = one.skipped();
    assert!(
        after_first >= bad.len() && report.count >= 2 * bad.len(),
        "{report:?}"
    );
    assert_eq!(report.samples.keys().copied().collect::<Vec<_>>(), {
        let mut v = bad_indices.clone();
        v.sort();
        v
    });
    for (name, _) in &bad {
        let msg = &report.samples[&bad_index(name)];
        assert!(msg.contains(&name[7..]), "{msg}");
    }
    // The same batches with 2 threads.
    let two = lenient(2);
    assert!(same(&runs[0], &collect(&two, 0)));
    assert_eq!(two.skipped().count, after_first);
}
