//! `emptcp run --metrics ADDR:PORT`: `GET /metrics` in the Prometheus text
//! format (version 0.0.4). A scrape reads what `emptcp stats --format
//! prometheus` prints (stats.rs: per-CPU counters and `record`'s flow map,
//! read by map lookups from user space, under the state directory's shared
//! lock) and adds the service's own health (service.rs). The BPF programs
//! never wait for a scrape: they bump per-CPU counters and hash entries
//! that user space only reads.
//!
//! One thread serves requests one at a time (tiny_http), blocking in
//! accept: no polling.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{anyhow, Result};

use crate::observe::stats::{self, family};
use crate::runtime::Runtime;

/// What the service reports about itself.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// Successful applies of the policy file (1 after the start).
    pub generation: u64,
    /// Whether the last apply or reload succeeded.
    pub last_ok: bool,
    /// When it was tried (Unix seconds).
    pub last_at: f64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
    /// Chains the applied file holds.
    pub chains: usize,
    pub started_at: f64,
}

pub type Shared = Arc<Mutex<Health>>;

/// Unix time in seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The service's health families.
fn health_text(h: &Health, o: &mut String, stats_ok: bool, scrape_s: f64) {
    let one = |v: String| vec![(String::new(), v)];
    family(
        o,
        "emptcp_run_generation",
        "gauge",
        "successful applies of the policy file since the service started",
        &one(h.generation.to_string()),
    );
    family(
        o,
        "emptcp_run_last_reload_success",
        "gauge",
        "1 when the last apply or reload of the policy file succeeded",
        &one(u8::from(h.last_ok).to_string()),
    );
    family(
        o,
        "emptcp_run_last_reload_timestamp_seconds",
        "gauge",
        "when the policy file was last applied or reloaded (Unix time)",
        &one(format!("{:.3}", h.last_at)),
    );
    family(
        o,
        "emptcp_run_reloads_total",
        "counter",
        "reloads (SIGHUP) by result",
        &[
            ("result=\"ok\"".into(), h.reloads_ok.to_string()),
            ("result=\"error\"".into(), h.reloads_failed.to_string()),
        ],
    );
    family(
        o,
        "emptcp_run_chains",
        "gauge",
        "chains in the applied policy file",
        &one(h.chains.to_string()),
    );
    family(
        o,
        "emptcp_run_start_time_seconds",
        "gauge",
        "when the service started (Unix time)",
        &one(format!("{:.3}", h.started_at)),
    );
    family(
        o,
        "emptcp_scrape_stats_ok",
        "gauge",
        "1 when this scrape could read the state, counters and flows",
        &one(u8::from(stats_ok).to_string()),
    );
    family(
        o,
        "emptcp_scrape_duration_seconds",
        "gauge",
        "time this scrape took to read the state, counters and flows",
        &one(format!("{scrape_s:.6}")),
    );
}

/// The whole `/metrics` page.
pub fn page(rt: &Runtime, health: &Shared) -> String {
    let t0 = Instant::now();
    let st = stats::collect(rt);
    let scrape_s = t0.elapsed().as_secs_f64();
    let mut o = String::new();
    let ok = match &st {
        Ok(s) => {
            o.push_str(&stats::prometheus(s));
            true
        }
        Err(_) => false,
    };
    let h = health.lock().map(|h| h.clone()).unwrap_or_default();
    health_text(&h, &mut o, ok, scrape_s);
    o
}

/// Listens on `addr` (before anything is applied: a port in use changes
/// nothing).
pub fn bind(addr: SocketAddr) -> Result<tiny_http::Server> {
    tiny_http::Server::http(addr).map_err(|e| anyhow!("--metrics {addr}: failed to listen: {e}"))
}

/// Serves `/metrics` from a thread of its own.
pub fn serve(server: tiny_http::Server, rt: Runtime, health: Shared) -> Result<()> {
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for req in server.incoming_requests() {
                let (code, ctype, body) = match (req.method(), req.url()) {
                    (tiny_http::Method::Get, "/metrics") => (
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        page(&rt, &health),
                    ),
                    (tiny_http::Method::Get, "/") => (
                        200,
                        "text/plain; charset=utf-8",
                        "emptcp: see /metrics\n".into(),
                    ),
                    (tiny_http::Method::Get, _) => {
                        (404, "text/plain; charset=utf-8", "not found\n".into())
                    }
                    _ => (405, "text/plain; charset=utf-8", "only GET\n".into()),
                };
                let header =
                    tiny_http::Header::from_bytes("Content-Type", ctype).expect("a valid header");
                let resp = tiny_http::Response::from_string(body)
                    .with_status_code(code)
                    .with_header(header);
                // a scraper that hung up is its own business
                let _ = req.respond(resp);
            }
        })?;
    Ok(())
}

