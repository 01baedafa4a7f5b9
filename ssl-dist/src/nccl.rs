//! The NCCL backend (what PyTorch's DDP uses on GPUs), loaded at run time.
//!
//! `libnccl.so.2` is found, in order, at `SSL_NCCL_LIB`, by the dynamic
//! loader's usual search (it is usually already loaded: the pip libtorch's
//! `libtorch_cuda.so` links it), and next to the libtorch this crate was
//! built against (`site-packages/nvidia/nccl/lib`). Rank 0 draws the unique
//! id (`ncclGetUniqueId`) and sends it to the others over the TCP
//! rendezvous at `MASTER_ADDR:MASTER_PORT`; the connections then serve as
//! liveness links (see [`crate::rendezvous`]).
//!
//! Collectives are enqueued on the legacy default CUDA stream (the null
//! stream), which is libtorch's current stream unless the caller changed
//! it, so they are ordered after the backward pass that produced the
//! gradients and before the optimiser step; host-side calls
//! ([`Communicator::all_reduce_sum`], [`Communicator::barrier`]) synchronise
//! the device.
//!
//! Only loading and the rendezvous are exercised on a machine without a
//! GPU; the collective calls need one.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::PathBuf;
use std::time::Duration;

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
use tch::{Device, Kind, Tensor};

use crate::comm::{check_tensor, tensor_bytes, Communicator};
use crate::env::LaunchEnv;
use crate::error::{DistError, Result};
use crate::rendezvous::{rendezvous, Links};

type Comm = *mut c_void;
type Stream = *mut c_void;
const NCCL_UINT8: c_int = 1;
const NCCL_FLOAT32: c_int = 7;
const NCCL_SUM: c_int = 0;

/// `ncclUniqueId`: 128 opaque bytes.
#[repr(C)]
#[derive(Clone, Copy)]
struct UniqueId {
    internal: [u8; 128],
}

struct Api {
    get_version: unsafe extern "C" fn(*mut c_int) -> c_int,
    get_unique_id: unsafe extern "C" fn(*mut UniqueId) -> c_int,
    comm_init_rank: unsafe extern "C" fn(*mut Comm, c_int, UniqueId, c_int) -> c_int,
    all_reduce: unsafe extern "C" fn(
        *const c_void,
        *mut c_void,
        usize,
        c_int,
        c_int,
        Comm,
        Stream,
    ) -> c_int,
    broadcast: unsafe extern "C" fn(
        *const c_void,
        *mut c_void,
        usize,
        c_int,
        c_int,
        Comm,
        Stream,
    ) -> c_int,
    comm_destroy: unsafe extern "C" fn(Comm) -> c_int,
    comm_abort: unsafe extern "C" fn(Comm) -> c_int,
    error_string: unsafe extern "C" fn(c_int) -> *const c_char,
    _lib: Library,
}

fn candidates() -> Vec<String> {
    let mut c = Vec::new();
    if let Ok(p) = std::env::var("SSL_NCCL_LIB") {
        if !p.is_empty() {
            c.push(p);
        }
    }
    c.push("libnccl.so.2".into());
    if let Some(lib) = option_env!("SSL_LIBTORCH_LIB") {
        // <site-packages>/torch/lib -> <site-packages>/nvidia/nccl/lib
        let p = PathBuf::from(lib).join("../../nvidia/nccl/lib/libnccl.so.2");
        c.push(p.display().to_string());
    }
    c
}

impl Api {
    fn load() -> Result<Self> {
        Self::load_from(candidates())
    }

