//! Real ingress proxies of the test's own, in front of the decision endpoint: nginx with
//! `auth_request`, and Caddy with `forward_auth`. Each runs on a free port from a temporary
//! directory, in the foreground, and is stopped when dropped. Their configs are the snippets the
//! README gives.

use super::{free_port, wait_connectable};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// The identity headers authgate answers with, in the test config's names.
const IDENTITY: [&str; 4] = [
    "X-Authgate-User",
    "X-Authgate-Role",
    "X-Authgate-App",
    "X-Authgate-Share",
];

pub struct IngressProxy {
    pub addr: SocketAddr,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl IngressProxy {
    fn started(mut command: Command, port: u16, dir: tempfile::TempDir) -> IngressProxy {
        let log = std::fs::File::create(dir.path().join("proxy.log")).unwrap();
        let child = command
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("the proxy must be installed (.ci/run installs nginx and caddy)");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_connectable(addr);
        IngressProxy { addr, child, dir }
    }

    /// nginx `auth_request`: the decision endpoint asked with `X-Original-URI` and
    /// `X-Original-Method`; the identity headers set on the forwarded request from its answer
    /// (an absent one is set empty, which nginx does not send: a client's own never passes).
    pub fn nginx(gateway: SocketAddr, upstream: SocketAddr) -> IngressProxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut identity = String::new();
        for name in IDENTITY {
            let var = name.to_ascii_lowercase().replace('-', "_");
            identity.push_str(&format!(
                "      auth_request_set ${var} $upstream_http_{var};\n      \
                 proxy_set_header {name} ${var};\n"
            ));
        }
        let d = dir.path().display();
        let conf = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{}}
http {{
  access_log off;
  client_body_temp_path {d}/body;
  proxy_temp_path {d}/proxy;
  fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi;
  scgi_temp_path {d}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      auth_request /_authgate;
{identity}      proxy_pass http://{upstream};
    }}
    location = /_authgate {{
      internal;
      proxy_pass http://{gateway}/authgate/verify;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
    }}
  }}
}}
"#
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
        let mut command = Command::new("nginx");
        command
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"));
        IngressProxy::started(command, port, dir)
    }

    /// Caddy `forward_auth` (it sends `X-Forwarded-Method` and `X-Forwarded-Uri`), with the
    /// identity headers copied from the answer. Caddy before 2.10 leaves a client's own copy of a
    /// header the answer lacks, so they are removed from every request first.
    pub fn caddy(gateway: SocketAddr, upstream: SocketAddr) -> IngressProxy {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let strip: String = IDENTITY
            .iter()
            .map(|name| format!("    request_header -{name}\n"))
            .collect();
        let copy = IDENTITY.join(" ");
        // `route` keeps this order: Caddy's own puts forward_auth before request_header, which
        // would then remove the copied headers too.
        let conf = format!(
            "{{\n  admin off\n  auto_https off\n}}\n\
             http://:{port} {{\n  bind 127.0.0.1\n  route {{\n{strip}    forward_auth {gateway} {{\n      \
             uri /authgate/verify\n      copy_headers {copy}\n    }}\n    reverse_proxy {upstream}\n  }}\n}}\n"
        );
        let file = dir.path().join("Caddyfile");
        std::fs::write(&file, conf).unwrap();
        let mut command = Command::new("caddy");
        command
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path());
        IngressProxy::started(command, port, dir)
    }

    /// What the proxy logged (for a failing assertion).
    pub fn log(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        read(&self.dir.path().join("proxy.log")) + &read(&self.dir.path().join("error.log"))
    }
}

impl Drop for IngressProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
