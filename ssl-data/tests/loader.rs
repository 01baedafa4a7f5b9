//! The loader: shapes and labels, each epoch a permutation (drop-last), the
//! documented per-sample RNG derivation, the prefetching iterator equal to
//! direct batch building, and identical batches for 1, 2 and 3 threads.

use std::sync::Arc;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ssl_data::loader::sample_rng;
use ssl_data::{
    Batch, Dataset, DatasetKind, InMemoryDataset, Loader, LoaderConfig, Pipeline, Sample,
};

fn dataset(n: usize) -> Arc<InMemoryDataset> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let samples = (0..n)
        .map(|i| Sample {
            image: ssl_data::synthetic::render(i % 10, 32, &mut rng),
            label: (i % 3 != 2).then_some((i % 10) as u32),
        })
        .collect();
    Arc::new(InMemoryDataset::new(samples, 10).unwrap())
}

fn config(threads: usize) -> LoaderConfig {
    LoaderConfig {
        threads,
        ..LoaderConfig::new(8, 2, 42)
    }
}

fn collect(loader: &Loader<InMemoryDataset>, epoch: u64) -> Vec<Batch> {
    loader.epoch(epoch).map(|b| b.unwrap()).collect()
}

fn same(a: &[Batch], b: &[Batch]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.indices == y.indices
                && x.labels.equal(&y.labels)
                && x.views.iter().zip(&y.views).all(|(u, v)| u.equal(v))
        })
}

#[test]
fn batches_have_the_documented_shapes_labels_and_order() {
    let ds = dataset(21);
    let loader = Loader::new(
        ds.clone(),
        Pipeline::ssl_small(DatasetKind::Cifar10),
        config(2),
    )
    .unwrap();
    assert_eq!(loader.batches_per_epoch(), 2); // 21 / 8, drop-last
    let batches = collect(&loader, 0);
    assert_eq!(batches.len(), 2);
    let mut seen = Vec::new();
    for b in &batches {
        assert_eq!(b.views.len(), 2);
        for v in &b.views {
            assert_eq!(v.size(), [8, 3, 32, 32]);
            assert_eq!(v.kind(), tch::Kind::Float);
        }
        let labels = Vec::<i64>::try_from(&b.labels).unwrap();
        for (&i, &l) in b.indices.iter().zip(&labels) {
            assert_eq!(l, ds.get(i).unwrap().label.map_or(-1, i64::from));
        }
        // Two views of one image differ (independent augmentations).
        assert!(!b.views[0].equal(&b.views[1]));
        seen.extend_from_slice(&b.indices);
    }
    // The visited indices are those of the epoch order, without repetition.
    assert_eq!(seen, loader.epoch_order(0)[..16]);
    let mut order = loader.epoch_order(0);
    order.sort();
    assert_eq!(order, (0..21).collect::<Vec<_>>());
    assert_ne!(loader.epoch_order(0), loader.epoch_order(1));
}

#[test]
fn each_view_is_the_pipeline_applied_with_the_sample_rng() {
    let ds = dataset(9);
    let pipeline = Pipeline::ssl_small(DatasetKind::Cifar10);
    let loader = Loader::new(ds.clone(), pipeline.clone(), config(2)).unwrap();
    let b = loader.batch(3, 0).unwrap();
    let i = b.indices[5];
    let mut rng = sample_rng(42, 3, i);
    let img = ds.get(i).unwrap().image;
    for v in 0..2 {
        let mut expected = vec![0f32; pipeline.output_len()];
        pipeline.apply_into(&img, &mut rng, &mut expected).unwrap();
        let got = Vec::<f32>::try_from(&b.views[v].get(5).flatten(0, -1)).unwrap();
        assert_eq!(got, expected, "view {v}");
    }
}

