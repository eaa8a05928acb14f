//! The only place that names glommio. It starts one pinned executor per core
//! and implements the seams the rest of corekv uses: disk (`DmaDisk`), network
//! (`Listener`, `Stream`) and clock (`sleep`, `timeout`).
//!
//! PLATFORM.md pitfalls handled here: the poll-ring probe (`probe_dma_reads`),
//! placement bounded by the CPUs actually available, SO_REUSEPORT on every
//! bind (callers check the port is free first).

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use glommio::io::{DmaFile, OpenOptions};
use glommio::{LocalExecutorBuilder, Placement};
use io_uring::IoUring;

use crate::disk::{LogDisk, LogFile};
use crate::uring;

pub type Stream = glommio::net::TcpStream;

/// The CPUs this process may run on (its affinity mask), in order.
pub fn available_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity writes into the zeroed set we pass it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize).filter(|cpu| libc::CPU_ISSET(*cpu, &set)).collect()
    }
}

/// Lets the calling thread run on every CPU the process may use (the main
/// thread's mask): threads started from an executor inherit its single CPU,
/// and background work (checkpoints, snapshots) must not crowd the core it
/// was started from (the log driver's, which moves) while others idle.
pub fn unpin_current_thread() {
    // SAFETY: sched_getaffinity writes into the zeroed set passed, for the
    // main thread (tid = pid); sched_setaffinity reads it, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(libc::getpid(), size, &mut set) == 0 {
            libc::sched_setaffinity(0, size, &set);
        }
    }
}

/// Pins the calling thread to `cpu` (for threads that are not executors,
/// such as loadgen's clients); a failure leaves it where it was.
pub fn pin_current_thread(cpu: usize) {
    // SAFETY: sched_setaffinity reads the set built here, for this thread (0).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Runs `body(core_index)` on `cores` executors, each pinned to one available
/// CPU (round-robin if more cores than CPUs are asked for), and waits for all.
pub fn run_cores<F, Fut>(cores: usize, name: &str, spin: Duration, body: F) -> io::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let mut handles = Vec::with_capacity(cores);
    for (core, cpu) in core_cpus(cores).into_iter().enumerate() {
        let body = body.clone();
        let handle = LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name(&format!("{name}-{core}"))
            .spin_before_park(spin)
            .blocking_thread_pool_placement(glommio::PoolPlacement::Unbound(
                crate::limits::blocking_threads_per_core,
            ))
            .spawn(move || body(core))
            .map_err(io::Error::from)?;
        handles.push(handle);
    }
    for handle in handles {
        handle.join().map_err(io::Error::from)?;
    }
    Ok(())
}

/// Turns transparent huge pages off for the rest of the process's life
/// (unless the operator set MIMALLOC_ALLOW_THP). mimalloc asks for huge
/// pages, and with `defrag=madvise` (common, and this kernel's setting) a
/// fault on a fresh 2 MiB page zeroes it, and may first compact memory, in
/// whichever executor touched it: under a put load with a snapshot save
/// running, put p99 was 2.7 ms with huge pages and 0.9–1.1 ms without, at
/// the same throughput (docs/performance.md, "Snapshots on a large
/// store"). Called once recovery is done, so loading the state runs as it
/// was measured against the restart target (on huge pages, 512× fewer
/// faults), and memory already mapped keeps them.
pub fn disable_transparent_huge_pages() {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        // SAFETY: prctl with integer arguments only; failure leaves THP on.
        unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    }
}

/// Runs a detached task on the current core.
/// Starts a background thread (snapshots) that runs only when a CPU would
/// otherwise idle (SCHED_IDLE): on a busy machine it must not preempt the
/// pinned executors for whole time slices, which shows as request latency.
pub fn spawn_background<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new().name(name.into()).spawn(move || {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sets the calling thread's policy (pid 0); no memory is shared.
        // Failure only leaves the default policy.
        unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
        unpin_current_thread();
        body()
    })
}

