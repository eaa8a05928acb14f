//! The corekv server. With no flags: a single-member cluster serving clients on
//! 127.0.0.1:2379 with its data in ./default.corekv, like `etcd` with no flags.

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // A panic on any thread stops the member (as etcd's does), instead of
    // leaving it serving without that thread: a core that stopped would
    // strand the connections handed to it, a checkpoint thread that stopped
    // would leave changes piling up in memory. A restart recovers from the
    // WAL and the page store.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("corekv: fatal: a thread panicked; stopping the member");
        std::process::abort();
    }));
    let config = corekv::server::Config::parse();
    let result = config.resolve().and_then(corekv::server::run);
    if let Err(message) = result {
        eprintln!("corekv: error: {message}");
        std::process::exit(1);
    }
}
