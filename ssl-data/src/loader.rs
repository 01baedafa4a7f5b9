//! The parallel, deterministic multi-view loader.
//!
//! Epoch `e` visits the dataset in the order of a Fisher–Yates shuffle
//! seeded by `(seed, e)`; sample `i` of epoch `e` draws all its views from
//! a ChaCha8 stream seeded by `(seed, e, i)`. No random state is shared
//! between samples, so the batches are the same whatever the number of
//! threads. Samples of a batch are decoded and augmented in parallel on a
//! rayon pool of `threads` threads; a background thread builds up to
//! `prefetch` batches ahead of the consumer.
//!
//! All random choices of a sample's views are drawn before its image is
//! decoded ([`Pipeline::plan`]: they depend on the image's size only), so a
//! reader that can decode part of an image ([`Dataset::get_part`], JPEG
//! files) decodes only the union of the views' crop boxes.
//!
//! **Memory.** A batch is `views × B × 3 H W` floats (plus labels). While
//! the consumer holds one batch, the background thread has at most
//! `prefetch` more: `prefetch − 1` waiting in the channel and one it cannot
//! hand over yet. So at most `prefetch + 1` batches exist at a time, plus,
//! per worker thread, the one image it is decoding and its views.
//!
//! **Unreadable files.** By default a sample that cannot be decoded stops
//! the epoch with its error (naming the file). With
//! [`LoaderConfig::skip_unreadable`], it is replaced by the next readable
//! sample of the epoch's order (augmented with the failed sample's random
//! stream, so the batch keeps its size and stays the same for any thread
//! count), and counted: [`Loader::skipped`].

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

use crate::augment::pipeline::Pipeline;
use crate::dataset::Dataset;
use crate::error::DataError;
use crate::seed::derive_seed;

/// Stream tag of the epoch permutation (sample streams use the sample index).
const ORDER_STREAM: u64 = u64::MAX;

/// How batches are drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch_size: usize,
    /// Augmented views per sample (2 for most methods, 4 for W-MSE 4 / CW-RGP 4).
    pub views: usize,
    /// Seed of the orders and augmentations.
    pub seed: u64,
    /// Worker threads for decoding and augmentation.
    pub threads: usize,
    /// Batches built ahead of the consumer (at least 1).
    pub prefetch: usize,
    /// Shuffle each epoch (SSL, classifier training) or keep the dataset order (evaluation).
    pub shuffle: bool,
    /// Drop the last incomplete batch.
    pub drop_last: bool,
    /// Where the batches go: on CUDA they are returned in pinned host memory,
    /// ready for a non-blocking copy.
    pub device: Device,
    /// Which part of every epoch this loader draws (data-parallel training).
    pub shard: Shard,
    /// Replace samples whose file cannot be decoded by the next readable
    /// one instead of failing (see the module doc); off by default.
    pub skip_unreadable: bool,
}

/// Part `rank` of `count` of every epoch, with the contract of PyTorch's
/// `DistributedSampler` (the one distributed sampler of the workspace): the epoch order, the
/// same on every rank, padded by repeating its head (or truncated, with
/// `drop_last`) to a multiple of `count`, then every `count`-th index from
/// `rank`. With batches of `B / count`, batch `b` of all ranks together is
/// batch `b` of an unsharded loader with batches of `B`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This part, `0..count`.
    pub rank: usize,
    /// Number of parts.
    pub count: usize,
}

impl Shard {
    /// The whole epoch.
    pub const WHOLE: Shard = Shard { rank: 0, count: 1 };

    /// Samples per part of an epoch of `len`.
    pub fn part_len(&self, len: usize, drop_last: bool) -> usize {
        if drop_last {
            len / self.count
        } else {
            len.div_ceil(self.count)
        }
    }

    /// This part of `order`.
    pub fn apply(&self, order: Vec<usize>, drop_last: bool) -> Vec<usize> {
        if self.count == 1 || order.is_empty() {
            return order;
        }
        (0..self.part_len(order.len(), drop_last))
            .map(|i| order[(i * self.count + self.rank) % order.len()])
            .collect()
    }
}

impl LoaderConfig {
    /// Shuffled, drop-last batches on the CPU, on all available cores, 2 batches ahead.
    pub fn new(batch_size: usize, views: usize, seed: u64) -> Self {
        Self {
            batch_size,
            views,
            seed,
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            prefetch: 2,
            shuffle: true,
            drop_last: true,
            device: Device::Cpu,
            shard: Shard::WHOLE,
            skip_unreadable: false,
        }
    }
}

