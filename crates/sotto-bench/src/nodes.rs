//! Several server nodes on one PostgreSQL, for `crash --nodes` and
//! `relay --nodes`: each node its own process and data folder, all in one
//! fresh schema of the given database (so runs never see each other).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sotto_proto::ServerAddress;

use crate::proc::Proc;

/// A deployment for one run.
pub struct Nodes {
    store: String,
    schema: String,
    dirs: Vec<PathBuf>,
    /// Each node's port, kept across restarts.
    pub ports: Vec<u16>,
}

impl Nodes {
    /// `n` nodes on `store` under `root` (none started yet).
    pub fn new(root: &Path, store: &str, n: usize) -> Result<Self> {
        let schema = format!("bench{:016x}", rand::random::<u64>());
        let mut ports = Vec::with_capacity(n);
        for _ in 0..n {
            ports.push(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
        }
        let dirs = (0..n).map(|i| root.join(format!("node{i}"))).collect();
        Ok(Self { store: store.to_owned(), schema, dirs, ports })
    }

    pub fn len(&self) -> usize {
        self.dirs.len()
    }

    /// Starts node `i` (the first start of node 0 makes the schema and the
    /// deployment's key; the others take them).
    pub fn start(&self, i: usize) -> Result<(Proc, ServerAddress)> {
        let (data, port) = (self.dirs[i].to_str().context("path")?, self.ports[i].to_string());
        let p =
            Proc::spawn(&["serve", "--data", data, "--port", &port, "--store", &self.store, "--schema", &self.schema])?;
        let address = ServerAddress::parse(&p.line)?;
        Ok((p, address))
    }

    /// Cuts every node's database connections at once (as a PostgreSQL
    /// restart or a network fault would); returns how many.
    pub fn cut_database_connections(&self) -> Result<i64> {
        blocking(|| {
            let mut c = postgres::Client::connect(&self.store, postgres::NoTls)?;
            let row = c.query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                 WHERE application_name = 'sotto-server' AND pid <> pg_backend_pid() AND datname = current_database()",
                &[],
            )?;
            Ok(row.get(0))
        })
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        blocking(|| {
            if let Ok(mut c) = postgres::Client::connect(&self.store, postgres::NoTls) {
                let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
            }
        })
    }
}

/// The `postgres` client runs a runtime of its own, which cannot start on
/// an async thread: move off it first (the bench's runtime is
/// multi-threaded).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => tokio::task::block_in_place(f),
        Err(_) => f(),
    }
}
