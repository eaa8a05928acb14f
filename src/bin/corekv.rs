//! The corekv server. With no flags: a single-member cluster serving clients on
//! 127.0.0.1:2379 with its data in ./default.corekv, like `etcd` with no flags.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let config = corekv::server::Config::parse();
    let result = config.resolve().and_then(corekv::server::run);
    if let Err(message) = result {
        eprintln!("corekv: error: {message}");
        std::process::exit(1);
    }
}
