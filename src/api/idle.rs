//! When a connection last read or wrote anything: hyper has no idle timeout of its own (its
//! header timer covers only the wait for a request's head), so the server watches the bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// Milliseconds since the connection opened, of its last read and write, shared between the
/// stream and the task that watches it.
#[derive(Clone)]
pub struct Activity(Arc<State>);

struct State {
    opened: Instant,
    last_ms: AtomicU64,
    /// Set by the first byte read.
    read_any: std::sync::atomic::AtomicBool,
    /// Work the server does for this connection before its next bytes ([`busy_until`]).
    busy: AtomicUsize,
}

impl Activity {
    pub fn new() -> Self {
        Activity(Arc::new(State {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            read_any: false.into(),
            busy: AtomicUsize::new(0),
        }))
    }

    /// Counts as activity: the idle time starts again from now.
    pub fn touch(&self) {
        let now = self.0.opened.elapsed().as_millis() as u64;
        self.0.last_ms.fetch_max(now, Ordering::Relaxed);
    }

    fn read(&self) {
        self.0.read_any.store(true, Ordering::Relaxed);
        self.touch();
    }

    /// Counts the connection busy (never idle) until the guard is dropped.
    pub fn busy(&self) -> Busy {
        self.0.busy.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Completes once nothing was read or written for `idle` while no work was under way.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.0.last_ms.load(Ordering::Relaxed);
            tokio::time::sleep_until(self.0.opened + Duration::from_millis(last) + idle).await;
            if self.0.busy.load(Ordering::Relaxed) > 0 {
                self.touch();
            } else if self.0.last_ms.load(Ordering::Relaxed) == last {
                return;
            }
        }
    }

    /// Completes `limit` after the connection opened if it has read nothing by then; else never.
    pub async fn nothing_read_for(&self, limit: Duration) {
        tokio::time::sleep_until(self.0.opened + limit).await;
        if self.0.read_any.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
    }
}

/// Waits for `work` with the connection counted busy meanwhile: a handler that computes before
/// it answers or sends its next bytes (an aggregation's first row, a whole export) is not an
/// idle client, and the idle timeout would otherwise cut it (after twice `server.idle_timeout`).
pub async fn busy_until<T>(activity: Option<&Activity>, work: impl Future<Output = T>) -> T {
    let _busy = activity.map(Activity::busy);
    work.await
}

/// The connection counted busy until dropped.
pub struct Busy(Activity);

impl Drop for Busy {
    fn drop(&mut self) {
        // The idle time starts from when the work ended.
        self.0.touch();
        self.0.0.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that records its reads and writes in an [`Activity`].
pub struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Activity) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
