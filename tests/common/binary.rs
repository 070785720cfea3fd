//! The real binary, started as an operator would, on free ports with a temporary data directory.

use super::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_authgate");

pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// Start `authgate run` with a config file; stdout+stderr go to a log file.
    pub fn start(dir: &Path, config_yaml: &str, log_level: &str) -> Proc {
        Proc::start_in(dir, config_yaml, log_level, None, &[])
    }

    /// The same, with the data directory `small_disk` on a tmpfs of that many bytes, mounted in
    /// a mount namespace of the gateway's own (`unshare`: no privilege needed, and the mount
    /// goes away with the process). `data_view` reaches it from outside.
    pub fn start_in(
        dir: &Path,
        config_yaml: &str,
        log_level: &str,
        small_disk: Option<(&Path, u64)>,
        args: &[&str],
    ) -> Proc {
        let config = dir.join("authgate.yaml");
        std::fs::write(&config, config_yaml).unwrap();
        let log = dir.join(format!("log-{}.txt", free_port()));
        let out = std::fs::File::create(&log).unwrap();
        let mut command = match small_disk {
            None => Command::new(BIN),
            Some((data, bytes)) => {
                std::fs::create_dir_all(data).unwrap();
                let mut c = Command::new("unshare");
                c.args(["--user", "--map-root-user", "--mount", "sh", "-c"])
                    .arg(r#"mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@""#)
                    .args(["sh", &bytes.to_string()])
                    .arg(data)
                    .arg(BIN);
                c
            }
        };
        let child = command
            .args(["run", "--config"])
            .arg(&config)
            .args(args)
            .current_dir(dir)
            .env("RUST_LOG", log_level)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args(["-s", sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// `authgate run` on its embedded defaults (no config) in `dir`, in a network namespace of its
    /// own with only a loopback (`unshare`, no privilege needed): its fixed default ports are
    /// free whatever else runs on this machine. A test thread reaches it after
    /// `enter_net_namespace_of(pid)`.
    pub fn start_isolated(dir: &Path) -> Proc {
        let log = dir.join("log.txt");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("unshare")
            .args(["--user", "--map-root-user", "--net", "sh", "-c"])
            .arg(r#"ip link set lo up && exec "$0" run"#)
            .arg(BIN)
            .current_dir(dir)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Proc { child, log }
    }

    /// A path of the gateway's mount namespace, seen from this one.
    pub fn view(&self, path: &Path) -> PathBuf {
        let inside = path.strip_prefix("/").unwrap_or(path);
        PathBuf::from(format!("/proc/{}/root", self.child.id())).join(inside)
    }

    /// What the gateway has logged so far. Its log thread gathers lines for 5 ms before it
    /// writes them: a line logged just now is given 50 ms to arrive.
    pub fn logs(&self) -> String {
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn config_yaml(
    listen: u16,
    admin: u16,
    upstream: std::net::SocketAddr,
    data: &Path,
    extra: &str,
) -> String {
    format!(
        "listen: 127.0.0.1:{listen}\nadmin:\n  listen: 127.0.0.1:{admin}\nusers_file: {users}\n\
         demo_upstream: null\ndefault_upstream: main\nupstreams:\n  main:\n    addresses: [\"{upstream}\"]\n\
         store:\n  data_dir: {data}\n{extra}",
        users = users_file().display(),
        data = data.display(),
    )
}

/// A data directory, a recording upstream, and a config for the gateway on a free port.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub upstream: Upstream,
    pub port: u16,
    pub admin_port: u16,
    pub yaml: String,
    pub base: String,
}

pub fn setup(extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let upstream = Upstream::start();
    let (port, admin_port) = (free_port(), free_port());
    let yaml = config_yaml(
        port,
        admin_port,
        upstream.addr,
        &dir.path().join("data"),
        extra,
    );
    let base = format!("http://127.0.0.1:{port}");
    Setup {
        dir,
        upstream,
        port,
        admin_port,
        yaml,
        base,
    }
}

impl Setup {
    /// Give the gateway a users file of its own (a copy of the shared one) that a test may edit.
    pub fn editable_users(&mut self) -> PathBuf {
        let users = self.dir.path().join("users.yaml");
        std::fs::write(&users, users_yaml()).unwrap();
        self.yaml = self.yaml.replace(
            &users_file().display().to_string(),
            &users.display().to_string(),
        );
        users
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.admin_port)
    }

    pub fn start(&self, log_level: &str) -> Proc {
        self.started(Proc::start(self.dir.path(), &self.yaml, log_level))
    }

    /// Started with its data directory on a tmpfs of `bytes` (see `Proc::start_in`).
    pub fn start_on_small_disk(&self, log_level: &str, bytes: u64) -> Proc {
        let data = self.data_dir();
        let small = Some((data.as_path(), bytes));
        self.started(Proc::start_in(
            self.dir.path(),
            &self.yaml,
            log_level,
            small,
            &[],
        ))
    }

    /// Listening, and it is this process that listens: a port taken meanwhile by someone else
    /// must fail the test, not send it to another server.
    fn started(&self, mut proc: Proc) -> Proc {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !listens_on(proc.child.id(), self.port) {
            if let Some(status) = proc.child.try_wait().unwrap() {
                panic!("the gateway exited ({status}): {}", proc.logs());
            }
            assert!(Instant::now() < deadline, "never listened: {}", proc.logs());
            std::thread::sleep(Duration::from_millis(20));
        }
        proc
    }
}

/// Wait (10 s at most) until `what` is in the log `n` times: lines reach the file from the log
/// writer's own thread, a moment after the event.
pub fn until_logged(proc: &Proc, what: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc.logs().matches(what).count() < n {
        assert!(
            Instant::now() < deadline,
            "never logged {what:?}: {}",
            proc.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port`.
pub fn listens_on(pid: u32, port: u16) -> bool {
    authgate::listening::listens_on(Some(pid), ([127, 0, 0, 1], port).into())
}

/// Move the calling thread (only it, and threads it starts) into the network namespace of
/// process `pid`, once that process has left ours.
pub fn enter_net_namespace_of(pid: u32) {
    use std::os::fd::AsRawFd;
    let ours = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
    let theirs = format!("/proc/{pid}/ns/net");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_link(&theirs).map_or(true, |ns| ns == ours) {
        assert!(
            Instant::now() < deadline,
            "{pid} never got a network namespace"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let ns = std::fs::File::open(&theirs).unwrap();
    // SAFETY: a plain syscall on an open namespace file; it changes only this thread's namespace.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}
