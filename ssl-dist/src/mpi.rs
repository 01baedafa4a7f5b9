//! The Open MPI backend, loaded at run time (`dlopen`), so the `ssl` binary
//! builds and runs where MPI is not installed.
//!
//! Open MPI's ABI: a handle (`MPI_Comm`, `MPI_Datatype`, `MPI_Op`) is the
//! address of a global object exported by `libmpi.so.40`
//! (`ompi_mpi_comm_world`, `ompi_mpi_float`, `ompi_mpi_byte`,
//! `ompi_mpi_op_sum`), obtained with `dlsym`; `MPI_IN_PLACE` is `(void *) 1`.
//! MPICH (and its derivatives: Intel MPI, MVAPICH, Cray MPICH) encodes
//! handles as integers instead and is **not supported**; it is recognised
//! by the missing `ompi_*` symbols and refused with that explanation.
//!
//! The library is opened with `RTLD_NOW | RTLD_GLOBAL`, so the plugins Open
//! MPI itself opens (its MCA components) resolve their symbols against it.

#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};

use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
use tch::{Device, Kind, Tensor};

use crate::comm::{check_tensor, tensor_bytes, Communicator};
use crate::error::{DistError, Result};

type Handle = *mut c_void;
/// Open MPI's `MPI_IN_PLACE` is the address 1.
const MPI_IN_PLACE: *mut c_void = std::ptr::without_provenance_mut(1);
const MPI_THREAD_MULTIPLE: c_int = 3;
const MPI_MAX_ERROR_STRING: usize = 256;

/// Names tried in order (after `SSL_MPI_LIB`, a path or a name).
const CANDIDATES: &[&str] = &["libmpi.so.40", "libmpi.so"];

const INSTALL: &str = "install Open MPI: on Debian/Ubuntu `apt-get install openmpi-bin \
                       libopenmpi-dev` (`cargo xtask setup` does it when run as root), or set \
                       SSL_MPI_LIB to the path of Open MPI's libmpi.so.40";

struct Api {
    init_thread: unsafe extern "C" fn(*mut c_int, *mut c_void, c_int, *mut c_int) -> c_int,
    initialized: unsafe extern "C" fn(*mut c_int) -> c_int,
    finalized: unsafe extern "C" fn(*mut c_int) -> c_int,
    comm_rank: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    comm_size: unsafe extern "C" fn(Handle, *mut c_int) -> c_int,
    allreduce:
        unsafe extern "C" fn(*const c_void, *mut c_void, c_int, Handle, Handle, Handle) -> c_int,
    bcast: unsafe extern "C" fn(*mut c_void, c_int, Handle, c_int, Handle) -> c_int,
    barrier: unsafe extern "C" fn(Handle) -> c_int,
    finalize: unsafe extern "C" fn() -> c_int,
    abort: unsafe extern "C" fn(Handle, c_int) -> c_int,
    error_string: unsafe extern "C" fn(c_int, *mut c_char, *mut c_int) -> c_int,
    comm_world: Handle,
    float: Handle,
    byte: Handle,
    op_sum: Handle,
    /// Keeps the library (and so every pointer above) loaded.
    _lib: Library,
}

/// Open MPI over `MPI_COMM_WORLD`.
pub struct Mpi {
    api: Api,
    rank: usize,
    world: usize,
    thread_level: i32,
    we_initialized: bool,
}

// SAFETY: the handles are addresses of Open MPI's immutable global objects and
// the functions are plain C entry points; MPI is initialised with
// MPI_THREAD_MULTIPLE (the level obtained is recorded), and the trainer makes
// its collectives from one thread (the watchdog only calls MPI_Abort).
unsafe impl Send for Mpi {}
// SAFETY: as for Send.
unsafe impl Sync for Mpi {}

impl std::fmt::Debug for Mpi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mpi")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("thread_level", &self.thread_level)
            .finish_non_exhaustive()
    }
}