#[test]
fn batches_are_identical_for_any_thread_count_and_prefetch() {
    let ds = dataset(40);
    let pipeline = Pipeline::ssl_small(DatasetKind::Cifar10);
    let runs: Vec<Vec<Batch>> = [(1, 1), (2, 2), (3, 4)]
        .iter()
        .map(|&(threads, prefetch)| {
            let cfg = LoaderConfig {
                prefetch,
                ..config(threads)
            };
            collect(&Loader::new(ds.clone(), pipeline.clone(), cfg).unwrap(), 5)
        })
        .collect();
    assert_eq!(runs[0].len(), 5);
    assert!(same(&runs[0], &runs[1]), "1 vs 2 threads");
    assert!(same(&runs[0], &runs[2]), "1 vs 3 threads");
    // The synchronous path builds the same batches as the prefetching one.
    let loader = Loader::new(ds.clone(), pipeline.clone(), config(2)).unwrap();
    let direct: Vec<Batch> = (0..5).map(|b| loader.batch(5, b).unwrap()).collect();
    assert!(same(&runs[0], &direct));
    // Another epoch or seed gives other batches.
    assert!(!same(&runs[0], &collect(&loader, 6)));
    let other = Loader::new(
        ds,
        pipeline,
        LoaderConfig {
            seed: 43,
            ..config(2)
        },
    )
    .unwrap();
    assert!(!same(&runs[0], &collect(&other, 5)));
}

#[test]
fn evaluation_loader_keeps_order_and_the_last_partial_batch() {
    let ds = dataset(10);
    let cfg = LoaderConfig {
        shuffle: false,
        drop_last: false,
        views: 1,
        ..config(2)
    };
    let loader = Loader::new(ds.clone(), Pipeline::eval(DatasetKind::Cifar10), cfg).unwrap();
    let batches = collect(&loader, 0);
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[1].views[0].size(), [2, 3, 32, 32]);
    assert_eq!(batches[0].indices, (0..8).collect::<Vec<_>>());
    // Eval = to_tensor + normalise only: pixel (0,0) red of image 0 is (v/255 - mean)/std.
    let v = ds.get(0).unwrap().image.pixel(0, 0)[0] as f32;
    let got = batches[0].views[0].double_value(&[0, 0, 0, 0]) as f32;
    assert_eq!(got, (v / 255.0 - 0.4914) / 0.2023);
}

#[test]
fn a_failing_sample_ends_the_epoch_with_its_error() {
    let dir = test_support::scratch_dir();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    std::fs::write(dir.path().join("a/broken.png"), b"not a png").unwrap();
    let ds = Arc::new(ssl_data::ImageFolder::open(dir.path()).unwrap());
    let cfg = LoaderConfig {
        batch_size: 1,
        ..config(1)
    };
    let loader = Loader::new(ds, Pipeline::ssl_small(DatasetKind::Cifar10), cfg).unwrap();
    let results: Vec<_> = loader.epoch(0).collect();
    assert_eq!(results.len(), 1);
    let err = results.into_iter().next().unwrap().unwrap_err();
    assert!(err.to_string().contains("broken.png"), "{err}");
    // Zero threads or views are refused.
    let ds = dataset(2);
    assert!(Loader::new(
        ds,
        Pipeline::eval(DatasetKind::Cifar10),
        LoaderConfig {
            views: 0,
            ..config(1)
        }
    )
    .is_err());
}

#[test]
fn shards_split_every_global_batch_between_ranks() {
    // 2 ranks with batches of 4 see, step by step, exactly the samples (and
    // the views) of one loader with batches of 8.
    let ds = dataset(37);
    let pipeline = || Pipeline::ssl_small(DatasetKind::Cifar10);
    let whole = Loader::new(ds.clone(), pipeline(), config(1)).unwrap();
    let part = |rank| {
        let cfg = LoaderConfig {
            batch_size: 4,
            shard: ssl_data::Shard { rank, count: 2 },
            ..config(1)
        };
        Loader::new(ds.clone(), pipeline(), cfg).unwrap()
    };
    let (r0, r1) = (part(0), part(1));
    assert_eq!(r0.batches_per_epoch(), whole.batches_per_epoch());
    let (a, b, w) = (collect(&r0, 3), collect(&r1, 3), collect(&whole, 3));
    for ((x, y), g) in a.iter().zip(&b).zip(&w) {
        assert!(x.indices.iter().all(|i| !y.indices.contains(i)), "disjoint");
        let mut both: Vec<usize> = x.indices.iter().chain(&y.indices).copied().collect();
        both.sort_unstable();
        let mut global = g.indices.clone();
        global.sort_unstable();
        assert_eq!(both, global);
        // Same sample, same views, whichever rank draws it.
        let row = g.indices.iter().position(|i| *i == x.indices[0]).unwrap();
        assert!(x.views[1].get(0).equal(&g.views[1].get(row as i64)));
    }
    // A shard that does not exist is refused.
    let bad = LoaderConfig {
        shard: ssl_data::Shard { rank: 2, count: 2 },
        ..config(1)
    };
    assert!(Loader::new(ds, pipeline(), bad).is_err());
}

