//! The TCP rendezvous of the NCCL backend, and the liveness links it leaves.
//!
//! Rank 0 listens on `MASTER_ADDR:MASTER_PORT`; every other rank connects
//! (retrying until the deadline, since rank 0 may start later) and says
//! who it is; once all have arrived rank 0 sends each the payload (NCCL's
//! 128-byte unique id). The connections stay open as liveness links: a
//! rank that dies closes its socket, rank 0 sees it, tells the others, and
//! every rank ends the job naming the dead rank at once, instead of
//! waiting in a collective that can never finish. An orderly end sends a
//! goodbye first.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{DistError, Result};

const MAGIC: &[u8; 4] = b"SSLD";
const BYE: u8 = 1;
const DEAD: u8 = 2;

/// The connections of one rank after the rendezvous (rank 0: one per peer;
/// others: one to rank 0).
#[derive(Debug)]
pub struct Links {
    rank: usize,
    /// `(peer rank, stream)`.
    streams: Vec<(usize, Arc<Mutex<TcpStream>>)>,
    closing: Arc<AtomicBool>,
}

fn err(what: impl std::fmt::Display) -> DistError {
    DistError::Rendezvous(what.to_string())
}

fn read_exact_by(s: &mut TcpStream, buf: &mut [u8], deadline: Instant, what: &str) -> Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(err(format!("timed out waiting for {what}")));
    }
    s.set_read_timeout(Some(left)).map_err(err)?;
    s.read_exact(buf).map_err(|e| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => err(format!("timed out waiting for {what}")),
        _ => err(format!("reading {what}: {e}")),
    })
}

