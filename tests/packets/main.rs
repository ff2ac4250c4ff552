//! Packet-level tests: chains built from policy text run every fixture
//! through BPF_PROG_TEST_RUN (emptcp::testrun::Harness) on XDP and on TC,
//! and every output is checked against a golden expectation and by an
//! independent decoder (tests/pktlib: our own option walker, checksums and
//! length checks, plus etherparse).
//!
//! A fixture is {description, input packet, hook(s), policy, expected
//! verdict, expected output, expected counter deltas}. Expected outputs
//! are "unchanged" or "MP_PRIO (len 3 + NOP, B bit) added": right after the
//! fixed TCP header on XDP, after the last option on TC (which also cuts a
//! link trailer), everything else identical. The expected packet is built
//! again from the fixture's description by etherparse (full checksums) and
//! cross-checked against an RFC 1624 incremental transform of the input.
//!
//! One module per stage (or concern), all on one fixture runner:
//! `fixture` (the golden-case runner), `probe` (selectors against a
//! model); `abi`, `selfcheck`; `packet_type`, `ip_pair`, `tuple`,
//! `verdict`, `chains`, `set_backup`, `rate_limit`; `malformed`.
//!
//! Needs root (BPF_PROG_TEST_RUN, bpffs); otherwise every test prints
//! "SKIPPED: needs root" and returns.

#[allow(dead_code)] // a shared test library: not every test binary uses all of it
#[path = "../pktlib/mod.rs"]
mod pktlib;

mod fixture;
mod probe;

mod abi;
mod chains;
mod ip_pair;
mod malformed;
mod packet_type;
mod rate_limit;
mod selfcheck;
mod set_backup;
mod tuple;
mod verdict;
