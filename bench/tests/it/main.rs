//! `msakit-bench` as users run it: the binary, its servers, its tables.

mod bench;
