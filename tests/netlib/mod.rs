//! Helpers of the end-to-end tests: throw-away network namespaces joined by
//! two veth pairs, real MPTCP transfers driven from Rust threads, and
//! readers of the kernel's view (`ss`, `nstat`, `ip link`, bpftool, tcx
//! queries). Everything a test creates is named `<pid>-<counter>` and goes
//! away in `Drop`, also when the test panics.
//!
//! - `cmd`: commands with a deadline, in a namespace, polling
//! - `testbed`: the namespaces, veth pairs and router of a test, its state
//!   dir, the skip checks, cleanup (RAII) and the stale-run sweep
//! - `mptcp`: MPTCP sockets, transfers, uploads; `ss -tni` and `nstat`
//! - `kview`: XDP / tcx attachments, BPF objects by id, pins
//! - `wire`: the on-the-wire judge (probes through the chains)
//!
//! Every name is re-exported here: a test says `netlib::Testbed`.

#![allow(dead_code)]

mod cmd;
mod kview;
mod mptcp;
mod testbed;
pub mod wire;

pub use cmd::*;
pub use kview::*;
pub use mptcp::*;
pub use testbed::*;