/// Checks text against the exposition format the way a scraper reads it:
/// `# HELP`/`# TYPE` lines, sample lines `name{k="v",…} value`, names and
/// label names of the allowed characters, label values quoted with `\\`,
/// `\"`, `\n` escapes, numeric values, every sample after its family's
/// TYPE, one TYPE per family, a family's samples together. Returns the
/// number of samples, or the first offending line.
pub fn lint(text: &str) -> Result<usize, String> {
    fn name_ok(n: &str) -> bool {
        let mut cs = n.chars();
        matches!(cs.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
            && cs.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }
    let mut typed: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    let mut samples = 0;
    for (i, line) in text.lines().enumerate() {
        let bad = |why: &str| format!("line {}: {why}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut f = rest.splitn(3, ' ');
            match (f.next(), f.next(), f.next()) {
                (Some("HELP"), Some(n), _) if name_ok(n) => {}
                (Some("TYPE"), Some(n), Some(t)) if name_ok(n) => {
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&t) {
                        return Err(bad("unknown type"));
                    }
                    // promtool's lint: a counter's name says it is one
                    if t == "counter" && !n.ends_with("_total") {
                        return Err(bad("a counter's name must end in _total"));
                    }
                    if typed.iter().any(|x| x == n) {
                        return Err(bad("second TYPE for a family"));
                    }
                    typed.push(n.to_owned());
                    current = Some(n.to_owned());
                }
                (Some("HELP" | "TYPE"), _, _) => return Err(bad("malformed HELP or TYPE")),
                _ => {}
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(p) => line.split_at(p),
            None => return Err(bad("no value")),
        };
        if !name_ok(name) {
            return Err(bad("bad metric name"));
        }
        let value = if let Some(labels) = rest.strip_prefix('{') {
            let mut chars = labels.char_indices().peekable();
            let mut end = None;
            loop {
                // name="value" [,]
                let start = match chars.peek() {
                    Some((_, '}')) => {
                        end = chars.next().map(|(p, _)| p);
                        break;
                    }
                    Some((p, _)) => *p,
                    None => break,
                };
                let eq = labels[start..]
                    .find('=')
                    .ok_or_else(|| bad("label without ="))?;
                if !name_ok(&labels[start..start + eq]) {
                    return Err(bad("bad label name"));
                }
                while chars.peek().is_some_and(|(p, _)| *p < start + eq + 1) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    return Err(bad("label value not quoted"));
                }
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\' | '"' | 'n')) => {}
                            _ => return Err(bad("bad escape in a label value")),
                        },
                        Some((_, '"')) => break,
                        Some((_, '\n')) | None => return Err(bad("unterminated label value")),
                        Some(_) => {}
                    }
                }
                if let Some((_, ',')) = chars.peek() {
                    chars.next();
                }
            }
            let end = end.ok_or_else(|| bad("labels not closed"))?;
            labels[end + 1..].to_owned()
        } else {
            rest.to_owned()
        };
        let mut v = value.split_whitespace();
        let num = v.next().ok_or_else(|| bad("no value"))?;
        let num_ok = num.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&num);
        if !num_ok || v.next().is_some_and(|ts| ts.parse::<i64>().is_err()) {
            return Err(bad("value is not a number"));
        }
        let fam = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|b| typed.iter().any(|t| t == b))
            })
            .unwrap_or(name);
        if current.as_deref() != Some(fam) {
            return Err(bad(if typed.iter().any(|t| t == fam) {
                "sample apart from the rest of its family"
            } else {
                "sample without a TYPE before it"
            }));
        }
        samples += 1;
    }
    Ok(samples)
}

/// A page as the health part alone would print it (tests).
pub fn health_only(h: &Health) -> String {
    let mut o = String::new();
    health_text(h, &mut o, true, 0.0);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::stats::{ConnStats, DirStats, Stats, SubflowStats};

    #[test]
    fn the_page_is_valid_exposition_text() {
        let f = SubflowStats {
            a: "10.0.0.1:40000".into(),
            b: "10.0.0.2:80".into(),
            a_to_b: DirStats {
                packets: 3,
                bytes: 100,
                retrans: 0,
                window: 500,
            },
            b_to_a: DirStats::default(),
            rtt_samples: 1,
            rtt_avg_us: Some(12.5),
            rtt_last_us: Some(12.5),
            tokens: vec!["0a0b0c0d".into()],
            join_token: None,
            first_ns: 0,
            last_ns: 0,
        };
        let s = Stats {
            connections: vec![ConnStats {
                tokens: vec!["0a0b0c0d".into()],
                subflows: vec![f.clone(), f],
            }],
            chains: Vec::new(),
            entry: [("tc".to_string(), [("seen".to_string(), 7u64)].into())].into(),
        };
        let mut page = stats::prometheus(&s);
        page.push_str(&health_only(&Health {
            generation: 2,
            last_ok: true,
            ..Default::default()
        }));
        assert_eq!(lint(&page), Ok(8 * 2 + 2 + 1 + 9), "{page}");
        assert!(page.contains("emptcp_run_generation 2\n"), "{page}");
    }

    #[test]
    fn lint_finds_what_a_scraper_refuses() {
        let ok = "# TYPE a_total counter\na_total{x=\"1\\\"\"} 1\na_total 2\n";
        assert_eq!(lint(ok), Ok(2));
        for bad in [
            "a 1\n",                                      // no TYPE
            "# TYPE a gauge\na{x=1} 1\n",                 // unquoted
            "# TYPE a gauge\na{x=\"1} 1\n",               // unterminated
            "# TYPE a gauge\na one\n",                    // not a number
            "# TYPE a gauge\n# TYPE b gauge\nb 1\na 1\n", // family split
            "# TYPE a gauge\n# TYPE a gauge\n",           // TYPE twice
            "# TYPE 1a gauge\n",                          // bad name
            "# TYPE a counter\na 1\n",                    // counter without _total
        ] {
            assert!(lint(bad).is_err(), "accepted {bad:?}");
        }
        // a label value escaped by stats::label passes
        let v = stats::label("a\"b\\c\nd");
        assert_eq!(lint(&format!("# TYPE m gauge\nm{{l=\"{v}\"}} 1\n")), Ok(1));
    }
}