fn open_library() -> Result<(Library, String)> {
    let mut tried = Vec::new();
    let from_env = std::env::var("SSL_MPI_LIB").ok().filter(|s| !s.is_empty());
    for name in from_env
        .iter()
        .map(String::as_str)
        .chain(CANDIDATES.iter().copied())
    {
        // SAFETY: loading Open MPI runs its library constructors, which only
        // set up its own state.
        match unsafe { Library::open(Some(name), RTLD_NOW | RTLD_GLOBAL) } {
            Ok(lib) => return Ok((lib, name.to_string())),
            Err(e) => tried.push(format!("{name}: {e}")),
        }
    }
    Err(DistError::Library(format!(
        "the MPI backend needs Open MPI's libmpi.so.40, which was not found ({}); {INSTALL}",
        tried.join("; ")
    )))
}

impl Api {
    fn load() -> Result<Self> {
        let (lib, name) = open_library()?;
        // SAFETY: each symbol is looked up with the C signature of the MPI
        // standard (for functions) or as the address of Open MPI's global
        // object (for handles); the library stays loaded in `_lib`.
        unsafe {
            let handle = |sym: &str| -> Result<Handle> {
                let c = format!("{sym}\0");
                lib.get::<*mut c_void>(c.as_bytes())
                    .map(|s| s.into_raw())
                    .map_err(|_| {
                        DistError::Library(format!(
                            "{name} has no `{sym}`: it is not Open MPI. MPICH-family libraries \
                             (MPICH, Intel MPI, MVAPICH) use integer handles, an ABI this backend \
                             does not support; {INSTALL}"
                        ))
                    })
            };
            let comm_world = handle("ompi_mpi_comm_world")?;
            let float = handle("ompi_mpi_float")?;
            let byte = handle("ompi_mpi_byte")?;
            let op_sum = handle("ompi_mpi_op_sum")?;
            macro_rules! func {
                ($sym:literal) => {
                    *lib.get(concat!($sym, "\0").as_bytes())
                        .map_err(|e| DistError::Library(format!("{name}: missing {}: {e}", $sym)))?
                };
            }
            Ok(Self {
                init_thread: func!("MPI_Init_thread"),
                initialized: func!("MPI_Initialized"),
                finalized: func!("MPI_Finalized"),
                comm_rank: func!("MPI_Comm_rank"),
                comm_size: func!("MPI_Comm_size"),
                allreduce: func!("MPI_Allreduce"),
                bcast: func!("MPI_Bcast"),
                barrier: func!("MPI_Barrier"),
                finalize: func!("MPI_Finalize"),
                abort: func!("MPI_Abort"),
                error_string: func!("MPI_Error_string"),
                comm_world,
                float,
                byte,
                op_sum,
                _lib: lib,
            })
        }
    }
}

/// Largest element count of one MPI call (`int` counts).
const MAX_COUNT: usize = i32::MAX as usize;

impl Mpi {
    /// Loads Open MPI and initialises it (`MPI_Init_thread`, unless the
    /// process already did).
    pub fn init() -> Result<Self> {
        let api = Api::load()?;
        let mut flag: c_int = 0;
        let mut provided: c_int = 0;
        let mut we_initialized = false;
        // SAFETY: C calls with valid out-pointers; argc/argv may be null (MPI-2).
        unsafe {
            (api.initialized)(&mut flag);
            if flag == 0 {
                let rc = (api.init_thread)(
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                    MPI_THREAD_MULTIPLE,
                    &mut provided,
                );
                if rc != 0 {
                    return Err(DistError::Library(format!(
                        "MPI_Init_thread failed with code {rc} (is this process started by mpirun?)"
                    )));
                }
                we_initialized = true;
            }
        }
        let (mut rank, mut world): (c_int, c_int) = (0, 0);
        // SAFETY: MPI is initialised; the handle is MPI_COMM_WORLD.
        unsafe {
            (api.comm_rank)(api.comm_world, &mut rank);
            (api.comm_size)(api.comm_world, &mut world);
        }
        Ok(Self {
            api,
            rank: rank as usize,
            world: world as usize,
            thread_level: provided,
            we_initialized,
        })
    }

