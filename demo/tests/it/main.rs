//! The demo, as a user runs it: the binary, its child processes, its report.

mod choreography;
mod scenario;
mod support;
