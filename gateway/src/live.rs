//! The route table in force, swapped whole when a new route set compiles, with where it came
//! from and what the last refused one was refused for. Requests in flight keep the table they
//! started with; connections are never dropped by a reload.

use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde::Serialize;

use crate::routes::spec::RouteSet;
use crate::routes::{Resources, RouteError, RouteTable};

/// The table in force and its history.
pub(crate) struct LiveRoutes {
    table: RwLock<Arc<RouteTable>>,
    status: RwLock<RoutesStatus>,
    resources: Resources,
}

/// Where the routes came from and how reloads went.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RoutesStatus {
    /// `inline`, `file:<path>`, or `config:<application>/<profiles>/<label>`.
    pub(crate) source: String,
    /// Route sets accepted since start (1: the first).
    pub(crate) version: u64,
    /// When the set in force was accepted (RFC 3339).
    pub(crate) loaded_at: String,
    /// Route sets refused since start.
    pub(crate) refused: u64,
    /// Why the last one was refused, if one was.
    pub(crate) last_error: Option<String>,
}

impl LiveRoutes {
    /// Compiles the first set; the gateway does not start with routes that do not compile.
    pub(crate) fn new(
        set: &RouteSet,
        source: String,
        resources: Resources,
    ) -> Result<Self, RouteError> {
        let table = RouteTable::compile(set, &resources, None)?;
        Ok(Self {
            table: RwLock::new(Arc::new(table)),
            status: RwLock::new(RoutesStatus {
                source,
                version: 1,
                loaded_at: now(),
                refused: 0,
                last_error: None,
            }),
            resources,
        })
    }

    /// The table in force.
    pub(crate) fn current(&self) -> Arc<RouteTable> {
        Arc::clone(&self.table.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub(crate) fn status(&self) -> RoutesStatus {
        self.status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Compiles `set` and puts it in force; on error the table in force stays.
    pub(crate) fn offer(&self, set: &RouteSet) -> Result<(), RouteError> {
        let current = self.current();
        if current.set == *set {
            return Ok(());
        }
        let compiled = RouteTable::compile(set, &self.resources, Some(&current));
        let mut status = self.status.write().unwrap_or_else(|e| e.into_inner());
        match compiled {
            Ok(table) => {
                *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
                status.version += 1;
                status.loaded_at = now();
                status.last_error = None;
                tracing::info!(version = status.version, routes = set.routes.len(), source = %status.source, "routes reloaded");
                Ok(())
            }
            Err(e) => {
                status.refused += 1;
                status.last_error = Some(e.to_string());
                tracing::error!(error = %e, source = %status.source, "route set refused; the routes in force stay");
                Err(e)
            }
        }
    }

    /// Counts a set that could not even be read (bad YAML, unknown fields).
    pub(crate) fn unreadable(&self, error: &str) {
        let mut status = self.status.write().unwrap_or_else(|e| e.into_inner());
        status.refused += 1;
        status.last_error = Some(error.to_owned());
        tracing::error!(error, source = %status.source, "route set unreadable; the routes in force stay");
    }
}

fn now() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}
