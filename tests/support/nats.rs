//! A real NATS server (Debian's `nats-server`, JetStream on) on a loopback port, for the scale-out
//! tests. It can be stopped and started again on the same port and store, as an engine restart.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts the server, or the first one on `PATH`.
fn binary() -> Option<PathBuf> {
    let debian = PathBuf::from("/usr/sbin/nats-server");
    if debian.exists() {
        return Some(debian);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.exists())
}

/// The server binary, or `None` with a message when it is absent; with `COBROWSE_REQUIRE_SERVERS`
/// set (CI) its absence is a failure instead.
pub fn available() -> Option<PathBuf> {
    let found = binary();
    if found.is_none() {
        assert!(
            std::env::var("COBROWSE_REQUIRE_SERVERS").is_err(),
            "scale-out test required but nats-server is missing (apt-get install nats-server)"
        );
        eprintln!("SKIPPED scale-out test: nats-server is missing (apt-get install nats-server)");
    }
    found
}

pub struct Engine {
    binary: PathBuf,
    pub addr: SocketAddr,
    dir: PathBuf,
    child: Option<Child>,
}

impl Engine {
    pub fn start(binary: PathBuf) -> Engine {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!(
            "cobrowse-nats-{}-{port}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // Snapshots may be as large as the relay's visitor limit (8 MiB); NATS defaults to 1 MiB.
        let conf = format!(
            "listen: \"127.0.0.1:{port}\"\nmax_payload: 8388608\n\
             jetstream {{ store_dir: \"{}\" }}\n",
            dir.join("js").display()
        );
        std::fs::write(dir.join("nats.conf"), conf).unwrap();
        let mut engine = Engine {
            binary,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir,
            child: None,
        };
        engine.resume();
        engine
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Kills the server (as a crash would), keeping its store.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store, and waits until it accepts clients.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(self.dir.join("nats.conf"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(stream) = std::net::TcpStream::connect(self.addr) {
                let mut line = [0u8; 4];
                use std::io::Read;
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                if (&stream).read_exact(&mut line).is_ok() && &line == b"INFO" {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nats-server did not start on {}", self.addr);
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
