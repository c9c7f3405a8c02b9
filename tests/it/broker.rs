//! A private, real RabbitMQ node per test: `Broker::start()` runs Debian's `rabbitmq-server`
//! (3.10.x) on free loopback ports with its own name, data dir, logs and Erlang cookie, and
//! stops it again when dropped.
//!
//! Starting a node takes seconds, so keep broker tests few and let one test check several
//! things against its node. Each test must call `Broker::start()` itself (a node shared through
//! a `static` would outlive every test runtime and never be stopped). Several nodes may run at
//! once: names, ports and directories never clash (only epmd on 127.0.0.1:4369 is shared, as
//! Erlang intends).
//!
//! The node is run straight from `/usr/lib/rabbitmq/bin` as the current user, not through
//! Debian's `/usr/sbin` wrapper (which `su`s to the `rabbitmq` user and refuses anyone but
//! root): everything lives in a temp dir owned by the test, and `HOME` points there so the
//! node and `rabbitmqctl` share a private cookie. There is no test without a broker: if
//! `rabbitmq-server` is missing, `start` panics with how to install it.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a node may take to accept AMQP connections (a loaded 2-core machine needs ~15 s).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a node may take to stop on SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one `rabbitmqctl` command may take.
const CTL_TIMEOUT: Duration = Duration::from_secs(60);

const INSTALL_HINT: &str = "RabbitMQ is not installed, and the broker tests need a real node. \
     Install it with `sudo apt-get install -y rabbitmq-server` (Debian/Ubuntu; the package \
     brings Erlang), or run `.ci/test.sh`, which installs it. The tests start their own \
     private nodes on free loopback ports; no system service needs to run.";

/// Keeps the Erlang distribution of our nodes and of `rabbitmqctl` on loopback.
const LOOPBACK_DIST: &str = "-kernel inet_dist_use_interface {127,0,0,1}";

