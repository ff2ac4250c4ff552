//! The command line: `emptcp [-n NETNS] [-v] COMMAND`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::attach::XdpMode;

/// eBPF control framework for Linux Multipath TCP: attach chains of
/// selectors and actors to interfaces (XDP, TC) to steer MPTCP subflows.
#[derive(Debug, Parser)]
#[command(name = "emptcp", version, about, propagate_version = true)]
pub struct Cli {
    /// Work inside this network namespace (like `ip -n`); state stays in the host's bpffs
    #[arg(short = 'n', long = "netns", global = true, value_name = "NETNS")]
    pub netns: Option<String>,

    /// Print libbpf's log, and the whole verifier log when a load fails
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// bpffs directory holding emptcp's maps, links and state
    #[arg(long, global = true, env = "EMPTCP_STATE_DIR", default_value = crate::state::DEFAULT_DIR, value_name = "DIR")]
    pub state_dir: PathBuf,

    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, or atomically replace, the chains of a policy file
    Apply {
        /// Policy file (TOML)
        policy: PathBuf,
        /// Parse and plan only: print what would be attached
        #[arg(long)]
        dry_run: bool,
        /// XDP attach mode for new XDP chains
        #[arg(long, value_enum, default_value_t = XdpMode::Auto)]
        xdp_mode: XdpMode,
    },
    /// Parse a policy and load its programs through the verifier; attach nothing
    Check {
        /// Policy file (TOML)
        policy: PathBuf,
    },
    /// List applied chains: device, hook, stages and per-stage counters
    Show {
        /// Only this chain
        name: Option<String>,
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Remove chains, with their links and pins
    Detach {
        /// The chain to remove
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        name: Option<String>,
        /// Remove every chain and all of emptcp's state
        #[arg(long)]
        all: bool,
    },
    /// Stream MPTCP connection and subflow events (get_connect, get_subflow)
    Events {
        /// JSON lines
        #[arg(long)]
        json: bool,
        /// Only events of this chain
        #[arg(long)]
        chain: Option<String>,
        /// Stop after this many events
        #[arg(long)]
        count: Option<usize>,
        /// Stop after this many seconds
        #[arg(long)]
        timeout: Option<f64>,
    },
    /// Per-connection and per-subflow metrics from `record`, and per-stage counters
    Stats {
        /// JSON output
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Output format
        #[arg(long, value_parser = ["text", "prometheus"], default_value = "text")]
        format: String,
    },
    /// List every selector and actor with its parameters
    Catalog {
        /// JSON output
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff)
    Man,
}
