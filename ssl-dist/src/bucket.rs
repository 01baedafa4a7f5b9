//! Gradient bucketing (as PyTorch's DDP): the gradients are copied into a
//! few large contiguous buffers (about 25 MB each), each buffer is
//! all-reduced in one call, divided by the world size and copied back.
//! A few large calls instead of one per parameter: the per-call latency of
//! MPI/NCCL is paid a handful of times a step.

use tch::{Kind, Tensor};

use crate::comm::Communicator;
use crate::error::{DistError, Result};

/// DDP's default bucket size.
pub const DEFAULT_BUCKET_BYTES: usize = 25 * 1024 * 1024;

/// Where one parameter lives in its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index of the parameter in the list the plan was made for.
    pub param: usize,
    /// First element in the bucket.
    pub offset: usize,
    /// Number of elements.
    pub len: usize,
}

/// The parameters of one bucket, contiguous and in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Parameters in the bucket.
    pub slots: Vec<Slot>,
    /// Elements in the bucket.
    pub len: usize,
}

/// Parameters (by element count) grouped in order into buckets of at most
/// `bucket_bytes`; a parameter larger than that gets a bucket of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketPlan {
    /// The buckets, in parameter order.
    pub buckets: Vec<Bucket>,
}

impl BucketPlan {
    /// Plans buckets for parameters of `numels` elements of `elem_bytes` bytes.
    pub fn new(numels: &[usize], elem_bytes: usize, bucket_bytes: usize) -> Self {
        let cap = (bucket_bytes / elem_bytes.max(1)).max(1);
        let mut buckets = Vec::new();
        let mut cur = Bucket {
            slots: Vec::new(),
            len: 0,
        };
        for (param, &len) in numels.iter().enumerate() {
            if len == 0 {
                continue;
            }
            if cur.len > 0 && cur.len + len > cap {
                buckets.push(std::mem::replace(
                    &mut cur,
                    Bucket {
                        slots: Vec::new(),
                        len: 0,
                    },
                ));
            }
            cur.slots.push(Slot {
                param,
                offset: cur.len,
                len,
            });
            cur.len += len;
        }
        if cur.len > 0 {
            buckets.push(cur);
        }
        Self { buckets }
    }

    /// Total elements over all buckets.
    pub fn total_len(&self) -> usize {
        self.buckets.iter().map(|b| b.len).sum()
    }
}

/// Averages the gradients of a fixed list of `f32` parameters over all
/// ranks, bucket by bucket, reusing its buffers from step to step.
#[derive(Debug)]
pub struct GradSync {
    params: Vec<Tensor>,
    plan: BucketPlan,
    buffers: Vec<Tensor>,
}

impl GradSync {
    /// Plans buckets of at most `bucket_bytes` for `params` (shallow
    /// references to the model's `f32` parameters, all on one device).
    pub fn new(params: Vec<Tensor>, bucket_bytes: usize) -> Result<Self> {
        let Some(first) = params.first() else {
            return Ok(Self {
                params,
                plan: BucketPlan { buckets: vec![] },
                buffers: vec![],
            });
        };
        let device = first.device();
        for (i, p) in params.iter().enumerate() {
            if p.kind() != Kind::Float || p.device() != device {
                return Err(DistError::Invalid(format!(
                    "gradient bucketing needs f32 parameters on one device; parameter {i} is {:?} on {:?}",
                    p.kind(),
                    p.device()
                )));
            }
        }
        let numels: Vec<usize> = params.iter().map(|p| p.numel()).collect();
        let plan = BucketPlan::new(&numels, 4, bucket_bytes);
        let buffers = plan
            .buckets
            .iter()
            .map(|b| Tensor::f_zeros([b.len as i64], (Kind::Float, device)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            params,
            plan,
            buffers,
        })
    }

    /// The bucket plan.
    pub fn plan(&self) -> &BucketPlan {
        &self.plan
    }

    /// Replaces every parameter's gradient by its mean over all ranks. A
    /// parameter without a gradient contributes zeros and is left without
    /// one (every rank must agree on which parameters have gradients, as
    /// with DDP's default `find_unused_parameters=False`).
    pub fn all_reduce_mean(&mut self, comm: &dyn Communicator) -> Result<()> {
        let world = comm.world_size();
        if world == 1 {
            return Ok(());
        }
        let inv = 1.0 / world as f64;
        tch::no_grad(|| -> Result<()> {
            for (bucket, buf) in self.plan.buckets.iter().zip(self.buffers.iter_mut()) {
                for s in &bucket.slots {
                    let g = self.params[s.param].grad();
                    let mut dst = buf.narrow(0, s.offset as i64, s.len as i64);
                    if g.defined() {
                        dst.f_copy_(&g.f_reshape([-1])?)?;
                    } else {
                        let _ = dst.f_zero_()?;
                    }
                }
                comm.all_reduce_sum_tensor(buf)?;
                let _ = buf.f_mul_scalar_(inv)?;
                for s in &bucket.slots {
                    let mut g = self.params[s.param].grad();
                    if g.defined() {
                        let src = buf.narrow(0, s.offset as i64, s.len as i64);
                        g.f_copy_(&src.f_view(g.size().as_slice())?)?;
                    }
                }
            }
            Ok(())
        })
    }
}

