use anyhow::Context;
use authgate::config::{Config, StoreKind};
use authgate::server::shutdown::Shutdown;
use authgate::store::{OnDamage, OpenError};
use clap::{Parser, Subcommand};
use pingora::server::RunArgs;
use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

// The proxy allocates and frees small buffers on every request; mimalloc does that cheaper than
// glibc's malloc (measured in the README's Performance section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "authgate",
    version,
    about = "Reverse-proxy authentication gateway (GWOS, ioGates)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the gateway (embedded defaults and demo users without --config).
    Run {
        #[arg(short, long, env = "AUTHGATE_CONFIG")]
        config: Option<PathBuf>,
        /// If the token store file is damaged, rename it (`tokens.redb.damaged-<time>`) and start
        /// with an empty store: every client must log in again.
        #[arg(long)]
        move_damaged_store: bool,
    },
    /// Read a password from stdin (or a prompt) and print its argon2id PHC string.
    HashPassword,
    /// Validate a configuration file (with the `AUTHGATE_*` variables over it), its users file,
    /// and that the token store's directory can be written: exit 0, or print what is at fault.
    CheckConfig {
        #[arg(short, long, env = "AUTHGATE_CONFIG")]
        config: PathBuf,
    },
    /// Ask the running gateway's admin port whether it is ready (`/readyz`; `--live`:
    /// `/healthz`): exit 0 if so, 1 if not. For container health checks, with no curl in the
    /// image.
    Healthcheck {
        #[arg(short, long, env = "AUTHGATE_CONFIG")]
        config: Option<PathBuf>,
        /// Only whether the process answers (liveness).
        #[arg(long)]
        live: bool,
    },
    /// Copy every live token from the configured store (`store.kind`) to another, with the same
    /// file's settings for both (`store.data_dir`, `store.redis`): move between redb and Redis
    /// without logging every client out. Run it with the gateways stopped; then switch
    /// `store.kind`.
    MigrateStore {
        #[arg(short, long)]
        config: PathBuf,
        /// The store to copy into.
        #[arg(long, value_enum)]
        to: StoreTarget,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StoreTarget {
    Redb,
    Redis,
}

impl StoreTarget {
    fn kind(self) -> StoreKind {
        match self {
            StoreTarget::Redb => StoreKind::Redb,
            StoreTarget::Redis => StoreKind::Redis,
        }
    }
}

fn load(config: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(Config::load(config.map(PathBuf::as_path))?)
}

/// What to tell an operator whose store file is damaged.
fn damaged_store_advice(e: anyhow::Error) -> anyhow::Error {
    match e.downcast_ref::<OpenError>() {
        Some(OpenError::Damaged { .. }) => e.context(
            "the token store cannot be used. Restore it from a backup, or start once with \
             `authgate run --move-damaged-store` to move it aside and start empty (every client \
             must then log in again)",
        ),
        Some(OpenError::Locked { .. }) => {
            e.context("another authgate (or another process) has the token store open")
        }
        _ => e,
    }
}

fn run(config: Option<PathBuf>, move_damaged_store: bool) -> anyhow::Result<()> {
    let mut config = load(config.as_ref())?;
    if move_damaged_store {
        config.store.on_damage = OnDamage::MoveAside;
    }
    authgate::telemetry::init(&config.log);
    authgate::telemetry::log_panics();
    let started = std::time::Instant::now();
    let built = authgate::build_server(&config).map_err(damaged_store_advice)?;
    tracing::info!(
        listen = %config.listen,
        admin = %config.admin.listen,
        demo_upstream = config.demo_upstream.as_deref(),
        setup_ms = started.elapsed().as_millis() as u64,
        "authgate starting"
    );
    let shutdown = Shutdown::new(
        built.in_flight.clone(),
        built.store.clone(),
        built.lifecycle.clone(),
        std::time::Duration::from_secs(config.shutdown.delay_seconds),
        built.server.watch_execution_phase(),
    );
    built.server.run(RunArgs {
        shutdown_signal: shutdown.signals(),
    });
    // Here when pingora's grace ran out before the drain finished, or after a graceful upgrade.
    shutdown.close_store();
    Ok(())
}

fn hash_password() -> anyhow::Result<()> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ").context("reading the password")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        anyhow::bail!("empty password");
    }
    println!("{}", authgate::auth::password::hash_password(&password));
    Ok(())
}

fn check_config(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(Some(&path))?;
    if let Some(users) = &config.users_file {
        authgate::auth::users::UserDirectory::load(users)
            .map_err(|e| anyhow::anyhow!("users_file: {e}"))?;
    }
    if config.store.kind == StoreKind::Redb {
        let dir = &config.store.data_dir;
        let probe = dir.join(".authgate-write-check");
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&probe, b"ok"))
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| {
                anyhow::anyhow!("store.data_dir: {} is not writable: {e}", dir.display())
            })?;
    }
    println!("{}: OK", path.display());
    Ok(())
}

/// `GET` the admin port's `/readyz` (or `/healthz`) over loopback; whether it answered 200.
fn healthcheck(config: Option<PathBuf>, live: bool) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let config = load(config.as_ref())?;
    let mut admin = authgate::config::resolve("admin.listen", &config.admin.listen)?;
    if admin.ip().is_unspecified() {
        admin.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let path = if live { "/healthz" } else { "/readyz" };
    let timeout = std::time::Duration::from_secs(2);
    let mut stream = std::net::TcpStream::connect_timeout(&admin, timeout)
        .with_context(|| format!("admin port {admin}"))?;
    stream.set_read_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.take(4096).read_to_string(&mut answer)?;
    let status = answer.lines().next().unwrap_or_default();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    if status.split_whitespace().nth(1) == Some("200") {
        println!("{path}: {body}");
        Ok(())
    } else {
        anyhow::bail!("{path}: {status}: {body}")
    }
}

fn migrate_store(path: PathBuf, to: StoreKind) -> anyhow::Result<()> {
    let config = Config::load(Some(&path))?;
    let from = config.store.kind;
    if from == to {
        anyhow::bail!("store.kind is already {to:?}: nothing to copy");
    }
    let source = authgate::server::open_store(&config, from)?;
    let target = authgate::server::open_store(&config, to)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let copied = runtime.block_on(authgate::store::copy_live_tokens(
        source.as_ref(),
        target.as_ref(),
        authgate::store::now_ms(),
    ))?;
    source.close()?;
    target.close()?;
    println!("copied {copied} live tokens from {from:?} to {to:?}; now set store.kind");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run {
            config,
            move_damaged_store,
        } => run(config, move_damaged_store),
        Command::HashPassword => hash_password(),
        Command::CheckConfig { config } => check_config(config),
        Command::Healthcheck { config, live } => {
            // Not ready is an answer, not a usage error: 1, as container runtimes expect.
            return match healthcheck(config, live) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("authgate: {e:#}");
                    ExitCode::from(1)
                }
            };
        }
        Command::MigrateStore { config, to } => migrate_store(config, to.kind()),
    };
    // Every queued log line out before the process ends.
    authgate::telemetry::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("authgate: {e:#}");
            ExitCode::from(2)
        }
    }
}