/// A running (or stopped, see [`Broker::stop`]) private RabbitMQ node.
pub struct Broker {
    node: String,
    port: u16,
    dist_port: u16,
    sbin: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    /// Starts a fresh node on free loopback ports and waits until it accepts AMQP connections
    /// (timeout ~60 s, then panic with the node's log tail). Panics with an install hint if
    /// rabbitmq-server is missing.
    pub async fn start() -> Broker {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let sbin = sbin_dir().unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        // A port found free may be taken by someone else before the node binds it: try anew.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir = tempfile::Builder::new()
                .prefix("offboard-broker-")
                .tempdir()
                .expect("creating the broker's temp dir");
            let mut broker = Broker {
                node: format!("offboard-test-{}-{n}@localhost", std::process::id()),
                port: free_port(),
                dist_port: free_port(),
                sbin: sbin.clone(),
                dir,
                child: None,
            };
            broker.write_config();
            match broker.boot().await {
                Ok(()) => return broker,
                Err(why) if attempt < 3 && broker.log_tail().contains("eaddrinuse") => {
                    eprintln!("broker: {why}; retrying on other ports");
                }
                Err(why) => panic!("{why}\n{}", broker.log_tail()),
            }
        }
    }

    /// amqp://guest:guest@127.0.0.1:PORT/%2f  (guest may connect from loopback)
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The AMQP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The Erlang node name (`offboard-test-<pid>-<n>@localhost`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Stops the node (keeps its data dir and ports) — for broker-restart tests.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal_group(&child, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if child.try_wait().expect("waiting for the broker").is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        eprintln!(
            "broker {}: no stop after {STOP_TIMEOUT:?}, killing it",
            self.node
        );
        signal_group(&child, "KILL");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts it again with the same data, name and ports; waits until ready.
    pub async fn restart(&mut self) {
        self.stop().await;
        if let Err(why) = self.boot().await {
            panic!("{why}\n{}", self.log_tail());
        }
    }

    /// Messages ready in a queue, from a passive declare over AMQP (None if the queue does not
    /// exist). Not `rabbitmqctl list_queues`: its counts for quorum queues are statistics emitted
    /// every few seconds, and read stale right after a change.
    pub async fn queue_messages(&self, queue: &str) -> Option<u64> {
        use lapin::options::QueueDeclareOptions;
        let conn = lapin::Connection::connect(&self.url(), lapin::ConnectionProperties::default())
            .await
            .expect("connect to the test broker");
        let channel = conn.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let found = channel
            .queue_declare(queue.into(), passive, lapin::types::FieldTable::default())
            .await
            .ok()
            .map(|q| u64::from(q.message_count()));
        let _ = conn.close(200, "counted".into()).await;
        found
    }

    /// Messages delivered and not yet acknowledged, per queue, from `rabbitmqctl list_queues`.
    /// Its quorum-queue counts are statistics, emitted here every 100 ms
    /// (`collect_statistics_interval`): a caller waiting for zero asks again.
    pub async fn unacknowledged(&self) -> std::collections::HashMap<String, u64> {
        self.ctl(&[
            "list_queues",
            "--quiet",
            "--no-table-headers",
            "name",
            "messages_unacknowledged",
        ])
        .await
        .lines()
        .filter_map(|l| {
            let (name, n) = l.split_once('\t')?;
            Some((name.trim().to_owned(), n.trim().parse().ok()?))
        })
        .collect()
    }

    /// Any rabbitmqctl command against this node, returning stdout (for tests that need more).
    /// Panics, with the command's output, if it fails.
    pub async fn ctl(&self, args: &[&str]) -> String {
        let mut cmd = self.ctl_command(args);
        cmd.kill_on_drop(true);
        let out = tokio::time::timeout(CTL_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("rabbitmqctl {args:?}: no answer in {CTL_TIMEOUT:?}"))
            .expect("running rabbitmqctl");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            panic!(
                "rabbitmqctl -n {} {args:?} failed ({}):\n{stdout}\n{}",
                self.node,
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        stdout
    }

    fn ctl_command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(self.sbin.join("rabbitmqctl"));
        cmd.arg("-n")
            .arg(&self.node)
            .args(args)
            .env("HOME", self.dir.path())
            .env("RABBITMQ_CONF_ENV_FILE", self.path("rabbitmq-env.conf"))
            .env("RABBITMQ_CTL_ERL_ARGS", LOOPBACK_DIST)
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .stdin(Stdio::null());
        cmd
    }

    /// The node's data directory, for a bench measuring the broker's disk.
    #[allow(dead_code)] // benches/schedule.rs
    pub fn data_dir(&self) -> PathBuf {
        self.path("mnesia")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write_config(&self) {
        let files = [
            // Sourced by the scripts instead of /etc/rabbitmq/rabbitmq-env.conf.
            ("rabbitmq-env.conf", ""),
            ("enabled_plugins", "[].\n"),
            (
                "rabbitmq.conf",
                "loopback_users.guest = true\n\
                 disk_free_limit.absolute = 1MB\n\
                 log.console = false\n\
                 log.file.level = info\n\
                 collect_statistics_interval = 100\n",
            ),
            ("advanced.config", "[].\n"),
        ];
        for (name, text) in files {
            std::fs::write(self.path(name), text).expect("writing the broker's config");
        }
    }

    /// Spawns the node and waits until it speaks AMQP and `rabbitmqctl` sees it booted.
    async fn boot(&mut self) -> Result<(), String> {
        let started = Instant::now();
        let out = std::fs::File::create(self.path("startup.log")).expect("creating startup.log");
        let err = out.try_clone().expect("cloning startup.log");
        let child = {
            let mut cmd = Command::new(self.sbin.join("rabbitmq-server"));
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            cmd.current_dir(self.dir.path())
                .env("HOME", self.dir.path())
                .env("RABBITMQ_CONF_ENV_FILE", self.path("rabbitmq-env.conf"))
                .env("RABBITMQ_NODENAME", &self.node)
                .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
                .env("RABBITMQ_NODE_PORT", self.port.to_string())
                .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
                .env("RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS", LOOPBACK_DIST)
                .env("ERL_EPMD_ADDRESS", "127.0.0.1")
                .env("RABBITMQ_MNESIA_BASE", self.path("mnesia"))
                .env("RABBITMQ_LOG_BASE", self.path("log"))
                .env(
                    "RABBITMQ_ENABLED_PLUGINS_FILE",
                    self.path("enabled_plugins"),
                )
                .env("RABBITMQ_CONFIG_FILE", self.path("rabbitmq.conf"))
                .env(
                    "RABBITMQ_ADVANCED_CONFIG_FILE",
                    self.path("advanced.config"),
                )
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            match cmd.spawn() {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{INSTALL_HINT}"),
                Err(e) => panic!("spawning {}: {e}", self.sbin.display()),
            }
        };
        self.child = Some(child);

        let deadline = started + START_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(format!(
                    "broker {} exited while starting: {status}",
                    self.node
                ));
            }
            if amqp_answers(self.port).await {
                break;
            }
            if Instant::now() > deadline {
                self.stop().await;
                return Err(format!(
                    "broker {} did not accept AMQP on 127.0.0.1:{} within {START_TIMEOUT:?}",
                    self.node, self.port
                ));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Listeners open late in the boot; this also proves rabbitmqctl reaches the node.
        let left = deadline.saturating_duration_since(Instant::now()).as_secs();
        let mut cmd = self.ctl_command(&["await_startup", "--timeout", &left.max(5).to_string()]);
        cmd.kill_on_drop(true);
        let out = cmd.output().await.expect("running rabbitmqctl");
        if !out.status.success() {
            self.stop().await;
            return Err(format!(
                "rabbitmqctl await_startup failed for {}:\n{}{}",
                self.node,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        eprintln!(
            "broker {} ready on 127.0.0.1:{} after {:.1?}",
            self.node,
            self.port,
            started.elapsed()
        );
        Ok(())
    }

    /// The end of the node's startup output and log, for failure messages.
    fn log_tail(&self) -> String {
        let mut out = String::new();
        let log = self.path("log").join(format!("{}.log", self.node));
        for file in [self.path("startup.log"), log] {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            out.push_str(&format!("--- tail of {}:\n{tail}\n", file.display()));
        }
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        signal_group(&child, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!(
            "broker {}: no stop after {STOP_TIMEOUT:?}, killing it",
            self.node
        );
        signal_group(&child, "KILL");
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Sends a signal to the node's process group (the start script and the Erlang VM).
fn signal_group(child: &Child, signal: &str) {
    let _ = Command::new("/bin/sh")
        .arg("-c")
        // No `--`: dash's kill takes `-SIG -PGID` but not `--`.
        .arg(format!("kill -{signal} -{}", child.id()))
        .stderr(Stdio::null())
        .status();
}

/// Debian's unwrapped scripts, else the first directory on PATH with both scripts.
fn sbin_dir() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::iter::once(PathBuf::from("/usr/lib/rabbitmq/bin"))
        .chain(std::env::split_paths(&path))
        .find(|dir| is_file(&dir.join("rabbitmq-server")) && is_file(&dir.join("rabbitmqctl")))
}

fn is_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file())
}

/// A loopback port nobody listens on now, never the same twice in this process.
fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap();
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// Whether 127.0.0.1:`port` answers the AMQP 0-9-1 header with a method frame
/// (Connection.Start).
async fn amqp_answers(port: u16) -> bool {
    let talk = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).await?;
        stream.write_all(b"AMQP\x00\x00\x09\x01").await?;
        let mut frame = [0u8; 7];
        stream.read_exact(&mut frame).await?;
        Ok::<_, std::io::Error>(frame)
    };
    match tokio::time::timeout(Duration::from_secs(5), talk).await {
        // Frame type 1 = method, channel 0.
        Ok(Ok(frame)) => frame[0] == 1 && frame[1..3] == [0, 0],
        _ => false,
    }
}

#[tokio::test]
async fn a_node_starts_speaks_amqp_and_answers_rabbitmqctl() {
    let broker = Broker::start().await;
    assert!(broker.url().starts_with("amqp://guest:guest@127.0.0.1:"));
    assert!(broker.url().ends_with(&format!(":{}/%2f", broker.port())));

    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, broker.port()))
        .await
        .unwrap();
    stream.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
    let mut header = [0u8; 7];
    stream.read_exact(&mut header).await.unwrap();
    assert_eq!(header[0], 1, "a method frame");
    assert_eq!(&header[1..3], &[0, 0], "on channel 0");
    let size = u32::from_be_bytes(header[3..7].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; size + 1];
    stream.read_exact(&mut payload).await.unwrap();
    assert_eq!(
        &payload[..4],
        &[0, 10, 0, 10],
        "Connection.Start (class 10, method 10)"
    );
    assert_eq!(payload[size], 0xCE, "frame end");
    drop(stream);

    let status = broker.ctl(&["status"]).await;
    assert!(
        status.contains(broker.node()),
        "status names the node:\n{status}"
    );
    assert_eq!(broker.queue_messages("nope").await, None);
    // A queue (with a space in its name) declared through the node itself: counted as 0.
    broker
        .ctl(&[
            "eval",
            r#"rabbit_amqqueue:declare(rabbit_misc:r(<<"/">>, queue, <<"q one">>), true, false, [], none, <<"offboard-test">>)."#,
        ])
        .await;
    assert_eq!(broker.queue_messages("q one").await, Some(0));
    assert_eq!(broker.queue_messages("q").await, None);

    // Only loopback: the AMQP port is not reachable on other addresses.
    let listeners = broker.ctl(&["status", "--formatter", "json"]).await;
    let listeners: serde_json::Value = serde_json::from_str(&listeners).unwrap();
    for listener in listeners["listeners"].as_array().unwrap() {
        assert_eq!(listener["interface"], "127.0.0.1", "{listener}");
    }
}

#[tokio::test]
async fn a_restarted_node_answers_on_the_same_port_with_its_data() {
    let mut broker = Broker::start().await;
    let (port, url) = (broker.port(), broker.url());
    broker.ctl(&["add_vhost", "kept"]).await;

    broker.stop().await;
    assert!(!amqp_answers(port).await, "a stopped node does not answer");

    broker.restart().await;
    assert_eq!(broker.url(), url);
    assert!(amqp_answers(port).await);
    let vhosts = broker.ctl(&["list_vhosts", "--silent"]).await;
    assert!(vhosts.lines().any(|l| l == "kept"), "data kept:\n{vhosts}");
}

#[tokio::test]
async fn two_nodes_run_side_by_side() {
    let (a, b) = tokio::join!(Broker::start(), Broker::start());
    assert_ne!(a.node(), b.node());
    assert_ne!(a.port(), b.port());
    assert!(amqp_answers(a.port()).await);
    assert!(amqp_answers(b.port()).await);
    a.ctl(&["add_vhost", "only-a"]).await;
    assert!(!b.ctl(&["list_vhosts", "--silent"]).await.contains("only-a"));
    drop(a);
    assert!(
        amqp_answers(b.port()).await,
        "stopping one leaves the other"
    );
}