/// Copies rank `root`'s values of `tensors` (parameters and buffers of any
/// dtype, on the communicator's device) into every rank's, one call per
/// tensor (used once, at start-up).
pub fn broadcast_tensors(comm: &dyn Communicator, tensors: &[Tensor], root: usize) -> Result<()> {
    if comm.world_size() == 1 {
        return Ok(());
    }
    tch::no_grad(|| -> Result<()> {
        for t in tensors {
            if t.numel() == 0 {
                continue;
            }
            if t.is_contiguous() {
                let mut t = t.shallow_clone();
                comm.broadcast_tensor(&mut t, root)?;
            } else {
                let mut c = t.f_contiguous()?;
                comm.broadcast_tensor(&mut c, root)?;
                t.shallow_clone().f_copy_(&c)?;
            }
        }
        Ok(())
    })
}

/// An order-sensitive checksum of `tensors`' bytes (the workspace's
/// [`ssl_bytes::Checksum`], FNV-1a, over each tensor's raw data copied to
/// the CPU): equal on two ranks only when every value is bit-identical.
pub fn checksum(tensors: &[Tensor]) -> Result<u64> {
    let mut sum = ssl_bytes::Checksum::new();
    for t in tensors {
        sum.update(&ssl_bytes::host_bytes(t)?);
    }
    Ok(sum.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::comm::Single;

    #[test]
    fn plan_groups_in_order_and_splits_large_parameters() {
        // 4-byte elements, 100-byte buckets = 25 elements.
        let plan = BucketPlan::new(&[10, 10, 10, 40, 0, 3, 25], 4, 100);
        let lens: Vec<usize> = plan.buckets.iter().map(|b| b.len).collect();
        assert_eq!(lens, vec![20, 10, 40, 3, 25]);
        assert_eq!(plan.total_len(), 98);
        // Every non-empty parameter exactly once, offsets contiguous.
        let mut seen = vec![];
        for b in &plan.buckets {
            let mut off = 0;
            for s in &b.slots {
                assert_eq!(s.offset, off);
                off += s.len;
                seen.push(s.param);
            }
            assert_eq!(off, b.len);
        }
        assert_eq!(seen, vec![0, 1, 2, 3, 5, 6]);
        // One bucket when everything fits (the 25 MB default).
        assert_eq!(
            BucketPlan::new(&[1000; 50], 4, DEFAULT_BUCKET_BYTES)
                .buckets
                .len(),
            1
        );
    }

    /// A fake two-rank world seen from one rank: the "other rank" holds
    /// `other` and the sum is taken with it.
    #[derive(Debug)]
    struct Twin {
        other: std::sync::Mutex<Vec<f32>>,
        calls: std::sync::atomic::AtomicUsize,
    }
    impl Communicator for Twin {
        fn backend(&self) -> &'static str {
            "twin"
        }
        fn rank(&self) -> usize {
            0
        }
        fn world_size(&self) -> usize {
            2
        }
        fn device(&self) -> tch::Device {
            tch::Device::Cpu
        }
        fn all_reduce_sum(&self, _: &mut [f32]) -> Result<()> {
            unreachable!()
        }
        fn all_reduce_sum_tensor(&self, t: &mut Tensor) -> Result<()> {
            let mut other = self.other.lock().unwrap();
            let n = t.numel();
            let o = Tensor::from_slice(&other[..n]);
            other.drain(..n);
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = t.f_add_(&o)?;
            Ok(())
        }
        fn broadcast_bytes(&self, _: &mut [u8], _: usize) -> Result<()> {
            unreachable!()
        }
        fn broadcast_tensor(&self, _: &mut Tensor, _: usize) -> Result<()> {
            unreachable!()
        }
        fn barrier(&self) -> Result<()> {
            Ok(())
        }
        fn abort(&self, _: i32) -> ! {
            unreachable!()
        }
    }

    #[test]
    fn gradients_round_trip_through_buckets() {
        tch::manual_seed(0);
        let shapes: [&[i64]; 4] = [&[3, 4], &[4], &[5, 2, 2], &[7]];
        let params: Vec<Tensor> = shapes
            .iter()
            .map(|s| Tensor::randn(*s, (Kind::Float, tch::Device::Cpu)).set_requires_grad(true))
            .collect();
        let loss = params
            .iter()
            .enumerate()
            .map(|(i, p)| (p * p).sum(Kind::Float) * (i as f64 + 1.0))
            .reduce(|a, b| a + b)
            .unwrap();
        loss.backward();
        let before: Vec<Tensor> = params.iter().map(|p| p.grad().copy()).collect();
        // Single: nothing changes.
        let mut sync =
            GradSync::new(params.iter().map(|p| p.shallow_clone()).collect(), 40).unwrap();
        assert!(sync.plan().buckets.len() > 1, "small buckets: several");
        sync.all_reduce_mean(&Single).unwrap();
        for (p, b) in params.iter().zip(&before) {
            assert!(p.grad().equal(b));
        }
        // Two ranks, the other holding ones: the mean is (g + 1) / 2, per element,
        // back in the right parameter with the right shape.
        let total = sync.plan().total_len();
        let twin = Twin {
            other: std::sync::Mutex::new(vec![1.0; total]),
            calls: Default::default(),
        };
        sync.all_reduce_mean(&twin).unwrap();
        assert_eq!(
            twin.calls.load(std::sync::atomic::Ordering::SeqCst),
            sync.plan().buckets.len()
        );
        for (p, b) in params.iter().zip(&before) {
            let want = (b + 1.0) / 2.0;
            assert!(p.grad().allclose(&want, 0.0, 1e-7, false));
            assert_eq!(p.grad().size(), b.size());
        }
        // The checksum sees a one-ulp change.
        let c0 = checksum(&params).unwrap();
        tch::no_grad(|| {
            let _ = params[2].get(0).get(0).get(1).f_add_scalar_(1e-6).unwrap();
        });
        assert_ne!(c0, checksum(&params).unwrap());
    }
}
