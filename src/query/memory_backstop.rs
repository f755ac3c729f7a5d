//! The process-wide memory backstop: what no query's own pool sees still cannot take the
//! worker past its memory.
//!
//! A query's pool (`worker.query_memory_mb`) counts only what DataFusion's operators report,
//! and they report estimates: aggregations over a table joined with itself took 1.4–1.5 GiB
//! under a 512 MB pool, and batches in flight between operators are reported by none. So every
//! running query is also registered here, and a watchdog thread reads the allocator's count of
//! live bytes (jemalloc's `stats.allocated`) every [`SAMPLE_EVERY`]. Past the process's limit —
//! the budgets of the queries running plus a margin for the rest of the process — it stops the
//! query whose pool holds the most (the latest started among equals): that query's stream ends
//! with `ResourcesExhausted`, its job fails as over `worker.query_memory_mb`, its memory is
//! freed when the stream is dropped, and the worker goes on.
//!
//! The functions whose output can dwarf their input also ask [`headroom`] before building a
//! batch's output, so that several of them in one row, each within the query's pool, cannot
//! together build past the process's limit within one poll (where the watchdog cannot stop
//! them).
//!
//! Live bytes are not all the RSS: jemalloc keeps the pages a query freed for ten seconds before
//! it returns them to the system, so a query run just after one that filled the limit could
//! take the RSS to twice the limit with its live bytes within it (back to back, an aggregation
//! of a joined table and then an `array_agg` of it peaked at 0.9–1.0 GiB under a 512 MB limit,
//! with jemalloc holding 410–635 MiB more than was live). So when the pages jemalloc holds pass the limit, the
//! watchdog has it return its freed pages at once ([`purge_freed_pages`]). Only then, not all
//! the time (a shorter decay): an export would fault in again pages it was about to reuse.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::human_readable_size;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream};
use futures::Stream;
use futures::task::AtomicWaker;

/// How often the watchdog reads the allocator's count while queries run. Debug builds
/// allocate at most about 2 GB/s on one core, so about 20 MB pass between two readings.
const SAMPLE_EVERY: Duration = Duration::from_millis(10);

/// How long a query told to stop may take to end before the watchdog, still over the limit,
/// stops another one too.
const GRACE: Duration = Duration::from_secs(2);

/// A running query, as the watchdog sees it.
struct Watched {
    /// `worker.query_memory_mb`, in bytes.
    budget: usize,
    /// What the rest of the process may hold besides the running queries.
    margin: usize,
    pool: Arc<dyn MemoryPool>,
    started: Instant,
    /// Why the query must stop, once the watchdog said so.
    stop: OnceLock<(String, Instant)>,
    waker: AtomicWaker,
}

static RUNNING: Mutex<Vec<Arc<Watched>>> = Mutex::new(Vec::new());

