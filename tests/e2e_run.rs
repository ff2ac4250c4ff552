//! `emptcp run` as a service, and `apply --prune`. The service runs in the
//! background on a routed testbed (client - router - server) and is judged
//! on the wire the way e2e_steer.rs judges `set_mark`: a marked subflow's
//! client packets leave the router over r2b (an `ip rule fwmark`), read
//! from the router's own interface counters. The file is edited and
//! SIGHUP sent: the new chain acts, the removed one no longer does; a
//! broken file and SIGHUP keep what runs; SIGTERM leaves no chain, pin or
//! program. `/metrics` is checked as Prometheus text (metrics::lint, and
//! `promtool check metrics` where it is installed).
//! Needs root; otherwise every test prints "SKIPPED: needs root" and passes.

mod netlib;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netlib::*;

/// `emptcp run` in the background, its stderr lines collected.
struct Service {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Service {
    fn start(dir: &Path, args: &[&str]) -> Service {
        let d = dir.to_string_lossy().into_owned();
        let mut child = Command::new(EMPTCP)
            .args(["--state-dir", &d, "run"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start emptcp run");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (l, err) = (log.clone(), child.stderr.take().expect("stderr"));
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                l.lock().unwrap().push(line);
            }
        });
        Service { child, log }
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a log line containing `what`, and returns it.
    fn wait_line(&self, what: &str) -> String {
        wait_for(Duration::from_secs(20), || {
            self.lines().into_iter().find(|l| l.contains(what))
        })
        .unwrap_or_else(|| panic!("no line with {what:?} from emptcp run: {:#?}", self.lines()))
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal emptcp run");
    }

    /// SIGTERM, then the exit code.
    fn stop(mut self) -> (Option<i32>, Vec<String>) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let code = wait_for(Duration::from_secs(20), || {
            self.child.try_wait().ok().flatten()
        })
        .expect("emptcp run exits after SIGTERM")
        .code();
        std::thread::sleep(Duration::from_millis(100));
        (code, self.lines())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A free TCP port on the loopback address.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// `GET /metrics`, the body.
fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).expect("read /metrics");
    let (head, body) = r.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_owned()
}

/// One sample's value (`name` with its labels, exactly as printed).
fn sample(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{page}"))
}

/// Checks the page as a scraper would, and with promtool when installed.
fn check_exposition(page: &str, tmp: &Path) {
    let n = emptcp::metrics::lint(page).unwrap_or_else(|e| panic!("{e}\n{page}"));
    assert!(n > 10, "{n} samples");
    if run("sh", &["-c", "command -v promtool"]).ok() {
        let f = tmp.join("metrics.txt");
        std::fs::write(&f, page).unwrap();
        let o = run(
            "sh",
            &["-c", &format!("promtool check metrics < {}", f.display())],
        );
        assert!(o.ok(), "promtool check metrics: {}{}", o.stdout, o.stderr);
        eprintln!("promtool check metrics: ok");
    }
}

/// A tshark capture of TCP packets leaving a device, by IPv4 source.
struct Capture {
    child: Child,
}

impl Capture {
    fn start(ns: &str, dev: &str) -> Capture {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "tshark", "-l", "-i", dev, "-f", "tcp"])
            .args(["-T", "fields", "-e", "ip.src", "-a", "duration:30"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tshark");
        // tshark says "Capturing on" once it listens
        let err = child.stderr.take().expect("tshark stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line.contains("Capturing on") {
                    let _ = tx.send(());
                }
                line.clear();
            }
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(20)).is_ok(),
            "tshark did not start capturing"
        );
        // "Capturing on" comes before dumpcap has its socket for sure
        std::thread::sleep(Duration::from_millis(500));
        Capture { child }
    }

    /// Stops the capture: packets per IPv4 source.
    fn stop(mut self) -> std::collections::BTreeMap<String, u64> {
        std::thread::sleep(Duration::from_millis(300));
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let mut out = String::new();
        let mut so = self.child.stdout.take().expect("stdout");
        so.read_to_string(&mut out).expect("tshark output");
        let _ = self.child.wait();
        let mut n = std::collections::BTreeMap::new();
        for l in out.lines().filter(|l| !l.trim().is_empty()) {
            *n.entry(l.trim().to_owned()).or_insert(0) += 1;
        }
        n
    }
}

