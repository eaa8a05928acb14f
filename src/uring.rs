//! Reads and writes through an io_uring of the caller's own, outside
//! glommio's rings: `run_ops` (synchronous batches, for the page store,
//! `pagestore::direct`) and `PolledWrite` (one write whose completion the
//! caller polls for, reading the completion queue the kernel fills in
//! shared memory without a system call: the log driver's WAL writes away
//! from the disk's interrupt CPU, `runtime::DmaLogFile`). On the VMs of
//! docs/performance.md a sleeping CPU woken by another CPU's interrupt
//! costs ~50–100 µs; a CPU that is still running sees the completion at
//! once.

use std::io;
use std::time::{Duration, Instant};

use io_uring::{opcode, types, IoUring};

/// Reads or writes in flight at once.
pub const ring_entries: u32 = 64;

/// One read or write: a single buffer, or one iovec per page.
pub enum Op {
    Read { buf: *mut u8, len: usize, offset: u64 },
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
/// into memory already freed).
pub fn run_ops(ring: &mut IoUring, fd: i32, ops: &[Op]) -> io::Result<()> {
    let mut next = 0;
    let mut in_flight = 0;
    let mut failure: Option<io::Error> = None;
    while next < ops.len() || in_flight > 0 {
        while next < ops.len() && in_flight < ring_entries as usize && failure.is_none() {
            let entry = match ops[next] {
                Op::Read { buf, len, offset } => {
                    opcode::Read::new(types::Fd(fd), buf, len as u32).offset(offset).build()
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
        // After a "try again": reap what has completed, then submit and
        // wait again (the outer loop).
        enter(ring, 1, in_flight);
        for cqe in ring.completion() {
            in_flight -= 1;
            let op = &ops[cqe.user_data() as usize];
            let (wanted, offset, what) = match *op {
                Op::Read { len, offset, .. } => (len, offset, "read"),
                Op::Writev { len, offset, .. } => (len, offset, "write"),
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

/// Submits what is queued and waits for `want` completions (0: none),
/// with `in_flight` operations out; a "try again" returns at once (the
/// caller reaps and comes back). Any other failure aborts the process:
/// returning would let the kernel use buffers already freed.
fn enter(ring: &mut IoUring, want: usize, in_flight: usize) {
    if let Err(e) = ring.submit_and_wait(want) {
        if !try_again(&e) {
            eprintln!(
                "corekv: fatal: io_uring wait failed with {in_flight} reads or writes in flight: {e}"
            );
            std::process::abort();
        }
    }
}

/// A ring for `PolledWrite`s: where the kernel allows (5.19 and later),
/// one whose completions do not interrupt the polling thread. By default a
/// completion finished by another CPU (the O_DSYNC flush's kernel worker)
/// is posted by sending the submitting thread an interrupt; here the
/// kernel only raises a flag in the shared ring (IORING_SETUP_COOP_TASKRUN
/// and TASKRUN_FLAG), and `poll` enters the kernel to post it when it sees
/// the flag. A thread that sleeps in `wait` is still woken. On the VMs of
/// docs/performance.md that took a lone put's floor from ~245 to ~213 µs
/// p50 (`examples/put1_floor`).
pub fn polling_ring(entries: u32) -> io::Result<IoUring> {
    IoUring::builder()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .build(entries)
        .or_else(|_| IoUring::new(entries))
}

/// `PolledWrite`'s completion, told from any other.
const polled_write_tag: u64 = 0x706f6c6c; // "poll"

/// One write in flight on a ring the caller owns, waited for by polling
/// (`poll`, `spin`) or by sleeping (`wait`). Dropped before it completed,
/// it waits for it: the kernel may still be reading the buffer.
pub struct PolledWrite {
    ring: Option<IoUring>,
    len: usize,
    offset: u64,
}

impl PolledWrite {
    /// Submits a write of `len` bytes from `buf` at `offset` of `fd` on
    /// `ring`. On error nothing is in flight, and the ring is closed (an
    /// entry left in it unsubmitted must never go out later).
    ///
    /// # Safety
    /// - `buf..buf + len` must stay valid until the write is reaped: `poll`
    ///   or `spin` returned Some, `wait` returned, or the PolledWrite was
    ///   dropped.
    /// - `ring` must have nothing else queued or in flight (`poll` takes
    ///   only this write's completion, but another buffer's write could
    ///   still be in flight when this one is reaped).
    pub unsafe fn submit(
        mut ring: IoUring,
        fd: i32,
        buf: *const u8,
        len: usize,
        offset: u64,
    ) -> io::Result<PolledWrite> {
        let entry = opcode::Write::new(types::Fd(fd), buf, len as u32)
            .offset(offset)
            .build()
            .user_data(polled_write_tag);
        // SAFETY: the caller keeps the buffer valid until the write is reaped.
        if unsafe { ring.submission().push(&entry) }.is_err() {
            return Err(io::Error::other("io_uring submission queue full"));
        }
        for _ in 0..3 {
            match ring.submit() {
                Ok(1) => return Ok(PolledWrite { ring: Some(ring), len, offset }),
                Ok(_) => return Err(io::Error::other("io_uring took no entry")),
                Err(e) if try_again(&e) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other("io_uring kept refusing the entry (try again)"))
    }

    /// The write's result and the ring, if it has completed (a system call
    /// only when the kernel flags a completion to post: `polling_ring`).
    pub fn poll(&mut self) -> Option<(io::Result<()>, IoUring)> {
        let ring = self.ring.as_mut().expect("not reaped yet");
        if ring.completion().is_empty() && ring.submission().taskrun() {
            enter(ring, 0, 1);
        }
        // Anything else is not ours (none, as `submit` requires): skipped.
        let cqe = ring.completion().find(|cqe| cqe.user_data() == polled_write_tag)?;
        let result = cqe.result();
        let ring = self.ring.take().expect("checked above");
        let outcome = if result < 0 {
            Err(io::Error::from_raw_os_error(-result))
        } else if result as usize != self.len {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write at byte {}: {result} of {} bytes", self.offset, self.len),
            ))
        } else {
            Ok(())
        };
        Some((outcome, ring))
    }

    /// Polls for up to `spin`.
    pub fn spin(&mut self, spin: Duration) -> Option<(io::Result<()>, IoUring)> {
        let start = Instant::now();
        loop {
            if let Some(done) = self.poll() {
                return Some(done);
            }
            if start.elapsed() >= spin {
                return None;
            }
            std::hint::spin_loop();
        }
    }

    /// Sleeps in the kernel until the write completes.
    pub fn wait(mut self) -> (io::Result<()>, IoUring) {
        self.sleep_until_done()
    }

    fn sleep_until_done(&mut self) -> (io::Result<()>, IoUring) {
        loop {
            if let Some(done) = self.poll() {
                return done;
            }
            enter(self.ring.as_mut().expect("not reaped yet"), 1, 1);
        }
    }
}

impl Drop for PolledWrite {
    fn drop(&mut self) {
        if self.ring.is_some() {
            // Nobody is left to tell how it went: only wait it out.
            let _ = self.sleep_until_done();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// A batch of writes then reads back through one ring, and a short
    /// read reported as an error naming the offset.
    #[test]
    fn ops_move_their_bytes_or_say_which_did_not() {
        let (dir, file) = scratch_file("ops");
        let mut ring = IoUring::new(ring_entries).unwrap();
        let data: Vec<u8> = (0..8192).map(|i| i as u8).collect();
        let iovecs: Vec<libc::iovec> = data
            .chunks(4096)
            .map(|c| libc::iovec { iov_base: c.as_ptr() as *mut libc::c_void, iov_len: c.len() })
            .collect();
        let write = [Op::Writev { iovecs: iovecs.as_ptr(), count: 2, len: 8192, offset: 0 }];
        run_ops(&mut ring, file.as_raw_fd(), &write).unwrap();
        let mut back = vec![0u8; 8192];
        let read = [Op::Read { buf: back.as_mut_ptr(), len: 8192, offset: 0 }];
        run_ops(&mut ring, file.as_raw_fd(), &read).unwrap();
        assert_eq!(back, data);
        let past_the_end = [Op::Read { buf: back.as_mut_ptr(), len: 4096, offset: 6144 }];
        let e = run_ops(&mut ring, file.as_raw_fd(), &past_the_end).unwrap_err();
        assert!(e.to_string().contains("short read at byte 6144: 2048 of 4096"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Polled, spun for, waited for or dropped in flight, a write lands
    /// whole; a failed one says why, and the ring comes back each time.
    #[test]
    fn a_polled_write_lands_however_it_is_waited_for() {
        let (dir, file) = scratch_file("polled");
        let fd = file.as_raw_fd();
        // A ring whose completions only raise a flag, on kernels with it.
        let mut ring = polling_ring(2).unwrap();
        let pages: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i + 1; 4096]).collect();
        for (i, page) in pages.iter().enumerate() {
            let offset = i as u64 * 4096;
            // SAFETY: `page` outlives every way the write is reaped below.
            let mut write =
                unsafe { PolledWrite::submit(ring, fd, page.as_ptr(), 4096, offset) }.unwrap();
            ring = match i {
                0 => loop {
                    if let Some((result, ring)) = write.poll() {
                        result.unwrap();
                        break ring;
                    }
                },
                1 => match write.spin(Duration::from_secs(5)) {
                    Some((result, ring)) => {
                        result.unwrap();
                        ring
                    }
                    None => panic!("a 4 KiB write took over 5 s"),
                },
                2 => {
                    let (result, ring) = write.wait();
                    result.unwrap();
                    ring
                }
                _ => {
                    drop(write);
                    polling_ring(2).unwrap()
                }
            };
        }
        let written = std::fs::read(dir.join("file")).unwrap();
        assert_eq!(written, pages.concat());
        // A write on a descriptor opened read-only fails with EBADF.
        let read_only = std::fs::File::open(dir.join("file")).unwrap();
        // SAFETY: `pages[0]` outlives the wait.
        let write =
            unsafe { PolledWrite::submit(ring, read_only.as_raw_fd(), pages[0].as_ptr(), 4096, 0) };
        let (result, _) = write.unwrap().wait();
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EBADF));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn scratch_file(name: &str) -> (std::path::PathBuf, std::fs::File) {
        let dir = std::env::temp_dir().join(format!("corekv-uring-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.join("file"))
            .unwrap();
        (dir, file)
    }
}