    /// Loads the first of `candidates` that opens.
    fn load_from(candidates: Vec<String>) -> Result<Self> {
        let mut tried = Vec::new();
        let mut found = None;
        for name in candidates {
            // SAFETY: loading NCCL runs only its own initialisers.
            match unsafe { Library::open(Some(&name), RTLD_NOW | RTLD_GLOBAL) } {
                Ok(lib) => {
                    found = Some((lib, name));
                    break;
                }
                Err(e) => tried.push(format!("{name}: {e}")),
            }
        }
        let Some((lib, name)) = found else {
            return Err(DistError::Library(format!(
                "the NCCL backend needs libnccl.so.2, which was not found ({}); the pip torch \
                 ships it under site-packages/nvidia/nccl/lib: set SSL_NCCL_LIB to its path or \
                 add that folder to LD_LIBRARY_PATH",
                tried.join("; ")
            )));
        };
        // SAFETY: each symbol is looked up with NCCL's C signature (nccl.h, 2.x).
        unsafe {
            macro_rules! func {
                ($sym:literal) => {
                    *lib.get(concat!($sym, "\0").as_bytes())
                        .map_err(|e| DistError::Library(format!("{name}: missing {}: {e}", $sym)))?
                };
            }
            Ok(Self {
                get_version: func!("ncclGetVersion"),
                get_unique_id: func!("ncclGetUniqueId"),
                comm_init_rank: func!("ncclCommInitRank"),
                all_reduce: func!("ncclAllReduce"),
                broadcast: func!("ncclBroadcast"),
                comm_destroy: func!("ncclCommDestroy"),
                comm_abort: func!("ncclCommAbort"),
                error_string: func!("ncclGetErrorString"),
                _lib: lib,
            })
        }
    }

    fn describe(&self, rc: c_int) -> String {
        // SAFETY: ncclGetErrorString returns a static NUL-terminated string.
        let s = unsafe { (self.error_string)(rc) };
        if s.is_null() {
            format!("code {rc}")
        } else {
            // SAFETY: non-null static string.
            format!(
                "{} (code {rc})",
                unsafe { CStr::from_ptr(s) }.to_string_lossy()
            )
        }
    }
}

/// The NCCL version of the library that would be used, e.g. `22703` for
/// 2.27.3 (loads the library; needs no GPU).
pub fn nccl_version() -> Result<i32> {
    let api = Api::load()?;
    let mut v: c_int = 0;
    // SAFETY: valid out-pointer.
    let rc = unsafe { (api.get_version)(&mut v) };
    if rc != 0 {
        return Err(DistError::Library(format!(
            "ncclGetVersion: {}",
            api.describe(rc)
        )));
    }
    Ok(v)
}

/// NCCL over all ranks of the launch, one GPU (`cuda:LOCAL_RANK`) per rank.
pub struct Nccl {
    api: Api,
    comm: Comm,
    rank: usize,
    world: usize,
    device: Device,
    links: Links,
}

// SAFETY: an NCCL communicator may be used from any thread as long as calls
// on it are not concurrent; the trainer makes them from one thread, and the
// watchdog's ncclCommAbort is the documented way to unblock a stuck one.
unsafe impl Send for Nccl {}
// SAFETY: as for Send.
unsafe impl Sync for Nccl {}

impl std::fmt::Debug for Nccl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nccl")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

/// Makes `index` the calling thread's current CUDA device (NCCL creates
/// its communicator on the current device) through the CUDA runtime that
/// libtorch already loaded.
fn set_cuda_device(index: usize) -> Result<()> {
    let this = Library::this();
    // SAFETY: cudaSetDevice(int) -> cudaError_t, from the loaded CUDA runtime.
    unsafe {
        let f = this
            .get::<unsafe extern "C" fn(c_int) -> c_int>(b"cudaSetDevice\0")
            .map_err(|_| {
                DistError::Library(
                    "the CUDA runtime is not loaded in this process (a CPU-only libtorch?): \
                     NCCL needs CUDA"
                        .into(),
                )
            })?;
        let rc = f(index as c_int);
        if rc != 0 {
            return Err(DistError::Library(format!(
                "cudaSetDevice({index}) failed with CUDA error {rc}"
            )));
        }
    }
    Ok(())
}

