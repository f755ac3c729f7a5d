//! When a connection last read or wrote anything: hyper has no idle timeout of its own (its
//! header timer covers only the wait for a request's head), so the server watches the bytes.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
}

impl Activity {
    pub fn new() -> Self {
        Activity(Arc::new(State {
            opened: Instant::now(),
            last_ms: AtomicU64::new(0),
            read_any: false.into(),
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

    /// Completes once nothing was read or written for `idle`.
    pub async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.0.last_ms.load(Ordering::Relaxed);
            tokio::time::sleep_until(self.0.opened + Duration::from_millis(last) + idle).await;
            if self.0.last_ms.load(Ordering::Relaxed) == last {
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
