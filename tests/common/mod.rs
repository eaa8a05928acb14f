//! Helpers for tests that run the real binaries: free loopback ports, a
//! corekv member in a temporary data dir, and its process killed with SIGKILL.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use corekv::client::{wait_ready, Client};

/// A port nobody listens on now (bound and released; the kernel does not hand
/// it out again at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn temp_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("corekv-test-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts corekv on `data_dir` with `args`, expecting it to refuse: waits up
/// to 20 s for it to exit with a failure, and answers what it logged.
pub fn refused_start(data_dir: &Path, args: &[&str], log: &Path) -> String {
    let mut child =
        corekv_command(data_dir, free_port(), free_port(), log).args(args).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "corekv started; it should have refused:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    std::fs::read_to_string(log).unwrap()
}

pub struct Member {
    pub child: Child,
    pub endpoint: String,
    pub data_dir: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
    pub log: PathBuf,
    /// Extra flags, kept across restarts.
    pub args: Vec<String>,
}

pub fn corekv_command(data_dir: &Path, client_port: u16, peer_port: u16, log: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_corekv"));
    command
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen-client-urls")
        .arg(format!("http://127.0.0.1:{client_port}"))
        .arg("--listen-peer-urls")
        .arg(format!("http://127.0.0.1:{peer_port}"))
        .arg("--wal-segment-bytes")
        .arg(corekv::limits::wal_segment_bytes_min.to_string())
        .arg("--cores")
        .arg("2")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap());
    command
}

impl Member {
    /// Starts a member on `data_dir` and waits until it answers.
    pub fn start(data_dir: &Path) -> Member {
        Member::start_with(data_dir, &[])
    }

    /// Starts a member with extra flags (kept across restarts).
    pub fn start_with(data_dir: &Path, args: &[&str]) -> Member {
        let (client_port, peer_port) = (free_port(), free_port());
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Member::start_on(data_dir, client_port, peer_port, args)
    }

    pub fn start_on(
        data_dir: &Path,
        client_port: u16,
        peer_port: u16,
        args: Vec<String>,
    ) -> Member {
        let log = data_dir.with_extension("log");
        let child = corekv_command(data_dir, client_port, peer_port, &log)
            .args(&args)
            .spawn()
            .expect("start corekv");
        let endpoint = format!("127.0.0.1:{client_port}");
        let mut member = Member {
            child,
            endpoint,
            data_dir: data_dir.to_path_buf(),
            client_port,
            peer_port,
            log,
            args,
        };
        if let Err(e) = wait_ready(&member.endpoint, Duration::from_secs(20)) {
            let _ = member.child.kill();
            panic!("corekv did not start: {e}; log:\n{}", member.log_text());
        }
        member
    }

    pub fn client(&self) -> Client {
        Client::connect(std::slice::from_ref(&self.endpoint), Duration::from_secs(5))
            .expect("connect")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Restarts on the same data dir and ports.
    pub fn restart(&mut self) {
        self.kill9();
        let fresh = Member::start_on(
            &self.data_dir.clone(),
            self.client_port,
            self.peer_port,
            self.args.clone(),
        );
        drop(std::mem::replace(self, fresh));
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fails loudly when a program the tests need is missing (.ci/run installs it).
pub fn require_program(name: &str) -> PathBuf {
    let paths = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&paths) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{name} is not installed: run `apt-get install -y etcd-server etcd-client` (.ci/run does)"
    );
}
