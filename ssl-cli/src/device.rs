//! `ssl info`: the libtorch in use and what it sees.

pub fn print_info(tuning: &whitening_core::process::ProcessTuning) {
    println!("ssl {}", env!("CARGO_PKG_VERSION"));
    println!("libtorch lib dir: {}", env!("SSL_LIBTORCH_LIB"));
    println!("cuda available: {}", tch::Cuda::is_available());
    println!("cuda devices: {}", tch::Cuda::device_count());
    println!("cudnn available: {}", tch::Cuda::cudnn_is_available());
    println!("cpu threads: {}", tch::get_num_threads());
    println!("cpu runtime: {tuning}");
}
