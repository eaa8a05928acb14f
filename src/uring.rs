//! Synchronous reads and writes through an io_uring of the caller's own,
//! for code that owns its thread for the duration of the call: the page
//! store (`pagestore::direct`) and the log driver's spinning WAL writes
//! (`runtime::DmaLogFile`, `--experimental-wal-spin-us`).
//!
//! `run_ops` may spin: poll the completion queue, which the kernel fills in
//! shared memory, for a while before sleeping in `io_uring_enter`. On the
//! VMs of docs/performance.md a sleeping CPU woken by another CPU's
//! interrupt costs ~50–100 µs; a CPU that is still running sees the
//! completion at once.

use std::io;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};

/// Reads or writes in flight at once.
pub const ring_entries: u32 = 64;

/// One read or write: a single buffer, or one iovec per page.
pub enum Op {
    Read { buf: *mut u8, len: usize, offset: u64 },
    Write { buf: *const u8, len: usize, offset: u64 },
    Writev { iovecs: *const libc::iovec, count: usize, len: usize, offset: u64 },
}

/// Whether an `io_uring_enter` error only says "try again": EINTR (a
/// signal), EAGAIN or EBUSY (completions to reap first).
fn try_again(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN | libc::EBUSY))
}

/// Runs `ops` with up to `ring_entries` in flight; each must move all its
/// bytes. Never returns while the kernel still holds one of their buffers:
/// after a failed op it stops submitting and waits for those in flight; a
/// wait interrupted by a signal is retried; if waiting itself fails with
/// ops in flight the process aborts (returning would let the kernel write
/// into memory already freed). With a non-zero `spin`, each wait first
/// polls the completion queue for up to `spin` without a system call.
pub fn run_ops(ring: &mut IoUring, fd: i32, ops: &[Op], spin: Duration) -> io::Result<()> {
    let mut next = 0;
    let mut in_flight = 0;
    let mut failure: Option<io::Error> = None;
    while next < ops.len() || in_flight > 0 {
        while next < ops.len() && in_flight < ring_entries as usize && failure.is_none() {
            let entry = match ops[next] {
                Op::Read { buf, len, offset } => {
                    opcode::Read::new(types::Fd(fd), buf, len as u32).offset(offset).build()
                }
                Op::Write { buf, len, offset } => {
                    opcode::Write::new(types::Fd(fd), buf, len as u32).offset(offset).build()
                }
                Op::Writev { iovecs, count, offset, .. } => {
                    opcode::Writev::new(types::Fd(fd), iovecs, count as u32).offset(offset).build()
                }
            };
            // SAFETY: the buffers and iovecs outlive the call, which waits for
            // every pushed entry to complete before returning.
            if unsafe { ring.submission().push(&entry.user_data(next as u64)) }.is_err() {
                // Cannot happen (at most ring_entries are pushed); wait out
                // those in flight and report it.
                failure.get_or_insert(io::Error::other("io_uring submission queue full"));
                break;
            }
            next += 1;
            in_flight += 1;
        }
        if in_flight == 0 {
            break;
        }
        if !spin.is_zero() {
            match ring.submit() {
                Ok(_) => {
                    let start = Instant::now();
                    while ring.completion().is_empty() && start.elapsed() < spin {
                        std::hint::spin_loop();
                    }
                }
                Err(e) if try_again(&e) => {}
                Err(e) => wait_failed(in_flight, e),
            }
        }
        // Reap what has completed; else submit and wait again (the outer
        // loop), retrying after a "try again".
        if ring.completion().is_empty() {
            if let Err(e) = ring.submit_and_wait(1) {
                if !try_again(&e) {
                    wait_failed(in_flight, e);
                }
            }
        }
        for cqe in ring.completion() {
            in_flight -= 1;
            let op = &ops[cqe.user_data() as usize];
            let (wanted, offset, what) = match *op {
                Op::Read { len, offset, .. } => (len, offset, "read"),
                Op::Write { len, offset, .. } | Op::Writev { len, offset, .. } => {
                    (len, offset, "write")
                }
            };
            let result = cqe.result();
            if result < 0 {
                failure.get_or_insert(io::Error::from_raw_os_error(-result));
            } else if result as usize != wanted {
                failure.get_or_insert(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("short {what} at byte {offset}: {result} of {wanted} bytes"),
                ));
            }
        }
    }
    failure.map_or(Ok(()), Err)
}

fn wait_failed(in_flight: usize, e: io::Error) -> ! {
    eprintln!(
        "corekv: fatal: io_uring wait failed with {in_flight} reads or writes in flight: {e}"
    );
    std::process::abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// Writes then reads back through one ring, waiting and spinning, and
    /// reports a short read as an error naming the offset.
    #[test]
    fn ops_move_their_bytes_with_and_without_spinning() {
        let dir = std::env::temp_dir().join(format!("corekv-uring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("file");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let mut ring = IoUring::new(ring_entries).unwrap();
        for (round, spin) in [Duration::ZERO, Duration::from_millis(5)].into_iter().enumerate() {
            let data: Vec<u8> = (0..8192).map(|i| (i + round) as u8).collect();
            let ops = [
                Op::Write { buf: data.as_ptr(), len: 4096, offset: 0 },
                Op::Write { buf: data[4096..].as_ptr(), len: 4096, offset: 4096 },
            ];
            run_ops(&mut ring, file.as_raw_fd(), &ops, spin).unwrap();
            let mut back = vec![0u8; 8192];
            let read = [Op::Read { buf: back.as_mut_ptr(), len: 8192, offset: 0 }];
            run_ops(&mut ring, file.as_raw_fd(), &read, spin).unwrap();
            assert_eq!(back, data, "spin {spin:?}");
            let past_the_end = [Op::Read { buf: back.as_mut_ptr(), len: 4096, offset: 6144 }];
            let e = run_ops(&mut ring, file.as_raw_fd(), &past_the_end, spin).unwrap_err();
            assert!(e.to_string().contains("short read at byte 6144: 2048 of 4096"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