/// One batch: `views[v]` is `[B, 3, H, W]` `f32` (normalised), `labels`
/// `[B]` `i64` (`−1` for an unlabeled sample), `indices` the dataset indices.
#[derive(Debug)]
pub struct Batch {
    /// One tensor per view.
    pub views: Vec<Tensor>,
    /// Class labels, `−1` when unlabeled.
    pub labels: Tensor,
    /// Dataset index of each row.
    pub indices: Vec<usize>,
}

impl Batch {
    /// Moves the views and labels to `device` (non-blocking from pinned memory).
    pub fn to_device(self, device: Device) -> Self {
        Self {
            views: self
                .views
                .iter()
                .map(|v| v.to_device_(device, Kind::Float, true, false))
                .collect(),
            labels: self.labels.to_device_(device, Kind::Int64, true, false),
            indices: self.indices,
        }
    }
}

/// The samples a loader skipped because their files could not be decoded
/// ([`LoaderConfig::skip_unreadable`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// How many decoding failures were met: a bad file counts each time it
    /// is tried (once an epoch, and again if it comes up as a substitute).
    pub count: usize,
    /// Each unreadable sample once, by dataset index, with its error
    /// message (which names the file).
    pub samples: std::collections::BTreeMap<usize, String>,
}

#[derive(Debug)]
struct Shared<D> {
    dataset: Arc<D>,
    pipeline: Pipeline,
    config: LoaderConfig,
    pool: rayon::ThreadPool,
    skipped: std::sync::Mutex<Skipped>,
}

/// Draws batches of augmented views from a dataset.
#[derive(Debug)]
pub struct Loader<D> {
    shared: Arc<Shared<D>>,
}

/// The RNG all views of sample `index` in `epoch` are drawn from.
pub fn sample_rng(seed: u64, epoch: u64, index: usize) -> ChaCha8Rng {
    ChaCha8Rng::from_seed(derive_seed(seed, epoch, index as u64))
}

impl<D: Dataset + 'static> Loader<D> {
    /// A loader; fails on a zero batch size, view count or thread count.
    pub fn new(
        dataset: Arc<D>,
        pipeline: Pipeline,
        config: LoaderConfig,
    ) -> Result<Self, DataError> {
        if config.shard.count == 0 || config.shard.rank >= config.shard.count {
            return Err(DataError::InvalidParameter(format!(
                "loader shard {} of {} does not exist",
                config.shard.rank, config.shard.count
            )));
        }
        if config.batch_size == 0 || config.views == 0 || config.threads == 0 {
            return Err(DataError::InvalidParameter(format!(
                "loader needs batch_size, views and threads >= 1, got {}, {}, {}",
                config.batch_size, config.views, config.threads
            )));
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(config.threads)
            .thread_name(|i| format!("ssl-data-{i}"))
            .build()
            .map_err(|e| {
                DataError::InvalidParameter(format!("cannot start the loader threads: {e}"))
            })?;
        Ok(Self {
            shared: Arc::new(Shared {
                dataset,
                pipeline,
                config,
                pool,
                skipped: std::sync::Mutex::new(Skipped::default()),
            }),
        })
    }

    /// The samples skipped so far because their files could not be decoded
    /// ([`LoaderConfig::skip_unreadable`]), over every epoch this loader built.
    pub fn skipped(&self) -> Skipped {
        self.shared
            .skipped
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.shared.config
    }

    /// Batches in one epoch: `⌊N / B⌋` with drop-last, else `⌈N / B⌉`
    /// (`N` this loader's shard of the dataset).
    pub fn batches_per_epoch(&self) -> usize {
        self.shared.batches_per_epoch()
    }

    /// The order samples are visited in during `epoch` (this shard's part).
    pub fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        self.shared.epoch_order(epoch)
    }

    /// Builds batch `batch` of `epoch` on the calling thread (plus the pool).
    pub fn batch(&self, epoch: u64, batch: usize) -> Result<Batch, DataError> {
        let order = self.shared.epoch_order(epoch);
        self.shared.build(epoch, &order, batch)
    }

    /// Iterates over the batches of `epoch`, built by a background thread
    /// at most `prefetch` batches ahead. Dropping the iterator stops it.
    pub fn epoch(&self, epoch: u64) -> EpochBatches {
        let shared = Arc::clone(&self.shared);
        let (tx, rx) = sync_channel(self.shared.config.prefetch.max(1) - 1);
        let worker = std::thread::Builder::new()
            .name("ssl-data-prefetch".into())
            .spawn(move || {
                let order = shared.epoch_order(epoch);
                for b in 0..shared.batches_per_epoch() {
                    let result = shared.build(epoch, &order, b);
                    let failed = result.is_err();
                    if tx.send(result).is_err() || failed {
                        break;
                    }
                }
            });
        match worker {
            Ok(handle) => EpochBatches {
                rx: Some(rx),
                worker: Some(handle),
                spawn_error: None,
            },
            Err(e) => EpochBatches {
                rx: None,
                worker: None,
                spawn_error: Some(DataError::InvalidParameter(format!(
                    "cannot start the prefetch thread: {e}"
                ))),
            },
        }
    }
}