fn running() -> std::sync::MutexGuard<'static, Vec<Arc<Watched>>> {
    RUNNING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Live bytes the allocator has handed out, fresh (`None` when jemalloc is not the global
/// allocator, or its statistics cannot be read).
pub fn allocated() -> Option<usize> {
    use tikv_jemalloc_ctl::{epoch, epoch_mib, stats};
    static MIBS: OnceLock<Option<(epoch_mib, stats::allocated_mib)>> = OnceLock::new();
    let (stats_epoch, live) =
        MIBS.get_or_init(|| Some((epoch::mib().ok()?, stats::allocated::mib().ok()?))).as_ref()?;
    stats_epoch.advance().ok()?;
    live.read().ok().filter(|&bytes| bytes > 0)
}

/// Bytes in the pages the allocator holds resident: live ones, their fragments, and pages freed
/// but not yet returned to the system. Read after [`allocated`], which refreshed the statistics.
fn resident() -> Option<usize> {
    use tikv_jemalloc_ctl::stats;
    static MIB: OnceLock<Option<stats::resident_mib>> = OnceLock::new();
    MIB.get_or_init(|| stats::resident::mib().ok()).as_ref()?.read().ok()
}

/// Returns every arena's freed pages to the system now, instead of when they have been idle
/// for jemalloc's decay time (ten seconds).
fn purge_freed_pages() -> bool {
    // `arena.<MALLCTL_ARENAS_ALL>.purge` (4096 in jemalloc 5): no value in or out.
    // SAFETY: a NUL-terminated name; the control reads and writes nothing, so every pointer is
    // null and the length zero, as jemalloc requires of it.
    let code = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"arena.4096.purge".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    code == 0
}

/// The most the process may hold now: the budgets of the running queries plus the largest
/// margin among them (`None`: no query runs, nothing to hold to).
fn limit(running: &[Arc<Watched>]) -> Option<usize> {
    let margin = running.iter().map(|w| w.margin).max()?;
    Some(running.iter().map(|w| w.budget).fold(margin, usize::saturating_add))
}

/// What the process may still allocate before it passes its limit (`None`: no limit holds,
/// because no query runs or the allocator cannot tell).
pub fn headroom() -> Option<(usize, usize)> {
    let limit = limit(&running())?;
    Some((limit.saturating_sub(allocated()?), limit))
}

/// A running query, registered with the watchdog until this is dropped.
pub struct Registration(Arc<Watched>);

impl Registration {
    /// Registers a query whose pool is `pool`, under `budget`, in a process that may hold
    /// `margin` besides its queries.
    pub fn new(budget: usize, margin: usize, pool: Arc<dyn MemoryPool>) -> Self {
        start_watchdog();
        let watched = Arc::new(Watched {
            budget,
            margin,
            pool,
            started: Instant::now(),
            stop: OnceLock::new(),
            waker: AtomicWaker::new(),
        });
        running().push(watched.clone());
        Registration(watched)
    }

    /// What the query's operators check between batches (see [`super::watched_plan`]).
    pub(super) fn stop_signal(&self) -> StopSignal {
        StopSignal(self.0.clone())
    }

    /// The query's output: ends with `ResourcesExhausted` once the watchdog stops the query,
    /// and keeps the query registered for as long as it lives.
    pub fn output(self, stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
        Box::pin(WatchedStream { inner: stream, registration: self, ended: false })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        running().retain(|w| !Arc::ptr_eq(w, &self.0));
    }
}

/// Tells whether the watchdog stopped a query.
#[derive(Clone)]
pub(super) struct StopSignal(Arc<Watched>);

impl std::fmt::Debug for StopSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StopSignal")
    }
}

impl StopSignal {
    /// The error a stopped query's operators end with.
    pub(super) fn check(&self) -> Result<()> {
        match self.0.stop.get() {
            Some((why, _)) => Err(DataFusionError::ResourcesExhausted(why.clone())),
            None => Ok(()),
        }
    }
}

fn start_watchdog() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let spawned = std::thread::Builder::new().name("memory-backstop".into()).spawn(|| {
        loop {
            std::thread::sleep(SAMPLE_EVERY);
            check_once();
        }
    });
    if let Err(e) = spawned {
        STARTED.store(false, Ordering::SeqCst);
        tracing::error!(error = %e, "could not start the memory backstop: only each query's own pool bounds it");
    }
}

/// Purges at most this often: what is resident beyond the live bytes may be fragments no purge
/// returns, and a purge walks every arena.
const PURGE_AT_MOST_EVERY: Duration = Duration::from_millis(100);

