//! A TCP acceptor that turns Nagle's algorithm off: small responses written in
//! pieces otherwise wait for the peer's delayed ACK (~40 ms on Linux).

use std::{io, net::SocketAddr};

use poem::{
    http::uri::Scheme,
    listener::{Acceptor, TcpAcceptor},
    web::{LocalAddr, RemoteAddr},
};
use tokio::net::TcpStream;

/// [`TcpAcceptor`] with `TCP_NODELAY` set on every connection.
pub struct NoDelayAcceptor(TcpAcceptor);

impl NoDelayAcceptor {
    /// Wraps a bound listener; returns it with its local address.
    pub fn new(listener: tokio::net::TcpListener) -> io::Result<(Self, SocketAddr)> {
        let addr = listener.local_addr()?;
        Ok((Self(TcpAcceptor::from_tokio(listener)?), addr))
    }
}

/// How long accepting pauses after a failure (e.g. out of file descriptors).
const ACCEPT_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

impl Acceptor for NoDelayAcceptor {
    type Io = TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(TcpStream, LocalAddr, RemoteAddr, Scheme)> {
        loop {
            match self.0.accept().await {
                Ok(accepted) => {
                    // A connection reset before this call is that connection's problem only.
                    if accepted.0.set_nodelay(true).is_ok() {
                        return Ok(accepted);
                    }
                }
                // Out of file descriptors (or another transient failure): the
                // server would call again at once and spin a core; pause so
                // open connections can finish and free some.
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept a connection; pausing 100 ms");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                }
            }
        }
    }
}