impl Nccl {
    /// Joins the NCCL communicator of the launch described by `env`
    /// (`torchrun` variables), within `timeout` for the rendezvous.
    pub fn init(env: &LaunchEnv, timeout: Duration) -> Result<Self> {
        if !tch::Cuda::is_available() {
            return Err(DistError::Library(
                "the NCCL backend needs CUDA, and libtorch sees no GPU (use --dist mpi on CPUs)"
                    .into(),
            ));
        }
        let gpus = tch::Cuda::device_count() as usize;
        if env.local_rank >= gpus {
            return Err(DistError::Env(format!(
                "LOCAL_RANK {} but this machine has {gpus} GPU(s): start at most one rank per GPU",
                env.local_rank
            )));
        }
        let api = Api::load()?;
        let (addr, port) = env.master()?;
        let mut id = UniqueId { internal: [0; 128] };
        if env.rank == 0 {
            // SAFETY: valid out-pointer to a 128-byte ncclUniqueId.
            let rc = unsafe { (api.get_unique_id)(&mut id) };
            if rc != 0 {
                return Err(DistError::Library(format!(
                    "ncclGetUniqueId: {}",
                    api.describe(rc)
                )));
            }
        }
        let payload = (env.rank == 0).then_some(&id.internal[..]);
        let (bytes, links) = rendezvous(env.rank, env.world_size, &addr, port, payload, timeout)?;
        if bytes.len() != 128 {
            return Err(DistError::Rendezvous(format!(
                "expected a 128-byte NCCL id, got {} bytes",
                bytes.len()
            )));
        }
        id.internal.copy_from_slice(&bytes);
        set_cuda_device(env.local_rank)?;
        let mut comm: Comm = std::ptr::null_mut();
        // SAFETY: valid out-pointer; the id came from rank 0's ncclGetUniqueId.
        let rc = unsafe {
            (api.comm_init_rank)(&mut comm, env.world_size as c_int, id, env.rank as c_int)
        };
        if rc != 0 {
            return Err(DistError::Collective {
                backend: "nccl",
                op: "ncclCommInitRank",
                rank: env.rank,
                detail: api.describe(rc),
            });
        }
        Ok(Self {
            api,
            comm,
            rank: env.rank,
            world: env.world_size,
            device: Device::Cuda(env.local_rank),
            links,
        })
    }

    /// The liveness links of the rendezvous (see [`Links::monitor`]).
    pub fn links(&self) -> &Links {
        &self.links
    }

    fn check(&self, op: &'static str, rc: c_int) -> Result<()> {
        if rc == 0 {
            return Ok(());
        }
        Err(DistError::Collective {
            backend: "nccl",
            op,
            rank: self.rank,
            detail: self.api.describe(rc),
        })
    }

    fn sync(&self) {
        if let Device::Cuda(i) = self.device {
            tch::Cuda::synchronize(i as i64);
        }
    }
}

impl Communicator for Nccl {
    fn backend(&self) -> &'static str {
        "nccl"
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn device(&self) -> Device {
        self.device
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        let mut t = Tensor::f_from_slice(buf)?.f_to_device(self.device)?;
        self.all_reduce_sum_tensor(&mut t)?;
        let host = t.f_to_device(Device::Cpu)?;
        host.f_copy_data(buf, buf.len())?;
        Ok(())
    }
    fn all_reduce_sum_tensor(&self, t: &mut Tensor) -> Result<()> {
        check_tensor(t, self.device, Some(Kind::Float), "NCCL all-reduce")?;
        let p = t.data_ptr();
        // SAFETY: a contiguous f32 device buffer of numel elements, in place,
        // on the null stream (libtorch's default stream).
        let rc = unsafe {
            (self.api.all_reduce)(
                p,
                p,
                t.numel(),
                NCCL_FLOAT32,
                NCCL_SUM,
                self.comm,
                std::ptr::null_mut(),
            )
        };
        self.check("ncclAllReduce", rc)
    }
    fn broadcast_bytes(&self, buf: &mut [u8], root: usize) -> Result<()> {
        let mut t = Tensor::f_from_slice(buf)?.f_to_device(self.device)?;
        self.broadcast_tensor(&mut t, root)?;
        let host = t.f_to_device(Device::Cpu)?;
        host.f_copy_data_u8(buf, host.numel())?;
        Ok(())
    }
    fn broadcast_tensor(&self, t: &mut Tensor, root: usize) -> Result<()> {
        check_tensor(t, self.device, None, "NCCL broadcast")?;
        let p = t.data_ptr();
        // SAFETY: a contiguous device buffer of that many bytes, in place.
        let rc = unsafe {
            (self.api.broadcast)(
                p,
                p,
                tensor_bytes(t),
                NCCL_UINT8,
                root as c_int,
                self.comm,
                std::ptr::null_mut(),
            )
        };
        self.check("ncclBroadcast", rc)
    }
    fn barrier(&self) -> Result<()> {
        let mut one = Tensor::f_ones([1], (Kind::Float, self.device))?;
        self.all_reduce_sum_tensor(&mut one)?;
        self.sync();
        Ok(())
    }
    fn abort(&self, code: i32) -> ! {
        // SAFETY: the communicator is valid; abort unblocks pending operations.
        unsafe {
            (self.api.comm_abort)(self.comm);
        }
        std::process::exit(code)
    }
}

