//! corekvctl: etcdctl's commands on corekv's native protocol.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = corekv::ctl::main_with(
        std::env::args_os().collect(),
        &mut std::io::stdin(),
        &mut std::io::stdout(),
    );
    std::process::exit(code);
}