/// A chain on the router marking the client's packets from `src` (2:
/// out over r2b).
fn mark_chain(name: &str, bed: &Testbed, dev: &str, src: std::net::IpAddr) -> String {
    format!(
        "[[chain]]\nname = \"{name}\"\ndev = \"{dev}\"\nhook = \"tc-ingress\"\nnetns = \"{}\"\n\
         [[chain.select]]\nkind = \"ip_pair\"\nsrc = \"{src}\"\n\
         [[chain.act]]\nkind = \"record\"\nmetrics = [\"packets\", \"bytes\"]\n\
         [[chain.act]]\nkind = \"set_mark\"\nmark = 2\n",
        bed.r
    )
}

/// A download; returns the client's segments out on each subflow (first,
/// second address) and the packets of each that left the router over r2b
/// (a tshark capture there). `mid` runs while the connection is open.
fn download(bed: &Testbed, mid: impl FnOnce()) -> ((u64, u64), (u64, u64)) {
    let cap = Capture::start(&bed.r, &bed.r2b);
    let mut t = Transfer::start_bulk(bed, Duration::from_secs(2));
    t.wait_sent();
    let (socks, text) = ss_tni(&bed.a);
    let segs = |a: std::net::IpAddr| {
        socks
            .iter()
            .filter(|s| s.is_subflow())
            .find(|s| s.local.trim_start_matches('[').starts_with(&a.to_string()))
            .unwrap_or_else(|| panic!("no subflow from {a} on the client:\n{text}"))
            .field("segs_out")
    };
    let s = (segs(bed.client_addr1()), segs(bed.client_addr2()));
    mid();
    assert_complete(t.finish());
    let on_r2b = cap.stop();
    let n = |a: std::net::IpAddr| on_r2b.get(&a.to_string()).copied().unwrap_or(0);
    let r2b = (n(bed.client_addr1()), n(bed.client_addr2()));
    eprintln!("client segs out (sf1, sf2) {s:?}; over r2b by source {on_r2b:?}");
    assert!(
        s.0 > 100 && s.1 > 100,
        "both subflows carried traffic: {s:?}"
    );
    (s, r2b)
}