/// One reading: resident pages past the limit are returned to the system; live bytes past the
/// limit stop the query holding the most.
fn check_once() {
    static LAST_PURGE: Mutex<Option<Instant>> = Mutex::new(None);
    // Measured and purged without holding the list of queries: a purge takes milliseconds,
    // and a query asks `headroom` (which takes the list) before each large output it builds.
    let Some(limit_now) = limit(&running()) else { return };
    let Some(allocated) = allocated() else { return };
    if resident().is_some_and(|resident| resident > limit_now) {
        let mut last = LAST_PURGE.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|at| at.elapsed() >= PURGE_AT_MOST_EVERY) {
            *last = Some(Instant::now());
            if !purge_freed_pages() {
                tracing::debug!("jemalloc refused to purge its freed pages");
            }
        }
    }
    let running = running();
    let Some(limit) = limit(&running) else { return };
    if allocated <= limit {
        return;
    }
    let now = Instant::now();
    // A query already told to stop frees its memory when it ends: give it time to.
    if running.iter().any(|w| w.stop.get().is_some_and(|(_, at)| now.duration_since(*at) < GRACE)) {
        return;
    }
    let Some(victim) =
        running.iter().filter(|w| w.stop.get().is_none()).max_by_key(|w| (w.pool.reserved(), w.started))
    else {
        return;
    };
    let size = human_readable_size;
    let why = format!(
        "the worker's memory reached {}, past the {} it may hold while {} {} (up to {} each, \
         plus {} for the rest of the process); this query held the most",
        size(allocated),
        size(limit),
        running.len(),
        if running.len() == 1 { "query runs" } else { "queries run" },
        size(victim.budget),
        size(victim.margin),
    );
    tracing::warn!(
        allocated,
        limit,
        queries = running.len(),
        "memory over the process's limit: stopping a query"
    );
    if victim.stop.set((why, now)).is_ok() {
        victim.waker.wake();
    }
}

struct WatchedStream {
    inner: SendableRecordBatchStream,
    registration: Registration,
    ended: bool,
}

impl Stream for WatchedStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        // Woken when stopped, even while waiting on I/O.
        self.registration.0.waker.register(cx.waker());
        if let Err(stopped) = self.registration.stop_signal().check() {
            self.ended = true;
            return Poll::Ready(Some(Err(stopped)));
        }
        self.inner.as_mut().poll_next(cx)
    }
}

impl RecordBatchStream for WatchedStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::DataType;

    use super::*;

    #[test]
    fn the_allocator_counts_what_is_allocated() {
        let before = allocated().expect("jemalloc is the global allocator");
        let block = vec![1u8; 64 << 20];
        let during = allocated().unwrap();
        drop(block);
        assert!(during >= before + (60 << 20), "{before} then {during}");
    }

    #[test]
    fn freed_pages_past_the_limit_go_back_to_the_system() {
        let block = vec![7u8; 256 << 20];
        drop(std::hint::black_box(block));
        let held = |r: Option<usize>| r.unwrap() >> 20;
        allocated().unwrap();
        let before = held(resident());
        // jemalloc keeps those freed pages resident for ten seconds unless told.
        assert!(before >= 256, "{before} MiB resident");
        assert!(purge_freed_pages(), "jemalloc takes the purge");
        allocated().unwrap();
        let after = held(resident());
        assert!(after + 200 < before, "{before} MiB resident, then {after} MiB");
    }

    #[tokio::test]
    async fn a_query_past_the_process_limit_is_stopped_and_its_memory_freed() {
        use datafusion::arrow::array::Int64Array;
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion::execution::memory_pool::GreedyMemoryPool;
        use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
        use futures::StreamExt;
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        // Each batch keeps 16 MiB more that no pool sees, as an operator's estimate that
        // falls short would.
        let mut held: Vec<Vec<u8>> = Vec::new();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
        let batches = futures::stream::repeat_with(move || {
            held.push(vec![7u8; 16 << 20]);
            Ok(batch.clone())
        })
        .take(200);
        let inner = Box::pin(RecordBatchStreamAdapter::new(schema, batches));
        let margin = allocated().unwrap() + (64 << 20);
        let pool: Arc<dyn MemoryPool> = Arc::new(GreedyMemoryPool::new(1 << 20));
        let mut stream = Registration::new(1 << 20, margin, pool).output(inner);
        let mut seen = 0;
        let error = loop {
            match stream.next().await {
                Some(Ok(_)) => seen += 1,
                Some(Err(e)) => break e.to_string(),
                None => panic!("the stream ran to its end: {seen} batches, 3.2 GiB"),
            }
            // The watchdog reads every 10 ms; the query yields between batches.
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        assert!(
            error.contains("Resources exhausted") && error.contains("this query held the most"),
            "{error}"
        );
        assert!(seen < 40, "stopped after {seen} batches of 16 MiB");
        assert!(stream.next().await.is_none(), "the stream ends after its error");
        drop(stream);
        assert!(headroom().is_none(), "no query is watched once its stream is dropped");
    }
}
