//! The floor under authgate's proxy path: pingora forwarding to one upstream with no filters at all,
//! built with the same pingora, allocator and server settings. The load script runs it as a row, so
//! that what authgate adds and what pingora itself costs can be told apart.
//!
//! Usage: `bare_pingora <listen> <upstream> [threads]`

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bare(SocketAddr);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _: &mut Session, _: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.0, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(listen), Some(upstream)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: bare_pingora <listen> <upstream> [threads]");
        std::process::exit(2);
    };
    let upstream: SocketAddr = upstream.parse().expect("upstream: ip:port");
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(2);
    let conf = ServerConf {
        threads,
        work_stealing: false,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = http_proxy_service(&server.configuration, Bare(upstream));
    proxy.add_tcp(listen);
    server.add_service(proxy);
    server.run_forever();
}
