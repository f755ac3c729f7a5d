//! The HTTP(S) server: one accept loop for both, with what axum's own `serve` lacks against
//! slow and idle clients. A request's line and headers must arrive within
//! `server.header_read_timeout` (hyper's own timer; for HTTP/1 it also bounds the wait for
//! the next request on a kept-alive connection), a TLS handshake within the same time, and a
//! connection that reads and writes nothing for `server.idle_timeout` is closed. At most
//! `server.max_connections` are open at once: past it a new connection is accepted and closed
//! at once, so that the listen backlog keeps moving and `/healthz` of a full server answers
//! as soon as a slot frees. (The body's own deadline, `server.body_read_timeout`, is where
//! the body is read: [`super::auth`].)

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::idle::{Activity, Tracked};
use crate::config::ServerConfig;

/// A listener for the API with a listen backlog of 4,096 (the kernel caps it at
/// `net.core.somaxconn`) instead of the usual 1,024: a burst of more connects than the backlog
/// holds leaves the extra ones half-open on the client's side, unseen by the server and by its
/// timeouts, until the kernel's retries give up.
pub fn bind(address: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket =
        if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(4096)
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown`; then lets open
/// connections finish their request for up to `deadline` and closes the rest.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &ServerConfig,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
    deadline: Duration,
) -> anyhow::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    // Cancelled once the shutdown deadline has passed: connections still open then are cut.
    let force = CancellationToken::new();
    let mut refused = Throttled::default();
    loop {
        let (stream, _peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors (EMFILE, ENFILE) or a connection reset before it
                    // was accepted: the listener itself is fine. A pause, so that a process
                    // out of descriptors does not spin.
                    refused.warn(|n| tracing::warn!(error = %e, times = n, "could not accept a connection"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused.warn(|n| {
                tracing::warn!(
                    max = limits.max_connections,
                    times = n,
                    "connection refused: server.max_connections are open"
                )
            });
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            builder: builder.clone(),
            app: app.clone(),
            header_read_timeout: limits.header_read_timeout,
            idle_timeout: limits.idle_timeout,
            shutdown: shutdown.clone(),
            force: force.clone(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => connection.serve(stream).await,
                Some(acceptor) => {
                    match tokio::time::timeout(connection.header_read_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => connection.serve(stream).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake not done within server.header_read_timeout"),
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    // Every connection holds a slot until it ends: all slots back means all connections closed.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(deadline, slots.acquire_many(all)).await.is_err() {
        tracing::warn!(
            open = limits.max_connections - slots.available_permits(),
            "connections still open at the shutdown deadline are closed"
        );
        force.cancel();
    }
    Ok(())
}

struct Connection {
    builder: Arc<Builder<TokioExecutor>>,
    app: Router,
    header_read_timeout: Duration,
    idle_timeout: Duration,
    shutdown: CancellationToken,
    force: CancellationToken,
}

impl Connection {
    async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(self, stream: S) {
        let activity = Activity::new();
        let io = TokioIo::new(Tracked::new(stream, activity.clone()));
        // A handler that works long before it answers (`/v1/data/export-temp`) tells the idle
        // timer that the connection is busy for its client.
        let app = self.app.layer(axum::Extension(activity.clone()));
        let conn = self.builder.serve_connection(io, TowerToHyperService::new(app));
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = self.shutdown.cancelled(), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                // A client that never sends a byte is not yet inside hyper's header timer
                // (the protocol is still being detected): it gets the same time.
                _ = activity.nothing_read_for(self.header_read_timeout) => return,
                _ = activity.idle_for(self.idle_timeout) => {
                    // Idle once: asked to close after its current request. Idle again (a
                    // client that does not even read its answer): cut.
                    if closing {
                        return;
                    }
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                    activity.touch();
                }
                _ = self.force.cancelled() => return,
            }
        }
    }
}

/// Warnings that could come thousands of times a second (a flood, a process out of
/// descriptors), written at most once a second with how many they stand for.
#[derive(Default)]
struct Throttled {
    last: Option<tokio::time::Instant>,
    count: u64,
}

impl Throttled {
    fn warn(&mut self, write: impl FnOnce(u64)) {
        self.count += 1;
        if self.last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            write(self.count);
            self.last = Some(tokio::time::Instant::now());
            self.count = 0;
        }
    }
}
