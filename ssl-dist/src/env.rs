//! The launch environment: who am I, how many are we, where is rank 0.
//!
//! - `mpirun` (Open MPI) sets `OMPI_COMM_WORLD_RANK`, `OMPI_COMM_WORLD_SIZE`
//!   and `OMPI_COMM_WORLD_LOCAL_RANK`.
//! - `torchrun` sets `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR` and
//!   `MASTER_PORT`; SLURM scripts export the same names (`RANK=$SLURM_PROCID`,
//!   `WORLD_SIZE=$SLURM_NTASKS`, `LOCAL_RANK=$SLURM_LOCALID`, `MASTER_ADDR` the
//!   first host of the allocation). `SLURM_*` alone is not read: an
//!   allocation with several tasks does not mean this process was started
//!   as one of them.
//!
//! Open MPI's variables win when both are present (mpirun is the launcher).

use crate::error::{DistError, Result};

/// Which launcher started the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    /// `mpirun` / `mpiexec` from Open MPI.
    Mpirun,
    /// `torchrun` or a SLURM-style script (`RANK`, `WORLD_SIZE`, ...).
    Torchrun,
    /// Neither: one process.
    None,
}

/// Rank, world size and rendezvous address of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchEnv {
    /// Who set the variables.
    pub launcher: Launcher,
    /// This process, `0..world_size`.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// Rank among the processes of this machine (the GPU to use).
    pub local_rank: usize,
    /// `MASTER_ADDR`, where rank 0 listens for the rendezvous.
    pub master_addr: Option<String>,
    /// `MASTER_PORT`.
    pub master_port: Option<u16>,
}

impl LaunchEnv {
    /// One process, no launcher.
    pub fn single() -> Self {
        Self {
            launcher: Launcher::None,
            rank: 0,
            world_size: 1,
            local_rank: 0,
            master_addr: None,
            master_port: None,
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::parse(|k| std::env::var(k).ok())
    }

    /// Parses the variables `get` returns (testable without touching the
    /// process environment).
    pub fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let num = |k: &str| -> Result<Option<usize>> {
            get(k)
                .map(|v| {
                    v.parse::<usize>().map_err(|_| {
                        DistError::Env(format!("{k}={v:?} is not a non-negative integer"))
                    })
                })
                .transpose()
        };
        let master_addr = get("MASTER_ADDR");
        let master_port = get("MASTER_PORT")
            .map(|v| {
                v.parse::<u16>()
                    .map_err(|_| DistError::Env(format!("MASTER_PORT={v:?} is not a TCP port")))
            })
            .transpose()?;
        let (launcher, rank, world, local) = if let Some(world) = num("OMPI_COMM_WORLD_SIZE")? {
            let rank = num("OMPI_COMM_WORLD_RANK")?.ok_or_else(|| {
                DistError::Env("OMPI_COMM_WORLD_SIZE is set but OMPI_COMM_WORLD_RANK is not".into())
            })?;
            let local = num("OMPI_COMM_WORLD_LOCAL_RANK")?.unwrap_or(0);
            (Launcher::Mpirun, rank, world, local)
        } else if let Some(world) = num("WORLD_SIZE")? {
            let rank = num("RANK")?.ok_or_else(|| {
                DistError::Env(
                    "WORLD_SIZE is set but RANK is not (torchrun sets both; a SLURM script \
                     exports RANK=$SLURM_PROCID)"
                        .into(),
                )
            })?;
            let local = num("LOCAL_RANK")?.unwrap_or(0);
            (Launcher::Torchrun, rank, world, local)
        } else {
            return Ok(Self {
                master_addr,
                master_port,
                ..Self::single()
            });
        };
        if world == 0 {
            return Err(DistError::Env("the world size is 0".into()));
        }
        if rank >= world {
            return Err(DistError::Env(format!(
                "rank {rank} is outside a world of {world} processes"
            )));
        }
        Ok(Self {
            launcher,
            rank,
            world_size: world,
            local_rank: local,
            master_addr,
            master_port,
        })
    }

    /// `MASTER_ADDR:MASTER_PORT`, required by the TCP rendezvous.
    pub fn master(&self) -> Result<(String, u16)> {
        match (&self.master_addr, self.master_port) {
            (Some(a), Some(p)) => Ok((a.clone(), p)),
            _ => Err(DistError::Env(
                "MASTER_ADDR and MASTER_PORT must name where rank 0 listens (torchrun sets them; \
                 e.g. MASTER_ADDR=127.0.0.1 MASTER_PORT=29500 on one machine)"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(vars: &[(&str, &str)]) -> Result<LaunchEnv> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LaunchEnv::parse(|k| m.get(k).cloned())
    }

    #[test]
    fn nothing_set_is_one_process() {
        assert_eq!(parse(&[]).unwrap(), LaunchEnv::single());
    }

    #[test]
    fn torchrun_variables() {
        let e = parse(&[
            ("RANK", "3"),
            ("WORLD_SIZE", "8"),
            ("LOCAL_RANK", "1"),
            ("MASTER_ADDR", "node0"),
            ("MASTER_PORT", "29500"),
        ])
        .unwrap();
        assert_eq!(e.launcher, Launcher::Torchrun);
        assert_eq!((e.rank, e.world_size, e.local_rank), (3, 8, 1));
        assert_eq!(e.master().unwrap(), ("node0".to_string(), 29500));
    }

    #[test]
    fn mpirun_variables_win() {
        let e = parse(&[
            ("OMPI_COMM_WORLD_RANK", "1"),
            ("OMPI_COMM_WORLD_SIZE", "2"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
            ("RANK", "0"),
            ("WORLD_SIZE", "4"),
        ])
        .unwrap();
        assert_eq!(e.launcher, Launcher::Mpirun);
        assert_eq!((e.rank, e.world_size, e.local_rank), (1, 2, 1));
        assert!(e.master().is_err());
    }

    #[test]
    fn bad_values_are_named() {
        let err = parse(&[("WORLD_SIZE", "two"), ("RANK", "0")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("WORLD_SIZE") && err.contains("two"), "{err}");
        let err = parse(&[("WORLD_SIZE", "2")]).unwrap_err().to_string();
        assert!(err.contains("RANK is not"), "{err}");
        let err = parse(&[("WORLD_SIZE", "2"), ("RANK", "2")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("rank 2 is outside"), "{err}");
        let err = parse(&[("MASTER_PORT", "70000")]).unwrap_err().to_string();
        assert!(err.contains("MASTER_PORT"), "{err}");
        let err = parse(&[("WORLD_SIZE", "2"), ("RANK", "1")])
            .unwrap()
            .master()
            .unwrap_err()
            .to_string();
        assert!(err.contains("MASTER_ADDR"), "{err}");
    }
}
