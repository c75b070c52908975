//! The connection, and getting it back. The shared database may restart or drop off the network while
//! the proxy runs; the proxy must keep serving pages meanwhile, so a lost connection is retried in the
//! background with bounded exponential backoff and the task answers "unavailable" until it is back.
//! Every attempt is bounded in time (connect, schema, preparing statements).

use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_postgres::{Client, Config, NoTls};

use super::prepared::Prepared;
use super::schema;
use crate::store::StoreError;

/// First wait after a loss or a failed attempt; doubled per failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// TCP connect, when the URL does not say (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A whole attempt: connect, create the schema, prepare.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// A usable connection.
pub struct Conn {
    pub client: Client,
    pub prepared: Prepared,
    /// Fires (or closes) when the connection's I/O task ends.
    lost: oneshot::Receiver<()>,
}

enum State {
    Up(Conn),
    Down { retry: Instant },
    Connecting(JoinHandle<Result<Conn, StoreError>>),
}

pub struct Link {
    config: Config,
    state: State,
    backoff: Duration,
}

/// Parses the URL and fills in what a long-running client needs and the URL left out.
pub fn config(url: &str) -> Result<Config, StoreError> {
    let mut config: Config = url.parse()?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("cobrowse-proxy");
    }
    // A peer that vanishes without a FIN is noticed in about a minute, not after two hours.
    config.keepalives_idle(Duration::from_secs(30));
    Ok(config)
}

/// One bounded attempt: connect, make sure the tables exist, prepare the write statements.
pub async fn connect(config: Config) -> Result<Conn, StoreError> {
    tokio::time::timeout(ATTEMPT_TIMEOUT, attempt(config))
        .await
        .map_err(|_| StoreError::Unavailable)?
}

async fn attempt(config: Config) -> Result<Conn, StoreError> {
    let (mut client, connection) = config.connect(NoTls).await?;
    let (gone, lost) = oneshot::channel();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            let error = super::redacted(&e);
            tracing::warn!(%error, "store: the PostgreSQL connection failed");
        }
        let _ = gone.send(());
    });
    schema::ensure(&mut client).await?;
    let prepared = Prepared::new(&client).await?;
    Ok(Conn {
        client,
        prepared,
        lost,
    })
}

impl Link {
    pub fn up(config: Config, conn: Conn) -> Link {
        Link {
            config,
            state: State::Up(conn),
            backoff: MIN_BACKOFF,
        }
    }

    /// The connection, unless it is down.
    pub fn conn(&mut self) -> Option<&mut Conn> {
        match &mut self.state {
            State::Up(conn) if !conn.client.is_closed() => Some(conn),
            _ => None,
        }
    }

    /// After a failed statement: if the connection is what failed, start getting it back.
    pub fn check(&mut self) {
        if let State::Up(conn) = &self.state {
            if conn.client.is_closed() {
                self.lose();
            }
        }
    }

    /// Waits for the link to change and applies the change; true when it has just come back up.
    /// Cancel-safe: the state is only changed after an await returned, never across one.
    pub async fn tend(&mut self) -> bool {
        match &mut self.state {
            State::Up(conn) => {
                let _ = (&mut conn.lost).await;
                self.lose();
                false
            }
            State::Down { retry } => {
                tokio::time::sleep_until(*retry).await;
                let attempt = tokio::spawn(connect(self.config.clone()));
                self.state = State::Connecting(attempt);
                false
            }
            State::Connecting(attempt) => {
                let result = attempt.await;
                self.settle(result)
            }
        }
    }

    fn settle(
        &mut self,
        attempt: Result<Result<Conn, StoreError>, tokio::task::JoinError>,
    ) -> bool {
        match attempt {
            Ok(Ok(conn)) => {
                tracing::info!("store: reconnected to PostgreSQL");
                self.state = State::Up(conn);
                self.backoff = MIN_BACKOFF;
                true
            }
            Ok(Err(e)) => {
                self.retry_later();
                tracing::warn!(error = %e, retry_in = ?self.backoff, "store: cannot reach PostgreSQL");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "store: a PostgreSQL connection attempt failed");
                self.retry_later();
                false
            }
        }
    }

    fn lose(&mut self) {
        tracing::warn!("store: lost the PostgreSQL connection; reconnecting");
        self.state = State::Down {
            retry: Instant::now() + MIN_BACKOFF,
        };
        self.backoff = MIN_BACKOFF;
    }

    fn retry_later(&mut self) {
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.state = State::Down {
            retry: Instant::now() + self.backoff,
        };
    }
}
