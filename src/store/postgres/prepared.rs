//! The write path's statements, prepared once per connection: a batch of sightings would otherwise
//! pay a parse round trip per row.

use tokio_postgres::{Client, Statement};

use super::{events, visitors};
use crate::store::StoreError;

pub struct Prepared {
    pub seen: Statement,
    pub identify: Statement,
    pub forget: Statement,
    pub event: Statement,
}

impl Prepared {
    pub async fn new(client: &Client) -> Result<Prepared, StoreError> {
        Ok(Prepared {
            seen: client.prepare(visitors::SEEN).await?,
            identify: client.prepare(visitors::IDENTIFY).await?,
            forget: client.prepare(visitors::FORGET_IF_EXPIRED).await?,
            event: client.prepare(events::INSERT).await?,
        })
    }
}
