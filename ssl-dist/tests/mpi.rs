//! Open MPI end to end on the CPU: the test binary runs itself again under
//! `mpirun -np 2` (the `SSL_DIST_MPI_CHILD` variable selects the rank-side
//! body), so no extra program is needed.
//!
//! - Collectives: all-reduce, broadcast, barrier.
//! - Data-parallel gradients: with 2 ranks of B/2 samples each (the
//!   interleaved shards of ssl-data's `Shard`), the bucketed, averaged gradients of an
//!   MLP (no BN) equal the single-process gradients of the whole batch B,
//!   within f32 rounding (|Δ| ≤ 1e-6 + 1e-5·|g|, since the sum runs in a
//!   different order), and after every SGD step the parameters are
//!   bit-identical on both ranks (checksum of rank 0 broadcast and compared).
//! - A hung rank: the other's watchdog ends the job within the timeout,
//!   naming the call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ssl_dist::{broadcast_tensors, checksum, Communicator, Dist, GradSync, LaunchEnv, Mpi};
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

const CHILD: &str = "SSL_DIST_MPI_CHILD";

/// Runs test `name` of this binary on 2 ranks with `CHILD=mode`; `None`
/// when mpirun is missing outside CI.
fn run_under_mpirun(name: &str, mode: &str, limit: Duration) -> Option<std::process::Output> {
    let mut c = test_support::mpirun(2)?;
    let exe = std::env::current_exe().expect("test binary path");
    c.args(["-x", CHILD, "-x", "OMP_NUM_THREADS"])
        .arg(exe)
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, mode);
    Some(test_support::output_within(&mut c, limit))
}

fn dist() -> Dist {
    tch::set_num_threads(1);
    let mpi = Mpi::init().expect("MPI_Init under mpirun");
    Dist::wrap(
        Arc::new(mpi),
        Duration::from_secs(2),
        LaunchEnv::from_env().unwrap(),
        Arc::new(|m| eprintln!("error: {m}")),
    )
}

fn child_collectives_and_gradients() {
    let d = dist();
    let (rank, world) = (d.rank(), d.world_size());
    assert_eq!(world, 2);
    // Collectives.
    let mut v = vec![rank as f32 + 1.0; 5];
    d.all_reduce_sum(&mut v).unwrap();
    assert_eq!(v, vec![3.0; 5]);
    let mut b = if rank == 0 { *b"hello" } else { [0u8; 5] };
    d.broadcast_bytes(&mut b, 0).unwrap();
    assert_eq!(&b, b"hello");
    d.barrier().unwrap();

    // A small MLP without BN; rank 1 starts from other weights, which the
    // initial broadcast replaces with rank 0's.
    tch::manual_seed(rank as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let root = vs.root();
    let net = nn::seq()
        .add(nn::linear(&root / "l1", 8, 32, Default::default()))
        .add_fn(|x| x.tanh())
        .add(nn::linear(&root / "l2", 32, 4, Default::default()));
    let params = vs.trainable_variables();
    broadcast_tensors(&d, &params, 0).unwrap();
    // The same data on every rank (same seed): the global batch.
    tch::manual_seed(7);
    let big = 16;
    let x = Tensor::randn([big, 8], (Kind::Float, Device::Cpu));
    let y = Tensor::randn([big, 4], (Kind::Float, Device::Cpu));
    // This rank's interleaved share (ssl-data's `Shard` of the identity order).
    let mine: Vec<i64> = (rank as i64..big).step_by(world).collect();
    let idx = Tensor::from_slice(&mine);
    let (xs, ys) = (x.index_select(0, &idx), y.index_select(0, &idx));
    let loss = |x: &Tensor, y: &Tensor| (net.forward(x) - y).square().mean(Kind::Float);
    // Small buckets: several all-reduce calls per step.
    let mut sync = GradSync::new(params.iter().map(|p| p.shallow_clone()).collect(), 512).unwrap();
    assert!(sync.plan().buckets.len() >= 2);
    let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
    let mut worst = 0.0f64;
    for step in 0..3 {
        d.set_context(format!("step {step}"));
        opt.zero_grad();
        loss(&x, &y).backward();
        let reference: Vec<Tensor> = params.iter().map(|p| p.grad().copy()).collect();
        opt.zero_grad();
        loss(&xs, &ys).backward();
        sync.all_reduce_mean(&d).unwrap();
        for (p, r) in params.iter().zip(&reference) {
            let g = p.grad();
            let diff = (&g - r).abs().max().double_value(&[]);
            worst = worst.max(diff);
            assert!(
                g.allclose(r, 1e-5, 1e-6, false),
                "rank {rank} step {step}: averaged gradient differs from the single-process one by {diff:e}"
            );
        }
        opt.step();
        // Bit-identical parameters: rank 0's checksum against everyone's.
        let mine = checksum(&params).unwrap();
        let mut theirs = mine.to_le_bytes();
        d.broadcast_bytes(&mut theirs, 0).unwrap();
        assert_eq!(
            u64::from_le_bytes(theirs),
            mine,
            "rank {rank}: parameters differ from rank 0's after step {step}"
        );
    }
    d.barrier().unwrap();
    println!("rank {rank} ok: max |grad difference| {worst:e}");
}

#[test]
fn two_ranks_collectives_gradients_equal_one_process_and_parameters_stay_identical() {
    if std::env::var(CHILD).as_deref() == Ok("gradients") {
        return child_collectives_and_gradients();
    }
    let started = Instant::now();
    let Some(o) = run_under_mpirun(
        "two_ranks_collectives_gradients_equal_one_process_and_parameters_stay_identical",
        "gradients",
        Duration::from_secs(120),
    ) else {
        return;
    };
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "mpirun failed:\n{out}\n{err}");
    assert!(
        out.contains("rank 0 ok") && out.contains("rank 1 ok"),
        "{out}\n{err}"
    );
    eprintln!("two ranks: {:.1} s", started.elapsed().as_secs_f64());
}

fn child_hang() {
    let d = dist();
    if d.rank() == 1 {
        // Never joins the collective (a hung rank).
        std::thread::sleep(Duration::from_secs(60));
    }
    d.set_context("step 3");
    let mut v = [1.0f32];
    let _ = d.all_reduce_sum(&mut v);
    unreachable!("the watchdog ends the job first");
}

#[test]
fn a_hung_rank_ends_the_job_within_the_timeout() {
    if std::env::var(CHILD).as_deref() == Ok("hang") {
        child_hang();
    }
    let started = Instant::now();
    let Some(o) = run_under_mpirun(
        "a_hung_rank_ends_the_job_within_the_timeout",
        "hang",
        Duration::from_secs(60),
    ) else {
        return;
    };
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("rank 0: mpi all-reduce (step 3) made no progress"),
        "{err}"
    );
    // 2 s timeout + start-up + mpirun's teardown.
    assert!(took < Duration::from_secs(30), "took {took:?}");
    eprintln!(
        "hung rank detected; job ended in {:.1} s",
        took.as_secs_f64()
    );
}
