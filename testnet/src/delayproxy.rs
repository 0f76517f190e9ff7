//! A TCP proxy that delays every byte by a fixed time in each direction: link latency for
//! the devnet's `--netns --latency-ms` where the kernel has no `sch_netem` (`tc netem`).
//! Order within a connection is kept; flow control is kept too (at most 256 chunks of up
//! to 64 KiB wait per direction before the proxy stops reading).

use anyhow::Result;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Starts a proxy on `listen` (port 0: any) forwarding to `upstream`, each direction
/// delayed by `delay`; served until the runtime stops. Returns the bound address. Errors:
/// `listen` cannot be bound.
pub async fn start(
    listen: SocketAddr,
    upstream: SocketAddr,
    delay: Duration,
) -> Result<SocketAddr> {
    let l = TcpListener::bind(listen).await?;
    let at = l.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((inbound, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let (ri, wi) = inbound.into_split();
                let (ro, wo) = outbound.into_split();
                tokio::join!(pump(ri, wo, delay), pump(ro, wi, delay));
            });
        }
    });
    Ok(at)
}

/// Copies `from` to `to`, each chunk written `delay` after it was read.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(256);
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((due, bytes)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes arrive in order, and a round trip through the proxy takes twice its delay.
    #[tokio::test]
    async fn a_round_trip_takes_twice_the_delay() {
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = echo.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
        });
        let at = start(
            "127.0.0.1:0".parse().unwrap(),
            upstream,
            Duration::from_millis(40),
        )
        .await
        .unwrap();
        let mut c = TcpStream::connect(at).await.unwrap();
        let t0 = Instant::now();
        c.write_all(b"ping 1, ping 2").await.unwrap();
        let mut got = vec![0u8; 14];
        c.read_exact(&mut got).await.unwrap();
        let rtt = t0.elapsed();
        assert_eq!(&got, b"ping 1, ping 2");
        assert!(rtt >= Duration::from_millis(80), "{rtt:?}");
        assert!(rtt < Duration::from_millis(1000), "{rtt:?}");
    }
}
