//! What the CPU can run: the one check the workspace's hand-vectorised
//! kernels dispatch on (this crate's `symmetric_eigen`, ssl-eval's linear
//! probe and k-NN prefilter).

/// Whether this CPU runs the AVX2 + FMA kernels: x86-64 with both
/// features, `false` on every other architecture. std's detection caches
/// what the CPU reports; nothing more is kept here.
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