impl Drop for Nccl {
    fn drop(&mut self) {
        self.sync();
        self.links.close();
        // SAFETY: the communicator is valid and no operation is pending after the sync.
        unsafe {
            (self.api.comm_destroy)(self.comm);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When no candidate opens, the error names each path tried and both
    /// remedies (`SSL_NCCL_LIB`, the pip torch's folder).
    #[test]
    fn a_missing_nccl_names_every_path_tried_and_the_fix() {
        let names = vec![
            "/nonexistent/libnccl.so.2".to_string(),
            "libnccl-absent.so.9".to_string(),
        ];
        let err = match Api::load_from(names.clone()) {
            Ok(_) => panic!("loaded a library that does not exist"),
            Err(e) => e.to_string(),
        };
        for needle in names.iter().map(String::as_str).chain([
            "SSL_NCCL_LIB",
            "site-packages/nvidia/nccl/lib",
            "LD_LIBRARY_PATH",
        ]) {
            assert!(err.contains(needle), "missing {needle:?} in: {err}");
        }
    }

    /// `SSL_NCCL_LIB` is tried first, then the loader's search, then the
    /// folder beside the libtorch this crate was built against.
    #[test]
    fn candidates_start_with_ssl_nccl_lib() {
        let c = candidates();
        let first = std::env::var("SSL_NCCL_LIB")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "libnccl.so.2".into());
        assert_eq!(c[0], first);
        assert!(c.iter().any(|p| p == "libnccl.so.2"), "{c:?}");
        if let Some(lib) = option_env!("SSL_LIBTORCH_LIB") {
            assert!(
                c.last().is_some_and(
                    |p| p.starts_with(lib) && p.ends_with("../../nvidia/nccl/lib/libnccl.so.2")
                ),
                "{c:?}"
            );
        }
    }

    /// A CUDA libtorch brings NCCL (the pip torch links `libtorch_cuda.so`
    /// against the `nvidia-nccl` wheel it depends on), so NCCL must load,
    /// without a GPU, and report a 2.x version; where the wheel's metadata
    /// sits beside the libtorch, the version is the wheel's. Ignored (not
    /// run) with a CPU-only libtorch, where there is no NCCL to find.
    #[test]
    #[cfg_attr(not(ssl_libtorch_cuda), ignore = "CPU-only libtorch: no NCCL to load")]
    fn nccl_loads_beside_a_cuda_libtorch() {
        let v = nccl_version().unwrap_or_else(|e| panic!("this libtorch has CUDA: {e}"));
        assert!((20000..30000).contains(&v), "NCCL version code {v}");
        let Some(lib) = option_env!("SSL_LIBTORCH_LIB") else {
            return;
        };
        // <site-packages>/torch/lib -> <site-packages>/nvidia_nccl_cu*-X.Y.Z.dist-info
        let site = PathBuf::from(lib).join("../..");
        let wheel = std::fs::read_dir(&site).ok().and_then(|entries| {
            entries.flatten().find_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let rest = name.strip_prefix("nvidia_nccl_cu")?;
                let version = rest.split_once('-')?.1.strip_suffix(".dist-info")?;
                let parts: Vec<i32> = version
                    .split('.')
                    .map(str::parse)
                    .collect::<Result<_, _>>()
                    .ok()?;
                match parts[..] {
                    [major, minor, patch, ..] => Some((name, major * 10000 + minor * 100 + patch)),
                    _ => None,
                }
            })
        });
        if let Some((name, code)) = wheel {
            assert_eq!(
                v, code,
                "NCCL reports {v}, the wheel beside libtorch is {name}"
            );
        }
    }
}