/// The distributed sampler's contract (PyTorch's `DistributedSampler`):
/// per epoch every rank's part has the same length, the parts are disjoint
/// with `drop_last` and cover the epoch without it (padding repeats at
/// most `count - 1` head indices), and rank `r` holds every `count`-th
/// index from `r`.
#[test]
fn shard_parts_are_equal_disjoint_and_cover_the_epoch() {
    for (len, count) in [(10, 2), (10, 3), (7, 4), (100, 8), (3, 5)] {
        let order: Vec<usize> = (0..len).rev().collect();
        for drop_last in [false, true] {
            let parts: Vec<Vec<usize>> = (0..count)
                .map(|rank| ssl_data::Shard { rank, count }.apply(order.clone(), drop_last))
                .collect();
            let per = parts[0].len();
            assert!(parts.iter().all(|p| p.len() == per), "equal lengths");
            for (rank, p) in parts.iter().enumerate() {
                for (i, &x) in p.iter().enumerate() {
                    assert_eq!(x, order[(i * count + rank) % len], "interleaved");
                }
            }
            let mut all = parts.concat();
            all.sort_unstable();
            let mut distinct = all.clone();
            distinct.dedup();
            if drop_last {
                assert_eq!(per, len / count);
                assert_eq!(distinct.len(), all.len(), "disjoint");
            } else {
                assert_eq!(per, len.div_ceil(count));
                assert_eq!(distinct, (0..len).collect::<Vec<_>>(), "covering");
                assert!(all.len() - len < count, "padding only");
            }
        }
    }
    assert_eq!(
        ssl_data::Shard::WHOLE.apply(vec![3, 1, 2], true),
        vec![3, 1, 2]
    );
}

/// Counts the samples the loader asks for.
#[derive(Debug)]
struct CountingDataset {
    inner: Arc<InMemoryDataset>,
    fetched: std::sync::atomic::AtomicUsize,
}

impl Dataset for CountingDataset {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn num_classes(&self) -> usize {
        self.inner.num_classes()
    }
    fn get(&self, index: usize) -> Result<Sample, ssl_data::DataError> {
        self.fetched
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get(index)
    }
}

/// Memory stays bounded: while the consumer holds a batch, the loader has
/// built exactly `prefetch` more and waits; each batch taken lets one more
/// be built. (`fetched / B` batches exist at most at any time.)
#[test]
fn the_loader_builds_at_most_prefetch_batches_ahead() {
    let wait_for = |ds: &CountingDataset, n: usize| {
        let start = std::time::Instant::now();
        while ds.fetched.load(std::sync::atomic::Ordering::SeqCst) < n
            && start.elapsed() < std::time::Duration::from_secs(20)
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Then give it time to overshoot, if it would.
        std::thread::sleep(std::time::Duration::from_millis(300));
        ds.fetched.load(std::sync::atomic::Ordering::SeqCst)
    };
    let b = 4;
    for prefetch in [1, 2, 4] {
        let ds = Arc::new(CountingDataset {
            inner: dataset(64),
            fetched: Default::default(),
        });
        let cfg = LoaderConfig {
            prefetch,
            batch_size: b,
            ..config(2)
        };
        let loader =
            Loader::new(ds.clone(), Pipeline::ssl_small(DatasetKind::Cifar10), cfg).unwrap();
        let mut epoch = loader.epoch(0);
        let held = epoch.next().unwrap().unwrap();
        assert_eq!(
            wait_for(&ds, (prefetch + 1) * b),
            (prefetch + 1) * b,
            "prefetch {prefetch}"
        );
        let second = epoch.next().unwrap().unwrap();
        assert_eq!(
            wait_for(&ds, (prefetch + 2) * b),
            (prefetch + 2) * b,
            "prefetch {prefetch}"
        );
        drop((held, second));
    }
}