/// Starts a background thread (checkpoints) at a low but real priority
/// (nice 10): unlike SCHED_IDLE it still gets a share of a CPU the executors
/// keep busy, so work that bounds the WAL is never starved indefinitely.
pub fn spawn_low_priority<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> io::Result<std::thread::JoinHandle<T>> {
    std::thread::Builder::new().name(name.into()).spawn(move || {
        // SAFETY: sets the calling thread's nice value (who 0 = this thread on
        // Linux); failure only leaves the default priority.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        unpin_current_thread();
        body()
    })
}

pub fn spawn<T: 'static>(future: impl Future<Output = T> + 'static) {
    glommio::spawn_local(future).detach();
}

/// Runs `work` on one of the core's blocking threads (work that waits, such
/// as a read of pages from the disk), while the core goes on.
pub async fn run_blocking<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(work).await
}

pub async fn sleep(duration: Duration) {
    glommio::timer::sleep(duration).await;
}

/// `future`, or None if it takes longer than `duration`.
pub async fn timeout<T>(duration: Duration, future: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(future.await) }, async {
        glommio::timer::sleep(duration).await;
        None
    })
    .await
}

/// Gives other tasks on this core a turn.
pub async fn yield_now() {
    glommio::yield_if_needed().await;
}

/// A listener on `address` for the current core (SO_REUSEPORT: every core
/// binds the same address and the kernel spreads connections).
pub struct Listener(glommio::net::TcpListener);

impl Listener {
    /// SO_REUSEADDR as well as SO_REUSEPORT: without it, connections left in
    /// TIME_WAIT by a killed member stop the restarted one from binding.
    pub fn bind(address: SocketAddr) -> io::Result<Listener> {
        use std::os::fd::{FromRawFd, IntoRawFd};
        let socket = Listener::socket(address)?;
        socket.listen(1024)?;
        // SAFETY: a listening TCP socket we own, handed over exactly once.
        Ok(Listener(unsafe { glommio::net::TcpListener::from_raw_fd(socket.into_raw_fd()) }))
    }

    fn socket(address: SocketAddr) -> io::Result<socket2::Socket> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(address), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&address.into())?;
        Ok(socket)
    }

    /// Whether `bind` would succeed (binds with the same options and lets go).
    pub fn check_bind(address: SocketAddr) -> io::Result<()> {
        Listener::socket(address).map(drop)
    }

    pub async fn accept(&self) -> io::Result<Stream> {
        let stream = self.0.accept().await.map_err(io::Error::from)?;
        stream.set_nodelay(true).map_err(io::Error::from)?;
        Ok(stream)
    }
}