/// Exchanges `payload` (given on rank 0, `None` elsewhere) from rank 0 to
/// every rank through `addr:port` within `timeout`; returns it with the
/// liveness links.
pub fn rendezvous(
    rank: usize,
    world: usize,
    addr: &str,
    port: u16,
    payload: Option<&[u8]>,
    timeout: Duration,
) -> Result<(Vec<u8>, Links)> {
    let deadline = Instant::now() + timeout;
    let closing = Arc::new(AtomicBool::new(false));
    if rank == 0 {
        let payload = payload.ok_or_else(|| err("rank 0 must provide the payload"))?;
        // Listen on every interface, as torch's TCPStore does: MASTER_ADDR is
        // how the others reach this machine, not necessarily a local address.
        let listener = TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
            err(format!(
                "rank 0 cannot listen on port {port}: {e} (MASTER_PORT in use?)"
            ))
        })?;
        listener.set_nonblocking(true).map_err(err)?;
        let mut peers: Vec<Option<TcpStream>> = (0..world).map(|_| None).collect();
        let mut arrived = 0;
        while arrived + 1 < world {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).map_err(err)?;
                    let mut hello = [0u8; 12];
                    read_exact_by(&mut s, &mut hello, deadline, "a peer's hello")?;
                    let r = u32::from_le_bytes(hello[4..8].try_into().expect("4 bytes")) as usize;
                    let w = u32::from_le_bytes(hello[8..12].try_into().expect("4 bytes")) as usize;
                    if &hello[..4] != MAGIC {
                        continue; // not one of ours (a port scanner); ignore it
                    }
                    if w != world || r == 0 || r >= world {
                        return Err(err(format!(
                            "a peer says it is rank {r} of {w}, but rank 0 has a world of {world}"
                        )));
                    }
                    if peers[r].is_some() {
                        return Err(err(format!("two processes claim rank {r}")));
                    }
                    peers[r] = Some(s);
                    arrived += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if Instant::now() >= deadline {
                        let missing: Vec<String> = (1..world)
                            .filter(|&r| peers[r].is_none())
                            .map(|r| r.to_string())
                            .collect();
                        return Err(err(format!(
                            "rank 0 waited {:.0} s on port {port} but rank(s) {} never connected",
                            timeout.as_secs_f64(),
                            missing.join(", ")
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(err(format!("accept: {e}"))),
            }
        }
        let len = u32::try_from(payload.len()).map_err(err)?;
        let mut streams = Vec::new();
        for (r, s) in peers.into_iter().enumerate().skip(1) {
            let mut s = s.expect("every peer arrived");
            s.write_all(MAGIC).map_err(err)?;
            s.write_all(&len.to_le_bytes()).map_err(err)?;
            s.write_all(payload).map_err(err)?;
            streams.push((r, Arc::new(Mutex::new(s))));
        }
        Ok((
            payload.to_vec(),
            Links {
                rank,
                streams,
                closing,
            },
        ))
    } else {
        let target = (addr, port)
            .to_socket_addrs()
            .map_err(|e| err(format!("MASTER_ADDR {addr}:{port}: {e}")))?
            .next()
            .ok_or_else(|| err(format!("MASTER_ADDR {addr} resolves to nothing")))?;
        let mut s = loop {
            match TcpStream::connect_timeout(&target, Duration::from_millis(500)) {
                Ok(s) => break s,
                Err(e) => {
                    if Instant::now() >= deadline {
                        return Err(err(format!(
                            "rank {rank} could not reach rank 0 at {target} within {:.0} s: {e}",
                            timeout.as_secs_f64()
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        };
        let mut hello = Vec::with_capacity(12);
        hello.extend_from_slice(MAGIC);
        hello.extend_from_slice(&(rank as u32).to_le_bytes());
        hello.extend_from_slice(&(world as u32).to_le_bytes());
        s.write_all(&hello).map_err(err)?;
        let mut head = [0u8; 8];
        read_exact_by(&mut s, &mut head, deadline, "rank 0's reply")?;
        if &head[..4] != MAGIC {
            return Err(err("rank 0 answered with something else"));
        }
        let len = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes")) as usize;
        let mut payload = vec![0u8; len];
        read_exact_by(&mut s, &mut payload, deadline, "the payload")?;
        s.set_read_timeout(None).map_err(err)?;
        Ok((
            payload,
            Links {
                rank,
                streams: vec![(0, Arc::new(Mutex::new(s)))],
                closing,
            },
        ))
    }
}

impl Links {
    /// Watches the links from background threads: when a peer's connection
    /// ends without a goodbye, `on_death` gets a message naming the dead
    /// rank (rank 0 also tells the other ranks which one died).
    pub fn monitor(&self, on_death: Arc<dyn Fn(String) + Send + Sync>) {
        let all: Vec<Arc<Mutex<TcpStream>>> = self.streams.iter().map(|(_, s)| s.clone()).collect();
        for (peer, stream) in &self.streams {
            let (peer, me) = (*peer, self.rank);
            let Ok(mut reader) = stream
                .lock()
                .map_err(|_| ())
                .and_then(|s| s.try_clone().map_err(|_| ()))
            else {
                continue;
            };
            let closing = self.closing.clone();
            let on_death = on_death.clone();
            let all = all.clone();
            let _ = std::thread::Builder::new()
                .name(format!("ssl-dist-link-{peer}"))
                .spawn(move || {
                    let mut msg = [0u8; 5];
                    let verdict = match reader.read_exact(&mut msg) {
                        Ok(()) if msg[0] == BYE => None,
                        Ok(()) if msg[0] == DEAD => {
                            let dead = u32::from_le_bytes(msg[1..5].try_into().expect("4 bytes"));
                            Some(format!(
                                "rank {me}: rank {dead} died (its connection to rank 0 closed \
                                 without a goodbye); aborting the job"
                            ))
                        }
                        _ => Some(format!(
                            "rank {me}: rank {peer} died or lost its connection (liveness link \
                             closed without a goodbye); aborting the job"
                        )),
                    };
                    if let Some(m) = verdict {
                        if closing.load(Ordering::SeqCst) {
                            return;
                        }
                        if me == 0 {
                            let mut note = [DEAD, 0, 0, 0, 0];
                            note[1..].copy_from_slice(&(peer as u32).to_le_bytes());
                            for s in &all {
                                if let Ok(mut s) = s.lock() {
                                    let _ = s.write_all(&note);
                                }
                            }
                        }
                        on_death(m);
                    }
                });
        }
    }

    /// An orderly end: says goodbye on every link and closes them.
    pub fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        for (_, s) in &self.streams {
            if let Ok(mut s) = s.lock() {
                let _ = s.write_all(&[BYE, 0, 0, 0, 0]);
                let _ = s.flush();
                let _ = s.shutdown(Shutdown::Write);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;

    fn free_port() -> u16 {
        TcpListener::bind(("127.0.0.1", 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    #[test]
    fn payload_reaches_every_rank_and_a_death_is_named() {
        let port = free_port();
        let world = 3;
        let id: Vec<u8> = (0..128u8).collect();
        // Peers start first: they retry until rank 0 listens.
        let peers: Vec<_> = (1..world)
            .map(|r| {
                std::thread::spawn(move || {
                    rendezvous(r, world, "127.0.0.1", port, None, Duration::from_secs(20)).unwrap()
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let (got0, links0) = rendezvous(
            0,
            world,
            "127.0.0.1",
            port,
            Some(&id),
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(got0, id);
        let mut peer_links = vec![];
        for p in peers {
            let (got, links) = p.join().unwrap();
            assert_eq!(got, id);
            peer_links.push(links);
        }
        let (tx, rx) = channel();
        let tx = Arc::new(Mutex::new(tx));
        let sink =
            |tx: Arc<Mutex<std::sync::mpsc::Sender<String>>>| -> Arc<dyn Fn(String) + Send + Sync> {
                Arc::new(move |m| {
                    let _ = tx.lock().unwrap().send(m);
                })
            };
        links0.monitor(sink(tx.clone()));
        peer_links[0].monitor(sink(tx.clone()));
        // Rank 2 "dies": its socket closes without a goodbye.
        let dead = peer_links.pop().unwrap();
        drop(dead);
        let mut msgs = vec![
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
        ];
        msgs.sort();
        assert!(msgs[0].starts_with("rank 0: rank 2 died"), "{msgs:?}");
        assert!(msgs[1].starts_with("rank 1: rank 2 died"), "{msgs:?}");
        // An orderly end raises nothing.
        peer_links[0].close();
        links0.close();
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
    }

    #[test]
    fn a_missing_rank_times_out_with_its_number() {
        let port = free_port();
        let e = rendezvous(
            0,
            2,
            "127.0.0.1",
            port,
            Some(b"x"),
            Duration::from_millis(300),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("rank(s) 1 never connected"), "{e}");
        let e = rendezvous(
            1,
            2,
            "127.0.0.1",
            free_port(),
            None,
            Duration::from_millis(300),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("could not reach rank 0"), "{e}");
    }
}