#[test]
fn run_applies_reloads_on_sighup_and_cleans_up_on_sigterm() {
    if !root_or_skip("run_applies_reloads_on_sighup_and_cleans_up_on_sigterm") {
        return;
    }
    let bed = Testbed::routed(Family::V4);
    let r = bed.r.as_str();
    sh(
        "ip",
        &[
            "-n",
            r,
            "route",
            "add",
            "10.3.0.0/24",
            "via",
            "10.4.0.2",
            "dev",
            &bed.r2b,
            "table",
            "20",
        ],
    );
    sh(
        "ip",
        &["-n", r, "rule", "add", "fwmark", "0x2", "table", "20"],
    );
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    // generation 1: the joined subflow (client's 2nd address) out over r2b
    let v1 = format!(
        "[[set]]\nname = \"spare\"\ntype = \"addr\"\nelements = []\n\n{}",
        mark_chain("steer-join", &bed, &bed.r2a, bed.client_addr2())
    );
    let file = bed.policy("svc", &v1);
    let svc = Service::start(
        &bed.state_dir,
        &[file.to_str().unwrap(), "--metrics", &metrics],
    );
    svc.wait_line("running (pid");
    let ((sf1, sf2), (r2b1, r2b2)) = download(&bed, || {});
    assert!(
        r2b2 * 10 >= sf2 * 9,
        "generation 1: the joined subflow's {sf2} segments leave over r2b ({r2b2})"
    );
    assert!(
        r2b1 * 100 <= sf1,
        "generation 1: the first subflow stays off r2b ({r2b1} of {sf1})"
    );

    // bad input while it runs: a second `run` refuses in one line, exit 1;
    // `detach --all` is refused; reading commands and `set` work
    let second = bed.emptcp(&["run", file.to_str().unwrap()]);
    assert_eq!(second.code, Some(1), "{second:?}");
    assert_eq!(second.stderr_lines().len(), 1, "{}", second.stderr);
    assert!(
        second.stderr.contains("another `emptcp run` (pid "),
        "{}",
        second.stderr
    );
    let da = bed.emptcp(&["detach", "--all"]);
    assert_eq!(da.code, Some(1), "{da:?}");
    assert!(
        da.stderr.contains("served by `emptcp run`"),
        "{}",
        da.stderr
    );
    bed.emptcp(&["show"]).expect_ok();
    bed.emptcp(&["stats", "--format", "prometheus"]).expect_ok();
    bed.emptcp(&["set", "add", "spare", "10.99.0.1"])
        .expect_ok();
    let l = bed.emptcp(&["set", "list", "spare"]).expect_ok();
    assert_eq!(l.stdout, "10.99.0.1\n");

    // generation 2: steer-join gone, steer-first (the initial subflow) new
    let v2 = mark_chain("steer-first", &bed, &bed.r1a, bed.client_addr1());
    std::fs::write(&file, &v2).unwrap();
    svc.signal(nix::sys::signal::Signal::SIGHUP);
    let l = svc.wait_line("(generation 2)");
    assert!(l.contains("removed chain steer-join, set spare"), "{l}");
    // a broken file and SIGHUP: one line, generation 2 keeps running
    std::fs::write(&file, format!("{v2}\n[[chain]\n")).unwrap();
    svc.signal(nix::sys::signal::Signal::SIGHUP);
    let l = svc.wait_line("reload failed");
    assert!(
        l.contains("generation 2 still runs") && l.contains("svc.toml"),
        "{l}"
    );
    // scraped while record still holds the connection's subflows
    let page = std::cell::RefCell::new(String::new());
    let ((sf1, sf2), (r2b1, r2b2)) = download(&bed, || {
        *page.borrow_mut() = scrape(port);
    });
    assert!(
        r2b1 * 10 >= sf1 * 9,
        "generation 2: the first subflow's {sf1} segments leave over r2b ({r2b1})"
    );
    assert!(r2b2 * 100 <= sf2, "generation 2: the removed chain no longer steers the joined subflow ({r2b2} of {sf2} over r2b)");

    let page = page.into_inner();
    check_exposition(&page, &bed.tmp);
    assert_eq!(sample(&page, "emptcp_run_generation"), 2.0);
    assert_eq!(sample(&page, "emptcp_run_last_reload_success"), 0.0);
    assert_eq!(
        sample(&page, "emptcp_run_reloads_total{result=\"error\"}"),
        1.0
    );
    let hits = format!(
        "emptcp_stage_packets_total{{chain=\"steer-first\",dev=\"{}\",hook=\"tc-ingress\",",
        bed.r1a
    );
    assert!(page.contains(&hits), "{page}");
    assert!(!page.contains("chain=\"steer-join\""), "{page}");
    assert!(
        page.contains("emptcp_subflow_packets_total{token=\""),
        "record's subflows on the page: {page}"
    );

    // SIGTERM: exit 0, no chain, pin or program left
    let ids = owned_ids(&bed.state_dir);
    assert!(!ids.progs.is_empty(), "the state dir pins programs");
    let (code, lines) = svc.stop();
    assert_eq!(code, Some(0), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("stopped; removed chain steer-first")),
        "{lines:#?}"
    );
    assert!(
        !bed.state_dir.exists(),
        "state dir left: {}",
        bed.state_dir.display()
    );
    for d in [&bed.r1a, &bed.r2a] {
        assert_nothing_attached(r, d);
    }
    let left = still_loaded(&ids);
    assert!(
        left.progs.is_empty() && left.links.is_empty(),
        "left in the kernel: {left:?}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "metrics port still open"
    );
}

