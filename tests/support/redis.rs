//! Real Redis for tests: a `redis-server` (or a three-master Cluster) on random loopback
//! ports in a temporary directory, stopped when dropped; `redis-cli` to look inside. No mocks.
//! Include with `#[path = "support/redis.rs"] mod redis_support;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis::limit::local::{LocalBounds, LocalStore};
use portcullis::limit::redis::{RedisConfig, RedisStore};
use portcullis::limit::{Clock, CounterStore, Evaluation, Op, OpSpec, Outcome, Rate};

/// See [`RedisServer::config`].
pub const TEST_TIMEOUT: Duration = Duration::from_secs(2);

/// A port that was free a moment ago (and, for Cluster, whose bus port +10000 was too).
fn free_port(with_bus: bool) -> u16 {
    for _ in 0..100 {
        let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = l.local_addr() else { continue };
        let port = addr.port();
        if !with_bus {
            return port;
        }
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free port");
}

fn spawn_server(port: u16, dir: &Path, extra: &[&str]) -> Child {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd
        .spawn()
        .expect("redis-server not found: install it (apt-get install redis-server)");
    wait_ready(port);
    child
}

fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() && cli_at(port, &["PING"]) == "PONG" {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("redis-server on port {port} did not start");
}

/// `redis-cli -p port args…`, its stdout trimmed.
pub fn cli_at(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One standalone `redis-server`.
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    pub fn start() -> Self {
        let port = free_port(false);
        let dir = tempfile::tempdir().expect("tempdir");
        let child = spawn_server(port, dir.path(), &[]);
        Self {
            port,
            dir,
            child: Some(child),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// The store's config for this server. The timeout is generous: these tests check
    /// semantics on a shared 2-core machine running other tests too, where a 20 ms bound
    /// would fail calls at random; the failure tests set their own.
    pub fn config(&self) -> RedisConfig {
        RedisConfig {
            url: self.url(),
            timeout: TEST_TIMEOUT,
            ..RedisConfig::default()
        }
    }

    pub fn cli(&self, args: &[&str]) -> String {
        cli_at(self.port, args)
    }

    /// The server's process id (for CPU accounting in benches), if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP: the server keeps its sockets but answers nothing (a hung server).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    /// A fresh server on the same port (empty: nothing was saved).
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn_server(self.port, self.dir.path(), &[]));
    }

    /// `INFO commandstats` as command → calls.
    pub fn command_calls(&self) -> HashMap<String, u64> {
        parse_commandstats(&self.cli(&["INFO", "commandstats"]))
    }

    pub fn dbsize(&self) -> u64 {
        self.cli(&["DBSIZE"]).parse().unwrap_or(u64::MAX)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn parse_commandstats(info: &str) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for line in info.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, stats)) = rest.split_once(':') else {
            continue;
        };
        let calls = stats
            .split(',')
            .find_map(|kv| kv.strip_prefix("calls="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        m.insert(name.to_string(), calls);
    }
    m
}

/// A master, one replica and one Sentinel watching them (quorum 1, failover after 500 ms of
/// silence), each on its own port and directory.
pub struct RedisSentinel {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel_port: u16,
    sentinel_dir: tempfile::TempDir,
    sentinel: Option<Child>,
}

pub const SENTINEL_MASTER: &str = "pcmaster";

impl RedisSentinel {
    pub fn start() -> Self {
        let master = RedisServer::start();
        let replica = RedisServer::start();
        let of = format!("127.0.0.1 {}", master.port);
        let mut parts = of.split(' ');
        let (h, p) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        // Redis waits `repl-diskless-sync-delay` (5 s by default) before the first full sync,
        // hoping more replicas join; with one replica that is only a delay.
        assert_eq!(
            master.cli(&["CONFIG", "SET", "repl-diskless-sync-delay", "0"]),
            "OK"
        );
        assert_eq!(replica.cli(&["REPLICAOF", h, p]), "OK");
        // The initial sync done before anything is written, so a later WAIT only waits for
        // the stream of writes, not for a full resync on a loaded machine.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
        {
            assert!(Instant::now() < deadline, "replica not in sync within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let sentinel_port = free_port(false);
        let sentinel_dir = tempfile::tempdir().expect("tempdir");
        let conf = sentinel_dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {sentinel_port}\nbind 127.0.0.1\ndir {}\n\
                 sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {SENTINEL_MASTER} 500\n\
                 sentinel failover-timeout {SENTINEL_MASTER} 2000\n",
                sentinel_dir.path().display(),
                master.port
            ),
        )
        .expect("sentinel.conf");
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        wait_ready(sentinel_port);
        Self {
            master,
            replica,
            sentinel_port,
            sentinel_dir,
            sentinel: Some(child),
        }
    }

    /// The store's config: the Sentinel, the master's name, the test timeout.
    pub fn config(&self) -> RedisConfig {
        RedisConfig {
            sentinels: vec![format!("redis://127.0.0.1:{}", self.sentinel_port)],
            sentinel_master: SENTINEL_MASTER.into(),
            timeout: TEST_TIMEOUT,
            ..RedisConfig::default()
        }
    }

    /// Waits until the replica has applied everything the master has written so far. (Not
    /// `WAIT`: from a fresh `redis-cli` connection, which wrote nothing, it returns at once.)
    pub fn wait_replica_caught_up(&self) {
        let offset = |srv: &RedisServer, field: &str| -> Option<u64> {
            let info = srv.cli(&["INFO", "replication"]);
            info.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse().ok())
        };
        let written = offset(&self.master, "master_repl_offset").expect("master offset");
        let deadline = Instant::now() + Duration::from_secs(30);
        while offset(&self.replica, "slave_repl_offset").map_or(true, |o| o < written) {
            assert!(
                Instant::now() < deadline,
                "replica did not reach offset {written} within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The port the Sentinel currently names as master.
    pub fn master_port(&self) -> String {
        let out = cli_at(
            self.sentinel_port,
            &["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER],
        );
        out.lines().nth(1).unwrap_or("").to_string()
    }
}

impl Drop for RedisSentinel {
    fn drop(&mut self) {
        if let Some(mut c) = self.sentinel.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Three masters, no replicas, slots spread by `redis-cli --cluster create`.
pub struct RedisCluster {
    pub ports: Vec<u16>,
    dirs: Vec<tempfile::TempDir>,
    children: Vec<Child>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let mut ports = Vec::new();
        let mut dirs = Vec::new();
        let mut children = Vec::new();
        for _ in 0..3 {
            let port = free_port(true);
            let dir = tempfile::tempdir().expect("tempdir");
            let conf = format!("nodes-{port}.conf");
            children.push(spawn_server(
                port,
                dir.path(),
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &conf,
                    "--cluster-node-timeout",
                    "5000",
                ],
            ));
            ports.push(port);
            dirs.push(dir);
        }
        let this = Self {
            ports,
            dirs,
            children,
        };
        let nodes: Vec<String> = this
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&nodes)
            .arg("--cluster-yes")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ok = this
                .ports
                .iter()
                .all(|&p| cli_at(p, &["CLUSTER", "INFO"]).contains("cluster_state:ok"));
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "cluster_state never became ok");
            std::thread::sleep(Duration::from_millis(100));
        }
        this
    }

    pub fn config(&self) -> RedisConfig {
        RedisConfig {
            cluster: self
                .ports
                .iter()
                .map(|p| format!("redis://127.0.0.1:{p}"))
                .collect(),
            timeout: TEST_TIMEOUT,
            ..RedisConfig::default()
        }
    }

    /// Keys held by each master.
    pub fn dbsizes(&self) -> Vec<u64> {
        self.ports
            .iter()
            .map(|&p| cli_at(p, &["DBSIZE"]).parse().unwrap_or(u64::MAX))
            .collect()
    }

    /// `redis-cli -c` (follows redirections) against the first node.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-c", "-h", "127.0.0.1", "-p", &self.ports[0].to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// Parity and inspection helpers for the Redis tests.

pub const SLACK: Duration = Duration::from_millis(30);

/// Unix time, the epoch Redis's TIME counts from: distinct-count buckets then start at the
/// same instants in both stores.
pub struct UnixClock;

impl Clock for UnixClock {
    fn now(&self) -> Duration {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    }
}

pub fn local() -> LocalStore {
    LocalStore::with_seed(Arc::new(UnixClock), LocalBounds::default(), 0x5eed)
}

/// Parity tests compare every answer, so the over-limit cache (which answers from memory) is
/// off there; it has its own test.
pub async fn store(cfg: RedisConfig) -> RedisStore {
    RedisStore::connect(&cfg).await.expect("connect")
}

pub fn no_cache(mut cfg: RedisConfig) -> RedisConfig {
    cfg.over_limit_cache = 0;
    cfg
}

pub async fn eval(s: &dyn CounterStore, ops: &[OpSpec]) -> Evaluation {
    s.evaluate(ops).await.expect("evaluate")
}

pub async fn probe(s: &dyn CounterStore, ops: &[OpSpec]) -> Vec<Outcome> {
    let mut v = ops.to_vec();
    v.push(blocker());
    let mut out = eval(s, &v).await.outcomes;
    out.pop();
    out
}

/// Same decisions and counts; durations within `SLACK` (the stores read their clocks a moment
/// apart; a distinct op's durations end on a bucket boundary, so within one bucket more).
pub fn assert_same(redis: &[Outcome], local: &[Outcome], ops: &[OpSpec], what: &str) {
    assert_eq!(redis.len(), local.len(), "{what}");
    for ((r, l), spec) in redis.iter().zip(local).zip(ops) {
        // A distinct op's durations end on a bucket boundary; the two reads may fall either
        // side of one.
        let slack = match spec.op {
            Op::Distinct { window, .. } => window / 6 + SLACK,
            _ => SLACK,
        };
        // (`Duration::abs_diff` is newer than the MSRV.)
        let close = |a: Duration, b: Duration| a.max(b) - a.min(b) <= slack;
        let same = match (r, l) {
            (
                Outcome::Allowed {
                    remaining: a,
                    reset: x,
                },
                Outcome::Allowed {
                    remaining: b,
                    reset: y,
                },
            ) => a == b && close(*x, *y),
            (
                Outcome::Denied {
                    current: a,
                    limit: c,
                    retry_after: x,
                },
                Outcome::Denied {
                    current: b,
                    limit: d,
                    retry_after: y,
                },
            ) => a == b && c == d && close(*x, *y),
            _ => false,
        };
        assert!(same, "{what}: redis {r:?} vs local {l:?}");
    }
}

/// Runs `ops` on both stores and checks they agree; returns both evaluations.
pub async fn both(
    r: &RedisStore,
    l: &LocalStore,
    ops: &[OpSpec],
    what: &str,
) -> (Evaluation, Evaluation) {
    let a = eval(r, ops).await;
    let b = l.evaluate_now(ops);
    assert_same(&a.outcomes, &b.outcomes, ops, what);
    assert_eq!(a.blocked, b.blocked, "{what}: blocked");
    (a, b)
}

pub async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn count_of(o: Outcome, max: u64) -> u64 {
    match o {
        Outcome::Allowed { remaining, .. } => max - remaining - 1,
        Outcome::Denied { current, .. } => current,
    }
}

/// Every key with its value, for "nothing changed" checks.
pub fn snapshot(srv: &RedisServer) -> Vec<(String, String)> {
    let keys = srv.cli(&["--scan"]);
    let mut out: Vec<(String, String)> = keys
        .lines()
        .map(|k| {
            let v = match srv.cli(&["TYPE", k]).as_str() {
                "zset" => srv.cli(&["ZRANGE", k, "0", "-1", "WITHSCORES"]),
                // A HyperLogLog's header caches its count (PFCOUNT rewrites it): compare the
                // registers only.
                _ if srv.cli(&["GETRANGE", k, "0", "3"]) == "HYLL" => {
                    srv.cli(&["GETRANGE", k, "16", "-1"])
                }
                _ => srv.cli(&["GET", k]),
            };
            (k.to_string(), v)
        })
        .collect();
    out.sort();
    out
}

// Op builders shared by the Redis tests and benches.

pub fn rate(key: &str, emission_ms: u64, burst: u32, cost: u32) -> OpSpec {
    OpSpec {
        op: Op::Rate {
            key: key.into(),
            rate: Rate {
                emission: Duration::from_millis(emission_ms),
                burst,
            },
            cost,
        },
        enforce: true,
    }
}

/// A rate that never denies while a bench runs (1 µs emission, a billion burst).
pub fn busy_rate(key: &str) -> OpSpec {
    OpSpec {
        op: Op::Rate {
            key: key.into(),
            rate: Rate {
                emission: Duration::from_micros(1),
                burst: 1_000_000_000,
            },
            cost: 1,
        },
        enforce: true,
    }
}

/// The benches' 10-op request: 6 rate, 2 distinct (`fp:hll` is the one a bench fills with
/// 10,000 members), 2 concurrency; none ever denies.
pub fn ten_ops() -> Vec<OpSpec> {
    let w = Duration::from_secs(3_600);
    let mut ops: Vec<OpSpec> = (0..6).map(|i| busy_rate(&format!("acct:{i}"))).collect();
    ops.push(distinct("fp:small", 7, 1_000_000, w));
    ops.push(distinct("fp:hll", 7, 1_000_000, w));
    ops.push(conc("conc:a", 1_000_000));
    ops.push(conc("conc:b", 1_000_000));
    ops
}

pub fn conc(key: &str, max: u32) -> OpSpec {
    OpSpec {
        op: Op::Concurrency {
            key: key.into(),
            max,
        },
        enforce: true,
    }
}

pub fn distinct(key: &str, member: u64, max: u32, window: Duration) -> OpSpec {
    OpSpec {
        op: Op::Distinct {
            key: key.into(),
            member,
            max,
            window,
        },
        enforce: true,
    }
}

pub fn shadow(mut spec: OpSpec) -> OpSpec {
    spec.enforce = false;
    spec
}

/// Always denied and enforcing (a cost above the burst never passes): appended to a request it
/// makes the request charge nothing, so the other ops' outcomes can be read ("probe").
pub fn blocker() -> OpSpec {
    rate("blocker", 1_000, 1, 2)
}

/// splitmix64: distinct inputs give distinct, well-spread members.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
