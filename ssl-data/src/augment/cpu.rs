//! Run-time choice of AVX2 code for the hot loops of the augmentations.
//!
//! The kernels are plain Rust written so that the compiler vectorises them;
//! [`avx2_dispatch!`] compiles a kernel a second time with AVX2 enabled
//! (twice the vector width) and calls that copy on CPUs that have it. Both
//! copies are the same source: integer arithmetic is exact in any width,
//! and float operations are the IEEE operations written (Rust never fuses a
//! multiply and an add into an FMA, and FMA is not enabled), so they give
//! the same bytes. The unit tests run both copies.

/// Whether to call the AVX2 copies: the CPU has AVX2 (checked once by
/// `std`, then cached) and, in unit tests, the thread did not ask for the
/// portable copies.
#[inline]
pub(crate) fn use_avx2() -> bool {
    #[cfg(test)]
    if PORTABLE.with(|p| p.get()) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(test)]
thread_local! {
    /// In unit tests: run the portable copies on this thread.
    pub(crate) static PORTABLE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// `avx2_dispatch!(fn name(a: A, ..) -> R => kernel)` defines `name`, which
/// calls `kernel(a, ..)`: a copy compiled with AVX2 when [`use_avx2`], the
/// portable one otherwise. `kernel` must be `#[inline(always)]`, so that
/// the copy is compiled inside the AVX2 function.
macro_rules! avx2_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $kernel:path) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $kernel($($arg),*)
                }
                if $crate::augment::cpu::use_avx2() {
                    // SAFETY: the CPU supports AVX2 (checked just above), the
                    // only requirement of a function compiled with it enabled.
                    #[allow(unsafe_code)]
                    return unsafe { avx2($($arg),*) };
                }
            }
            $kernel($($arg),*)
        }
    };
}
pub(crate) use avx2_dispatch;