/// `apply --prune`: the file is the whole desired state.
#[test]
fn apply_prune_removes_what_the_file_does_not_name() {
    if !root_or_skip("apply_prune_removes_what_the_file_does_not_name") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let chain = |name: &str, dev: &str, set: &str| {
        format!(
            "[[chain]]\nname = \"{name}\"\ndev = \"{dev}\"\nhook = \"tc-ingress\"\nnetns = \"{}\"\n\
             [[chain.select]]\nkind = \"src\"\nset = \"{set}\"\n[[chain.act]]\nkind = \"set_mark\"\nmark = 1\n",
            bed.a
        )
    };
    let set = |name: &str, ty: &str| {
        format!("[[set]]\nname = \"{name}\"\ntype = \"{ty}\"\nelements = []\n")
    };
    let all = format!(
        "{}{}{}{}",
        set("s1", "addr"),
        set("s2", "addr"),
        chain("a", &bed.x1a, "s1"),
        chain("b", &bed.x2a, "s2")
    );
    let f = bed.policy("all", &all);
    bed.emptcp(&["apply", f.to_str().unwrap()]).expect_ok();
    // s1 changes type: made anew; s2 and chain b go; x2a is left bare
    let less = format!("{}{}", set("s1", "prefix"), chain("a", &bed.x1a, "s1"));
    let g = bed.policy("less", &less);
    let dry = bed
        .emptcp(&["apply", "--dry-run", "--prune", g.to_str().unwrap()])
        .expect_ok();
    assert!(
        dry.stdout.contains("remove chain b\n") && dry.stdout.contains("remove set s2\n"),
        "{}",
        dry.stdout
    );
    assert_eq!(
        show_json(&bed).as_array().map(Vec::len),
        Some(2),
        "dry run changed nothing"
    );
    let o = bed
        .emptcp(&["apply", "--prune", g.to_str().unwrap()])
        .expect_ok();
    assert!(
        o.stdout.contains("removed chain b\nremoved set s2\n"),
        "{}",
        o.stdout
    );
    let show = show_json(&bed);
    let names: Vec<&str> = show
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["a"]);
    assert_nothing_attached(&bed.a, &bed.x2a);
    assert_eq!(
        tcx_count(&bed.a, &bed.x1a, false),
        1,
        "chain a still attached"
    );
    bed.emptcp(&["set", "add", "s1", "10.0.0.0/8"]).expect_ok();
    let e = bed.emptcp(&["set", "list", "s2"]);
    assert_eq!(e.code, Some(1));
    assert_eq!(e.stderr.trim(), "emptcp: no set or map called \"s2\"");
    // without --prune nothing goes
    let e = bed.emptcp(&["apply", f.to_str().unwrap()]);
    assert_eq!(e.code, Some(1));
    assert!(e.stderr.contains("exists with prefix keys"), "{}", e.stderr);
    assert_eq!(
        show_json(&bed).as_array().map(Vec::len),
        Some(1),
        "a refused apply changed nothing"
    );
}

/// Bad input to `run`: one line, exit 1, nothing left behind.
#[test]
fn run_refuses_bad_input_in_one_line() {
    if !root_or_skip("run_refuses_bad_input_in_one_line") {
        return;
    }
    let bed = Testbed::new(Family::V4);
    let missing = bed.tmp.join("missing.toml");
    let bad = bed.policy("bad", "[[chain]]\nname = \"x\"\n");
    let good = bed.policy(
        "good",
        &format!(
            "[[chain]]\nname = \"g\"\ndev = \"{}\"\nhook = \"tc-ingress\"\nnetns = \"{}\"\n\
             [[chain.select]]\nkind = \"port\"\ndport = 80\n[[chain.act]]\nkind = \"set_mark\"\nmark = 1\n",
            bed.x1a, bed.a
        ),
    );
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_addr = busy.local_addr().unwrap().to_string();
    for (args, what) in [
        (vec![missing.to_str().unwrap()], "missing.toml"),
        (vec![bad.to_str().unwrap()], "bad.toml"),
        (
            vec![good.to_str().unwrap(), "--metrics", busy_addr.as_str()],
            "failed to listen",
        ),
    ] {
        let mut a = vec!["run"];
        a.extend(args);
        let o = bed.emptcp(&a);
        assert_eq!(o.code, Some(1), "{o:?}");
        assert_eq!(o.stderr_lines().len(), 1, "{}", o.stderr);
        assert!(o.stderr.contains(what), "{}", o.stderr);
        assert!(
            !bed.state_dir.exists(),
            "{a:?} left {}",
            bed.state_dir.display()
        );
        assert_nothing_attached(&bed.a, &bed.x1a);
    }
}
