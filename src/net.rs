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

impl Acceptor for NoDelayAcceptor {
    type Io = TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.0.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(TcpStream, LocalAddr, RemoteAddr, Scheme)> {
        let accepted = self.0.accept().await?;
        accepted.0.set_nodelay(true)?;
        Ok(accepted)
    }
}
