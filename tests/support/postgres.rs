//! A real PostgreSQL on loopback for one test, from Debian's binaries (`postgresql` package:
//! `/usr/lib/postgresql/<version>/bin`). A fresh cluster per server in a temporary folder, `fsync` off,
//! trust authentication on 127.0.0.1 only; stopped by its own PID and removed on drop. initdb and
//! postgres refuse to run as root, so as root they run as the `postgres` system user (`setpriv`).
//! Without the binaries a test is skipped with a message, unless `COBROWSE_REQUIRE_SERVERS` is set
//! (CI), where their absence is a failure.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

/// How long a fresh server may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a server may take to stop after SIGINT before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// Start attempts (another process may take the free port between our probe and postgres's bind).
const ATTEMPTS: usize = 3;

pub struct Postgres {
    dir: PathBuf,
    child: Child,
    pub port: u16,
}

/// The system user the server runs as when we are root: uid and gid.
struct RunAs(u32, u32);

impl Postgres {
    /// A running server, or `None` (after saying why) when PostgreSQL is not installed here.
    pub async fn start() -> Option<Postgres> {
        let Some(bin) = binaries() else {
            let missing = "no /usr/lib/postgresql/*/bin/{initdb,postgres} (Debian: postgresql)";
            assert!(
                std::env::var_os("COBROWSE_REQUIRE_SERVERS").is_none(),
                "PostgreSQL test required but {missing}"
            );
            eprintln!("SKIPPED PostgreSQL test: {missing}");
            return None;
        };
        let run_as = run_as();
        let dir = temp_dir(run_as.as_ref());
        initdb(&bin, &dir, run_as.as_ref());
        for attempt in 1..=ATTEMPTS {
            let port = free_port();
            let child = spawn_postgres(&bin, &dir, port, run_as.as_ref());
            let mut server = Postgres {
                dir: dir.clone(),
                child,
                port,
            };
            if server.wait_ready().await {
                return Some(server);
            }
            assert!(
                attempt < ATTEMPTS,
                "postgres did not start:\n{}",
                server.log()
            );
            // Dropped: stopped, but the cluster stays for the next attempt.
            server.dir = PathBuf::new();
        }
        panic!("postgres did not start in {ATTEMPTS} attempts");
    }

    /// A new empty database; its connection URL.
    pub async fn create_database(&self) -> String {
        let name = format!("t_{:016x}", rand::random::<u64>());
        self.client("postgres")
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        self.url(&name)
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A superuser connection to `database`, for assertions and for breaking things.
    pub async fn client(&self, database: &str) -> Client {
        connect(&self.url(database)).await.unwrap()
    }

    /// The cluster's files (to look for bytes that must not be there).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + READY_WITHIN;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            if connect(&self.url("postgres")).await.is_ok() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Fast shutdown (SIGINT: sessions are ended, unlike SIGTERM's wait for them), bounded, then kill.
    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + STOP_WITHIN;
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The newest installed version's `bin` folder holding both programs.
fn binaries() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file())
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// As root, the `postgres` system user; otherwise ourselves.
fn run_as() -> Option<RunAs> {
    let euid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok()?;
    if euid != 0 {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|line| line.starts_with("postgres:"))
        .expect("running as root, PostgreSQL needs the postgres system user");
    let fields: Vec<&str> = line.split(':').collect();
    Some(RunAs(
        fields[2].parse().unwrap(),
        fields[3].parse().unwrap(),
    ))
}

fn temp_dir(run_as: Option<&RunAs>) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "cobrowse-pg-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(dir.join("sock")).unwrap();
    if let Some(RunAs(uid, gid)) = run_as {
        for path in [dir.clone(), dir.join("sock")] {
            std::os::unix::fs::chown(&path, Some(*uid), Some(*gid)).unwrap();
        }
    }
    dir
}

/// `program` from `bin`, as the server's user, in `dir`; killed if this test process dies first.
fn command(bin: &Path, program: &str, dir: &Path, run_as: Option<&RunAs>) -> Command {
    let mut command = Command::new("setpriv");
    if let Some(RunAs(uid, gid)) = run_as {
        command.args([
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".to_owned(),
        ]);
    }
    command
        .args(["--pdeathsig=TERM", "--"])
        .arg(bin.join(program))
        .current_dir(dir)
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    command
}

fn initdb(bin: &Path, dir: &Path, run_as: Option<&RunAs>) {
    let out = command(bin, "initdb", dir, run_as)
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
        .args(["--locale=C"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "initdb failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn spawn_postgres(bin: &Path, dir: &Path, port: u16, run_as: Option<&RunAs>) -> Child {
    let log = File::create(dir.join("postgres.log")).unwrap();
    command(bin, "postgres", dir, run_as)
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-k")
        .arg(dir.join("sock"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", "fsync=off", "-c", "full_page_writes=off"])
        .args(["-c", "max_connections=40", "-c", "shared_buffers=16MB"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