/// The CPU that processed the latest packet `stream` received
/// (SO_INCOMING_CPU), if the kernel recorded one. Over loopback it is the
/// sending client's CPU; over a NIC, the CPU taking the connection's
/// receive queue.
pub fn incoming_cpu(stream: &Stream) -> Option<usize> {
    let mut cpu: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cpu`.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_INCOMING_CPU,
            &mut cpu as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0 && cpu >= 0).then_some(cpu as usize)
}

/// A connection accepted on one core on its way to the core that serves it
/// (a plain file descriptor: glommio streams belong to their executor).
#[derive(Debug)]
pub struct HandedStream(std::os::fd::OwnedFd);

impl HandedStream {
    /// Takes `stream` off this core (or gives it back if its descriptor
    /// cannot be duplicated: out of descriptors).
    pub fn new(stream: Stream) -> Result<HandedStream, Stream> {
        use std::os::fd::FromRawFd;
        // SAFETY: duplicates a descriptor `stream` holds open; the copy is
        // owned below, and closing the original leaves the socket open.
        let copy = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
        if copy < 0 {
            return Err(stream);
        }
        drop(stream);
        // SAFETY: `copy` is a new descriptor nothing else owns.
        Ok(HandedStream(unsafe { std::os::fd::OwnedFd::from_raw_fd(copy) }))
    }

    /// The stream, on the calling core.
    pub fn into_stream(self) -> Stream {
        use std::os::fd::{FromRawFd, IntoRawFd};
        // SAFETY: a connected TCP socket we own, handed over exactly once.
        unsafe { Stream::from_raw_fd(self.0.into_raw_fd()) }
    }
}

/// PLATFORM.md: glommio decides per executor, from the first DMA file it
/// opens, whether the device supports polled I/O, and a wrong guess makes
/// every later DMA read fail with EOPNOTSUPP. Open a written probe file first,
/// and fail loudly if a DMA read still does not work.
pub async fn probe_dma_reads(dir: &Path, core: usize) -> io::Result<()> {
    let path = dir.join(format!(".dma-probe-{core}"));
    let tmp = dir.join(format!(".dma-probe-{core}.tmp"));
    std::fs::write(&tmp, vec![0x5au8; 4096])?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    let file = DmaFile::open(&path).await.map_err(io::Error::from)?;
    let result = file.read_at_aligned(0, 512).await;
    let _ = file.close().await;
    let _ = std::fs::remove_file(&path);
    match result {
        Ok(data) if data.len() == 512 && data.iter().all(|b| *b == 0x5a) => Ok(()),
        Ok(_) => Err(io::Error::other("DMA probe read returned wrong bytes")),
        Err(e) => {
            let e = io::Error::from(e);
            Err(io::Error::new(
                e.kind(),
                format!("DMA reads do not work on this executor ({e}); see PLATFORM.md, poll ring"),
            ))
        }
    }
}

/// The disk seam on glommio DMA files (O_DIRECT, io_uring).
#[derive(Clone, Copy, Debug, Default)]
pub struct DmaDisk;

pub struct DmaLogFile {
    file: Rc<DmaFile>,
    /// `LogFile::set_write_spin`.
    spin: Cell<Duration>,
}

thread_local! {
    /// This thread's own ring for polled WAL writes, while no write holds
    /// it; `Err` once it could not be made (glommio's ring is used then).
    static wal_poll_ring: RefCell<Option<Result<IoUring, ()>>> = const { RefCell::new(None) };
}

/// How often a polled WAL write that outlasted its spin is checked, while
/// the core's other tasks run.
const wal_poll_nap: Duration = Duration::from_micros(100);

/// Polled WAL writes so far, in this process: done within their spin, and
/// done later (found on a timer). For tests, and metrics later.
static wal_writes_spun: AtomicU64 = AtomicU64::new(0);
static wal_writes_napped: AtomicU64 = AtomicU64::new(0);

/// (polled WAL writes done within their spin, done later on a timer).
pub fn polled_wal_writes() -> (u64, u64) {
    (wal_writes_spun.load(Ordering::Relaxed), wal_writes_napped.load(Ordering::Relaxed))
}

impl LogFile for DmaLogFile {
    /// With a spin set (`set_write_spin`), the write goes through this
    /// thread's own ring and the executor polls for its completion for up
    /// to the spin (nothing else runs on this core meanwhile); then every
    /// `wal_poll_nap`, on a timer, while the core's other tasks run (a
    /// completion is then seen up to that much late). The log driver asks
    /// for that only when following a lone writer to a CPU other than the
    /// one taking the disk's interrupts (`driver::Follow`), where the sleep
    /// and the wake-up by the other CPU cost a lone put ~60 µs
    /// (docs/performance.md). If the write cannot be submitted there
    /// (nothing went out), it goes through glommio's ring.
    async fn write_at(&self, position: u64, data: &[u8]) -> io::Result<()> {
        let mut buffer = self.file.alloc_dma_buffer(data.len());
        buffer.as_bytes_mut().copy_from_slice(data);
        let spin = self.spin.get();
        let ring = if spin.is_zero() { None } else { take_wal_poll_ring() };
        if let Some(ring) = ring {
            let (fd, buf) = (self.file.as_raw_fd(), buffer.as_bytes().as_ptr());
            // SAFETY: `buffer` outlives `write`: declared before it, it is
            // dropped after it, and dropping `write` in flight waits for it.
            match unsafe { uring::PolledWrite::submit(ring, fd, buf, data.len(), position) } {
                Ok(mut write) => {
                    let mut done = write.spin(spin);
                    let counter =
                        if done.is_some() { &wal_writes_spun } else { &wal_writes_napped };
                    while done.is_none() {
                        sleep(wal_poll_nap).await;
                        done = write.poll();
                    }
                    counter.fetch_add(1, Ordering::Relaxed);
                    let (result, ring) = done.expect("polled until done");
                    wal_poll_ring.with(|slot| *slot.borrow_mut() = Some(Ok(ring)));
                    return result;
                }
                Err(e) => eprintln!(
                    "corekv: cannot submit a polled WAL write ({e}); writing it through glommio"
                ),
            }
        }
        let written = self.file.write_at(buffer, position).await.map_err(io::Error::from)?;
        if written != data.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short DMA write"));
        }
        Ok(())
    }

    /// The file is opened O_DSYNC: each write is durable when it completes
    /// (one io_uring operation instead of a write then an fdatasync, which
    /// costs a second reactor round trip on the latency path). Segments are
    /// preallocated, so no metadata needs syncing either.
    async fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    async fn close(self) -> io::Result<()> {
        self.file.close_rc().await.map(|_| ()).map_err(io::Error::from)
    }

    fn set_write_spin(&self, spin: Duration) {
        self.spin.set(spin);
    }
}

/// This thread's ring for polled WAL writes, made at the first call (or
/// anew while another write holds it); None if one could not be made.
fn take_wal_poll_ring() -> Option<IoUring> {
    wal_poll_ring.with(|slot| {
        let mut slot = slot.borrow_mut();
        match slot.take() {
            Some(Ok(ring)) => Some(ring),
            Some(Err(())) => {
                *slot = Some(Err(()));
                None
            }
            None => match uring::polling_ring(2) {
                Ok(ring) => Some(ring),
                Err(e) => {
                    eprintln!("corekv: cannot make an io_uring for polled WAL writes ({e}); the log driver sleeps for them instead");
                    *slot = Some(Err(()));
                    None
                }
            },
        }
    })
}

impl LogDisk for DmaDisk {
    type File = DmaLogFile;

    async fn open_for_append(&self, path: &Path) -> io::Result<DmaLogFile> {
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .dma_open(path)
            .await
            .map_err(io::Error::from)?;
        Ok(DmaLogFile { file: Rc::new(file), spin: Cell::new(Duration::ZERO) })
    }
}

/// The CPU that takes the completion interrupts of the disk holding `path`,
/// if one does: the log driver runs best on it (a WAL write's completion
/// then wakes the driver on its own CPU instead of by an interrupt to
/// another one; on a 2-vCPU VM, put64 ran 7–29% faster and a 1-client put's
/// p50 fell ~100 µs, docs/performance.md). None when the disk's busiest
/// interrupt is spread over several CPUs or the device cannot be found
/// (tmpfs, containers without /sys). (On NVMe, a queue per CPU, it names
/// the CPU whose queue was busiest: harmless for the driver's home, as each
/// CPU's writes complete on its own queue; but see `disk_queues`.)
pub fn disk_interrupt_cpu(path: &Path) -> Option<usize> {
    let device = disk_device(path)?;
    // The device's MSI interrupts are listed by its PCI function, above the
    // block device (and the partition) in the tree.
    let irqs: Vec<u32> = device.ancestors().find_map(|dir| {
        let entries = std::fs::read_dir(dir.join("msi_irqs")).ok()?;
        Some(entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
    })?;
    let interrupts = std::fs::read_to_string("/proc/interrupts").ok()?;
    let busiest = busiest_irq(&interrupts, &irqs)?;
    let cpus =
        std::fs::read_to_string(format!("/proc/irq/{busiest}/effective_affinity_list")).ok()?;
    match parse_cpu_list(&cpus)?.as_slice() {
        [cpu] => Some(*cpu),
        _ => None,
    }
}

/// The /sys directory of the block device holding `path` (a partition's,
/// if on one).
fn disk_device(path: &Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()
}

/// How many hardware queues the disk holding `path` has (blk-mq's `mq/`
/// entries of the disk, above a partition), if it can be told. With one,
/// every write completes on the CPU `disk_interrupt_cpu` names; with a
/// queue per CPU (NVMe), each CPU's writes complete on that CPU.
pub fn disk_queues(path: &Path) -> Option<usize> {
    let device = disk_device(path)?;
    let queues = device.ancestors().find_map(|dir| std::fs::read_dir(dir.join("mq")).ok())?;
    Some(queues.filter(|entry| entry.is_ok()).count())
}

/// Of `irqs`, the one with the most interrupts so far (all CPUs) in
/// /proc/interrupts' text; None if none has taken any.
fn busiest_irq(interrupts: &str, irqs: &[u32]) -> Option<u32> {
    interrupts
        .lines()
        .filter_map(|line| {
            let (irq, rest) = line.trim_start().split_once(':')?;
            let irq: u32 = irq.parse().ok().filter(|irq| irqs.contains(irq))?;
            let count: u64 = rest.split_whitespace().map_while(|n| n.parse::<u64>().ok()).sum();
            Some((count, irq))
        })
        .filter(|(count, _)| *count > 0)
        .max()
        .map(|(_, irq)| irq)
}

/// A kernel CPU list ("0-3,8,10-11").
fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((from, to)) => cpus.extend(from.parse::<usize>().ok()?..=to.parse().ok()?),
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// The executor (of `cores`, placed as `run_cores` places them) pinned to
/// `cpu`, if any.
pub fn core_on_cpu(cores: usize, cpu: usize) -> Option<usize> {
    core_cpus(cores).iter().position(|c| *c == cpu)
}

/// The CPU each of `cores` executors is pinned to by `run_cores`.
pub fn core_cpus(cores: usize) -> Vec<usize> {
    let cpus = available_cpus();
    (0..cores).map(|core| cpus[core % cpus.len()]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};

    #[test]
    fn background_threads_started_from_a_pinned_thread_may_run_on_every_cpu() {
        let everywhere = std::thread::spawn(available_cpus).join().unwrap();
        assert!(everywhere.len() >= 2, "this test needs two CPUs: {everywhere:?}");
        let seen = std::thread::spawn(move || {
            pin_current_thread(everywhere[1]);
            assert_eq!(available_cpus(), vec![everywhere[1]]);
            let low = spawn_low_priority("t-low", available_cpus).unwrap().join().unwrap();
            let idle = spawn_background("t-idle", available_cpus).unwrap().join().unwrap();
            (low, idle)
        })
        .join()
        .unwrap();
        let everywhere = std::thread::spawn(available_cpus).join().unwrap();
        assert_eq!(seen, (everywhere.clone(), everywhere));
    }

    #[test]
    fn a_loopback_connection_reports_the_cpu_its_client_sends_from() {
        let client_cpu = *available_cpus().last().unwrap();
        run_cores(1, "test-incoming", Duration::ZERO, move |_| async move {
            let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let address = listener.0.local_addr().unwrap();
            let client = std::thread::spawn(move || {
                pin_current_thread(client_cpu);
                let mut stream = std::net::TcpStream::connect(address).unwrap();
                stream.write_all(b"x").unwrap();
                let mut answer = [0u8; 1];
                stream.read_exact(&mut answer).unwrap();
            });
            // As placement asks: straight after accept, before any data.
            let mut stream = listener.accept().await.unwrap();
            assert_eq!(incoming_cpu(&stream), Some(client_cpu));
            let mut request = [0u8; 1];
            futures_lite::AsyncReadExt::read_exact(&mut stream, &mut request).await.unwrap();
            assert_eq!(incoming_cpu(&stream), Some(client_cpu));
            futures_lite::AsyncWriteExt::write_all(&mut stream, b"y").await.unwrap();
            client.join().unwrap();
        })
        .unwrap();
    }

    #[test]
    fn a_stream_handed_to_another_core_is_served_there() {
        let (handed_tx, handed_rx) = async_channel::bounded::<HandedStream>(1);
        let (address_tx, address_rx) = std::sync::mpsc::channel::<SocketAddr>();
        let address_tx = Arc::new(Mutex::new(address_tx));
        let client = std::thread::spawn(move || {
            let mut stream = std::net::TcpStream::connect(address_rx.recv().unwrap()).unwrap();
            stream.write_all(b"ping").unwrap();
            let mut answer = [0u8; 4];
            stream.read_exact(&mut answer).unwrap();
            answer
        });
        run_cores(2, "test-handed", Duration::ZERO, move |core| {
            let (handed_tx, handed_rx) = (handed_tx.clone(), handed_rx.clone());
            let address_tx = address_tx.clone();
            async move {
                use futures_lite::{AsyncReadExt, AsyncWriteExt};
                if core == 0 {
                    let listener = Listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
                    address_tx.lock().unwrap().send(listener.0.local_addr().unwrap()).unwrap();
                    let stream = listener.accept().await.unwrap();
                    let Ok(handed) = HandedStream::new(stream) else {
                        panic!("out of descriptors")
                    };
                    handed_tx.send(handed).await.unwrap();
                } else {
                    let mut stream = handed_rx.recv().await.unwrap().into_stream();
                    let mut request = [0u8; 4];
                    stream.read_exact(&mut request).await.unwrap();
                    assert_eq!(&request, b"ping");
                    stream.write_all(b"pong").await.unwrap();
                }
            }
        })
        .unwrap();
        assert_eq!(&client.join().unwrap(), b"pong");
    }

    #[test]
    fn the_busiest_interrupt_of_a_device_and_its_cpus_are_read() {
        let text = "           CPU0       CPU1       \n \
            35:          0          2 PCI-MSIX-0000:00:02.0   0-edge      virtio1-config\n \
            36:         10    7071196 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n \
            37:     900000          0 PCI-MSIX-0000:00:03.0   0-edge      virtio2-input.0\n\
            NMI:          0          0   Non-maskable interrupts\n";
        assert_eq!(busiest_irq(text, &[35, 36]), Some(36));
        assert_eq!(busiest_irq(text, &[35]), Some(35));
        assert_eq!(busiest_irq(text, &[40]), None);
        assert_eq!(parse_cpu_list("1\n"), Some(vec![1]));
        assert_eq!(parse_cpu_list("0-2,5"), Some(vec![0, 1, 2, 5]));
        assert_eq!(parse_cpu_list("x"), None);
    }

    #[test]
    fn a_path_on_no_disk_has_no_interrupt_cpu() {
        assert_eq!(disk_interrupt_cpu(Path::new("/nonexistent/x")), None);
        assert_eq!(disk_interrupt_cpu(Path::new("/proc/self")), None);
        assert_eq!(disk_queues(Path::new("/nonexistent/x")), None);
        assert_eq!(disk_queues(Path::new("/proc/self")), None);
    }

    /// The temporary directory's disk (where the tests' members keep their
    /// data: a real disk on the development and CI machines) has as many
    /// hardware queues as /sys/block lists.
    #[test]
    fn a_real_disk_has_its_queues_counted() {
        let tmp = std::env::temp_dir();
        let queues = disk_queues(&tmp).expect("the temporary directory is on a blk-mq disk");
        assert!(queues >= 1);
        let device = disk_device(&tmp).unwrap();
        let disk = device.ancestors().find(|dir| dir.join("mq").is_dir()).unwrap();
        let name = disk.file_name().unwrap();
        let listed = std::fs::read_dir(Path::new("/sys/block").join(name).join("mq")).unwrap();
        assert_eq!(listed.count(), queues);
    }
}