impl<D: Dataset> Shared<D> {
    fn batches_per_epoch(&self) -> usize {
        let n = self
            .config
            .shard
            .part_len(self.dataset.len(), self.config.drop_last);
        let b = self.config.batch_size;
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    fn epoch_order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            let mut rng = ChaCha8Rng::from_seed(derive_seed(self.config.seed, epoch, ORDER_STREAM));
            order.shuffle(&mut rng);
        }
        self.config.shard.apply(order, self.config.drop_last)
    }

    fn build(&self, epoch: u64, order: &[usize], batch: usize) -> Result<Batch, DataError> {
        let bs = self.config.batch_size;
        let lo = batch * bs;
        if lo >= order.len() {
            return Err(DataError::IndexOutOfRange {
                index: batch,
                len: self.batches_per_epoch(),
            });
        }
        let indices = order[lo..(lo + bs).min(order.len())].to_vec();
        let b = indices.len();
        let per_view = self.pipeline.output_len();
        let views = self.config.views;
        let (h, w) = self.pipeline.output_size();
        // The batch's tensors are allocated first and each thread copies its
        // samples' views into them (no batch-sized staging buffer, no serial copy).
        let tensors = (0..views)
            .map(|_| {
                Tensor::f_empty(
                    [b as i64, 3, h as i64, w as i64],
                    (Kind::Float, Device::Cpu),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let dest = Destination::new(&tensors, per_view)?;
        let mut labels = vec![-1i64; b];
        let substitutes: Vec<Option<usize>> = self.pool.install(|| {
            labels
                .par_iter_mut()
                .zip(indices.par_iter())
                .enumerate()
                .map(|(k, (label, &index))| {
                    SCRATCH.with(|cell| {
                        let mut scratch = cell.borrow_mut();
                        scratch.resize(views * per_view, 0.0);
                        let outs = scratch.chunks_exact_mut(per_view).collect();
                        let sub = self.sample_into(epoch, order, lo + k, index, outs, label)?;
                        for (v, view) in scratch.chunks_exact(per_view).enumerate() {
                            // SAFETY: sample `k` is this task's alone (one task per
                            // sample), and `tensors` outlives `pool.install`.
                            #[allow(unsafe_code)]
                            unsafe {
                                dest.write(v, k, view)
                            };
                        }
                        Ok(sub)
                    })
                })
                .collect::<Result<Vec<_>, DataError>>()
        })?;
        let mut indices = indices;
        for (slot, sub) in indices.iter_mut().zip(substitutes) {
            if let Some(j) = sub {
                *slot = j;
            }
        }
        let pin = self.config.device.is_cuda();
        let to_tensor = |t: Tensor| -> Result<Tensor, DataError> {
            Ok(if pin {
                t.f_pin_memory(self.config.device)?
            } else {
                t
            })
        };
        drop(dest);
        let views = tensors
            .into_iter()
            .map(to_tensor)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Batch {
            views,
            labels: to_tensor(Tensor::f_from_slice(&labels)?)?,
            indices,
        })
    }

    /// Decodes sample `index` (at `pos` in the epoch's `order`) and writes its
    /// views into `outs`. With `skip_unreadable`, an undecodable file is
    /// replaced by the next readable sample of `order` (wrapping), augmented
    /// with `index`'s random stream; returns the substitute's index, if any.
    fn sample_into(
        &self,
        epoch: u64,
        order: &[usize],
        pos: usize,
        index: usize,
        outs: Vec<&mut [f32]>,
        label: &mut i64,
    ) -> Result<Option<usize>, DataError> {
        let mut source = index;
        let mut tries = 0;
        loop {
            let mut rng = sample_rng(self.config.seed, epoch, index);
            let mut plans = Vec::with_capacity(outs.len());
            let mut plan_error = None;
            let part = self.dataset.get_part(source, &mut |h, w| {
                for _ in 0..outs.len() {
                    match self.pipeline.plan(h, w, &mut rng) {
                        Ok(p) => plans.push(p),
                        Err(e) => plan_error = Some(e),
                    }
                }
                self.pipeline.region_needed(&plans)
            });
            match part {
                Ok(part) => {
                    if let Some(e) = plan_error {
                        return Err(e);
                    }
                    *label = part.sample.label.map_or(-1, i64::from);
                    for (out, plan) in outs.into_iter().zip(&plans) {
                        self.pipeline.apply_plan_into(
                            &part.sample.image,
                            part.origin,
                            plan,
                            out,
                        )?;
                    }
                    return Ok((source != index).then_some(source));
                }
                Err(e @ DataError::Decode { .. }) if self.config.skip_unreadable => {
                    let mut skipped = self.skipped.lock().unwrap_or_else(|p| p.into_inner());
                    skipped.count += 1;
                    skipped
                        .samples
                        .entry(source)
                        .or_insert_with(|| e.to_string());
                    drop(skipped);
                    tries += 1;
                    if tries >= order.len() {
                        return Err(DataError::InvalidParameter(format!(
                            "no sample of the epoch could be decoded (the last error: {e})"
                        )));
                    }
                    source = order[(pos + tries) % order.len()];
                }
                Err(e) => return Err(e),
            }
        }
    }
}

thread_local! {
    /// Each loader thread's buffer for the views of the sample it is building.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The batch's view tensors as raw memory the loader's threads copy the
/// samples' views into: row `k` of every tensor is sample `k`'s.
/// (`Tensor::from_slice` would first zero-fill with an OpenMP-parallel
/// kernel, whose spinning threads compete with the loader's own, then copy
/// serially.)
struct Destination {
    /// Address of each tensor's first `f32`.
    bases: Vec<usize>,
    /// `f32`s per row (one sample's view).
    row: usize,
    /// Rows per tensor.
    rows: usize,
}

impl Destination {
    /// Checks that every tensor is a contiguous CPU `f32` tensor of whole rows.
    fn new(tensors: &[Tensor], row: usize) -> Result<Self, DataError> {
        let mut bases = Vec::with_capacity(tensors.len());
        let mut rows = 0;
        for t in tensors {
            let n = t.numel();
            if t.kind() != Kind::Float
                || t.device() != Device::Cpu
                || !t.is_contiguous()
                || row == 0
                || n % row != 0
            {
                return Err(DataError::InvalidParameter(format!(
                    "cannot fill a {:?} {:?} tensor of {n} values with rows of {row}",
                    t.kind(),
                    t.device()
                )));
            }
            rows = n / row;
            bases.push(t.data_ptr() as usize);
        }
        Ok(Self { bases, row, rows })
    }

    /// Copies `data` (one row) into row `k` of tensor `v`.
    ///
    /// # Safety
    /// The tensors are alive and not otherwise accessed until the last call
    /// returns, and no two calls with the same `(v, k)` run at the same time.
    #[allow(unsafe_code)]
    unsafe fn write(&self, v: usize, k: usize, data: &[f32]) {
        assert!(v < self.bases.len() && k < self.rows && data.len() == self.row);
        // SAFETY: tensor `v` holds `rows · row` contiguous f32s from `bases[v]`
        // (checked in `new`), row `k` is in bounds (asserted), and the caller
        // guarantees the memory is alive and this row is written by no one else.
        unsafe {
            std::ptr::copy_nonoverlapping(
                data.as_ptr(),
                (self.bases[v] as *mut f32).add(k * self.row),
                self.row,
            );
        }
    }
}

/// The batches of one epoch, in order (see [`Loader::epoch`]).
#[derive(Debug)]
pub struct EpochBatches {
    rx: Option<Receiver<Result<Batch, DataError>>>,
    worker: Option<JoinHandle<()>>,
    spawn_error: Option<DataError>,
}

impl Iterator for EpochBatches {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.spawn_error.take() {
            return Some(Err(e));
        }
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for EpochBatches {
    fn drop(&mut self) {
        // Closing the channel makes the worker's next send fail, so it stops.
        self.rx.take();
        if let Some(worker) = self.worker.take() {
            // A panic in the worker has already been reported on stderr by the runtime.
            let _ = worker.join();
        }
    }
}
