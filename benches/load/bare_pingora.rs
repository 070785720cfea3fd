//! The floor under authgate's proxy path: pingora forwarding to one upstream with no filters at all,
//! built with the same pingora, allocator and server settings. The load script runs it as a row, so
//! that what authgate adds and what pingora itself costs can be told apart.
//!
//! Usage: `bare_pingora <listen> <upstream> [threads] [timeouts]`. With `timeouts`, its peers carry
//! the connect, read, write and idle timeouts of authgate's default upstream: pingora's timer
//! code they switch on is then in the floor too.

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare(HttpPeer);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.0.clone()))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: bare_pingora <listen> <upstream> [threads] [timeouts]");
        std::process::exit(2);
    };
    let upstream: SocketAddr = upstream.parse().expect("upstream: ip:port");
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(2);
    let mut peer = HttpPeer::new(upstream, false, String::new());
    if args.get(4).map(String::as_str) == Some("timeouts") {
        // authgate's defaults (`upstreams.<name>.*_timeout_ms`).
        let ms = std::time::Duration::from_millis;
        peer.options.connection_timeout = Some(ms(2_000));
        peer.options.total_connection_timeout = Some(ms(2_000));
        peer.options.read_timeout = Some(ms(30_000));
        peer.options.write_timeout = Some(ms(30_000));
        peer.options.idle_timeout = Some(ms(60_000));
    }
    let conf = ServerConf {
        threads,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Bare(peer));
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
