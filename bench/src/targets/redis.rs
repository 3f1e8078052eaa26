//! Redis: `GET`/`SET`, one TCP connection per client and no pipelining, so
//! every operation is one round trip like every other target's.
//!
//! Redis has no ordered key space, so (as YCSB's Redis binding does) inserts
//! also add the key to a sorted-set index ([`INDEX_KEY`], all scores 0 so it
//! is ordered by key): an insert is `MULTI; SET; ZADD; EXEC`, sent together
//! (one round trip, atomic). A scan is `ZRANGE … BYLEX LIMIT` followed by
//! `MGET` of the keys found: two round trips. Updates are a plain `SET`.
//! `--serializable` means nothing here (a single Redis server serves every
//! read from memory) and is ignored. Several endpoints are used round-robin,
//! as independent servers (no Redis Cluster routing).

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;

use super::{Connection, Target, TargetOptions};

/// Sorted set holding every record key, for scans.
pub const INDEX_KEY: &str = "cairn-bench:index";

/// Redis servers.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    clients: Vec<redis::Client>,
}

impl RedisTarget {
    /// Checks that every endpoint answers `PING`.
    pub async fn connect(options: &TargetOptions) -> anyhow::Result<Self> {
        let mut clients = Vec::new();
        for ep in &options.endpoints {
            let client = redis::Client::open(format!("redis://{ep}/"))
                .with_context(|| format!("bad endpoint {ep:?}"))?;
            let mut conn = client
                .get_multiplexed_async_connection()
                .await
                .with_context(|| format!("connecting to redis at {ep}"))?;
            let _: String = redis::cmd("PING")
                .query_async(&mut conn)
                .await
                .with_context(|| format!("PING redis at {ep}"))?;
            clients.push(client);
        }
        Ok(Self { clients })
    }
}

impl Target for RedisTarget {
    type Conn = RedisConn;

    async fn connection(&self, worker: usize) -> anyhow::Result<RedisConn> {
        let client = &self.clients[worker % self.clients.len()];
        // A connection of its own: one command in flight at a time.
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .context("connecting to redis")?;
        Ok(RedisConn { conn })
    }
}

/// One client's connection.
#[derive(Clone)]
pub struct RedisConn {
    conn: MultiplexedConnection,
}

impl Connection for RedisConn {
    async fn read(&mut self, key: &str) -> anyhow::Result<bool> {
        let v: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn)
            .await
            .context("GET")?;
        Ok(v.is_some())
    }

    async fn update(&mut self, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        let () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut self.conn)
            .await
            .context("SET")?;
        Ok(())
    }

    async fn insert(&mut self, key: &str, value: Vec<u8>) -> anyhow::Result<()> {
        let () = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(key)
            .arg(value)
            .ignore()
            .cmd("ZADD")
            .arg(INDEX_KEY)
            .arg(0)
            .arg(key)
            .ignore()
            .query_async(&mut self.conn)
            .await
            .context("MULTI SET ZADD EXEC")?;
        Ok(())
    }

    async fn scan(&mut self, start: &str, count: u32) -> anyhow::Result<usize> {
        let keys: Vec<String> = redis::cmd("ZRANGE")
            .arg(INDEX_KEY)
            .arg(format!("[{start}"))
            .arg("+")
            .arg("BYLEX")
            .arg("LIMIT")
            .arg(0)
            .arg(count)
            .query_async(&mut self.conn)
            .await
            .context("ZRANGE BYLEX")?;
        if keys.is_empty() {
            return Ok(0);
        }
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut self.conn)
            .await
            .context("MGET")?;
        Ok(values.iter().filter(|v| v.is_some()).count())
    }
}
