//! The corekv server. With no flags: a single-member cluster serving clients on
//! 127.0.0.1:2379 with its data in ./default.corekv, like `etcd` with no flags.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transparent huge pages off for the process (unless the operator set
/// MIMALLOC_ALLOW_THP): mimalloc asks for them, and with this kernel's
/// `defrag=madvise` a fault on a fresh 2 MiB page zeroes it, and may first
/// compact memory, in whichever executor touched it. Measured with a
/// snapshot save under a put load (docs/performance.md): put p99 during
/// the save 2.7 ms with huge pages, 0.95–1.5 ms without, and base p99
/// 1.2 → 0.8–1.3 ms, at the same throughput.
fn disable_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with integer arguments only; failure leaves THP on.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

fn main() {
    disable_transparent_huge_pages();
    let config = corekv::server::Config::parse();
    let result = config.resolve().and_then(corekv::server::run);
    if let Err(message) = result {
        eprintln!("corekv: error: {message}");
        std::process::exit(1);
    }
}