    fn check(&self, op: &'static str, rc: c_int) -> Result<()> {
        if rc == 0 {
            return Ok(());
        }
        let mut buf = [0 as c_char; MPI_MAX_ERROR_STRING + 1];
        let mut len: c_int = 0;
        // SAFETY: the buffer holds MPI_MAX_ERROR_STRING characters plus a NUL.
        let detail = unsafe {
            (self.api.error_string)(rc, buf.as_mut_ptr(), &mut len);
            CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
        };
        Err(DistError::Collective {
            backend: "mpi",
            op,
            rank: self.rank,
            detail: format!("{detail} (code {rc})"),
        })
    }

    fn bcast_raw(&self, ptr: *mut u8, bytes: usize, root: usize) -> Result<()> {
        if root >= self.world {
            return Err(DistError::Invalid(format!(
                "broadcast root {root} is outside a world of {}",
                self.world
            )));
        }
        let mut off = 0;
        while off < bytes {
            let n = (bytes - off).min(MAX_COUNT);
            // SAFETY: `ptr[off..off + n]` lies in the caller's buffer.
            let rc = unsafe {
                (self.api.bcast)(
                    ptr.add(off).cast(),
                    n as c_int,
                    self.api.byte,
                    root as c_int,
                    self.api.comm_world,
                )
            };
            self.check("MPI_Bcast", rc)?;
            off += n;
        }
        Ok(())
    }

    fn allreduce_raw(&self, ptr: *mut f32, len: usize) -> Result<()> {
        let mut off = 0;
        while off < len {
            let n = (len - off).min(MAX_COUNT);
            // SAFETY: `ptr[off..off + n]` lies in the caller's buffer; in place.
            let rc = unsafe {
                (self.api.allreduce)(
                    MPI_IN_PLACE,
                    ptr.add(off).cast(),
                    n as c_int,
                    self.api.float,
                    self.api.op_sum,
                    self.api.comm_world,
                )
            };
            self.check("MPI_Allreduce", rc)?;
            off += n;
        }
        Ok(())
    }
}

impl Communicator for Mpi {
    fn backend(&self) -> &'static str {
        "mpi"
    }
    fn rank(&self) -> usize {
        self.rank
    }
    fn world_size(&self) -> usize {
        self.world
    }
    fn device(&self) -> Device {
        Device::Cpu
    }
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        self.allreduce_raw(buf.as_mut_ptr(), buf.len())
    }
    fn all_reduce_sum_tensor(&self, t: &mut Tensor) -> Result<()> {
        check_tensor(t, Device::Cpu, Some(Kind::Float), "MPI all-reduce")?;
        self.allreduce_raw(t.data_ptr().cast(), t.numel())
    }
    fn broadcast_bytes(&self, buf: &mut [u8], root: usize) -> Result<()> {
        self.bcast_raw(buf.as_mut_ptr(), buf.len(), root)
    }
    fn broadcast_tensor(&self, t: &mut Tensor, root: usize) -> Result<()> {
        check_tensor(t, Device::Cpu, None, "MPI broadcast")?;
        self.bcast_raw(t.data_ptr().cast(), tensor_bytes(t), root)
    }
    fn barrier(&self) -> Result<()> {
        // SAFETY: MPI is initialised.
        let rc = unsafe { (self.api.barrier)(self.api.comm_world) };
        self.check("MPI_Barrier", rc)
    }
    fn abort(&self, code: i32) -> ! {
        // SAFETY: MPI is initialised; MPI_Abort ends every rank of the job.
        unsafe {
            (self.api.abort)(self.api.comm_world, code);
        }
        std::process::exit(code)
    }
}

impl Drop for Mpi {
    fn drop(&mut self) {
        if !self.we_initialized {
            return;
        }
        let mut done: c_int = 0;
        // SAFETY: MPI was initialised by us; finalise it once.
        unsafe {
            (self.api.finalized)(&mut done);
            if done == 0 {
                (self.api.finalize)();
            }
        }
    }
}
