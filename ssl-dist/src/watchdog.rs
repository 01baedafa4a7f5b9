//! A thread that ends the job when a collective makes no progress.
//!
//! Blocking collectives cannot time out by themselves: MPI has no timeout
//! and NCCL waits forever for a peer that died. So every collective runs
//! under [`Watchdog::watch`], which records what is in flight and since
//! when; the watchdog thread calls the `on_expire` action (which aborts
//! the job) once a call has been in flight longer than its limit.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the watchdog thread does with its message: report it and end the
/// job. It may return (tests), in which case the watchdog stays quiet for
/// that call.
pub type Expire = Arc<dyn Fn(String) + Send + Sync>;

#[derive(Default)]
struct State {
    current: Option<(String, Instant, Duration)>,
    stop: bool,
}

/// See the module documentation.
pub struct Watchdog {
    state: Arc<(Mutex<State>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog").finish_non_exhaustive()
    }
}

impl Watchdog {
    /// Starts the thread. `rank` prefixes the message.
    pub fn start(rank: usize, on_expire: Expire) -> Self {
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let s = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("ssl-dist-watchdog".into())
            .spawn(move || {
                let (lock, cvar) = &*s;
                let mut st = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    if st.stop {
                        return;
                    }
                    let mut wait = Duration::from_millis(200);
                    if let Some((op, since, limit)) = &st.current {
                        let waited = since.elapsed();
                        if waited >= *limit {
                            let msg = format!(
                                "rank {rank}: {op} made no progress for {:.1} s (limit {:.1} s): \
                                 another rank has died or hangs; aborting the job",
                                waited.as_secs_f64(),
                                limit.as_secs_f64()
                            );
                            st.current = None;
                            drop(st);
                            on_expire(msg);
                            st = lock.lock().unwrap_or_else(|p| p.into_inner());
                            continue;
                        }
                        wait = wait.min(*limit - waited);
                    }
                    st = cvar
                        .wait_timeout(st, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            })
            .ok();
        Self { state, thread }
    }

    /// Runs `f` (a blocking collective named `op`); with `limit`, the
    /// watchdog fires when `f` has not returned after that long.
    pub fn watch<T>(&self, op: &str, limit: Option<Duration>, f: impl FnOnce() -> T) -> T {
        let (lock, cvar) = &*self.state;
        if let Some(limit) = limit {
            lock.lock().unwrap_or_else(|p| p.into_inner()).current =
                Some((op.to_string(), Instant::now(), limit));
            cvar.notify_all();
        }
        let out = f();
        if limit.is_some() {
            lock.lock().unwrap_or_else(|p| p.into_inner()).current = None;
        }
        out
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.state;
        lock.lock().unwrap_or_else(|p| p.into_inner()).stop = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    #[test]
    fn fires_on_a_stuck_call_only() {
        let (tx, rx) = channel();
        let tx = Mutex::new(tx);
        let dog = Watchdog::start(
            3,
            Arc::new(move |m| {
                let _ = tx.lock().unwrap().send(m);
            }),
        );
        // A quick call: no message.
        dog.watch("all_reduce", Some(Duration::from_millis(300)), || {
            std::thread::sleep(Duration::from_millis(20))
        });
        // An untimed wait: no message either.
        dog.watch("wait", None, || {
            std::thread::sleep(Duration::from_millis(400))
        });
        assert!(rx.try_recv().is_err());
        // A stuck call: the message names the rank and the call, in bounded time.
        let t = Instant::now();
        dog.watch(
            "all_reduce (step 7)",
            Some(Duration::from_millis(100)),
            || std::thread::sleep(Duration::from_millis(500)),
        );
        let msg = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(
            msg.starts_with("rank 3: all_reduce (step 7) made no progress"),
            "{msg}"
        );
        assert!(rx.try_recv().is_err(), "fires once per call");
    }
}
