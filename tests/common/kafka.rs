//! A real Kafka-protocol broker for the tests: tansu (crates.io) with SQLite storage, started in
//! a scratch directory on a free port and killed on drop; topics created with its CLI, records
//! produced and read back with rdkafka.
//!
//! The binary: `EVFLOW_TANSU`, else `tansu` on `PATH`, else `~/.cargo/bin/tansu`. Missing, the
//! tests fail (they are never skipped): `.ci/run` installs it.
#![allow(dead_code)]

use std::fs::File;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

/// Where the tansu binary is.
pub fn tansu_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("EVFLOW_TANSU") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("tansu");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    if let Some(home) = std::env::var_os("HOME") {
        let candidate = Path::new(&home).join(".cargo/bin/tansu");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "the Kafka tests need the tansu broker, which is not installed: `.ci/run` installs it \
         (`cargo install tansu --locked --features dynostore,libsql`, ~16 min), or set \
         EVFLOW_TANSU to its path"
    );
}

/// A running tansu broker.
pub struct Broker {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

impl Broker {
    /// Starts tansu in `dir` (a fresh directory: its SQLite file lives there).
    pub fn start(dir: &Path) -> Broker {
        std::fs::create_dir_all(dir).unwrap();
        let mut last_error = String::new();
        for attempt in 0..5 {
            match Self::spawn(dir, free_port(), attempt) {
                Ok(b) => return b,
                Err(e) => last_error = e,
            }
        }
        panic!("cannot start tansu: {last_error}");
    }

    /// Stops the broker (SIGKILL); its data stays in its directory.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the broker again on the same port, with the same data.
    pub fn restart(&mut self) {
        let mut last_error = String::new();
        for attempt in 10..40 {
            match Self::spawn(&self.dir, self.port, attempt) {
                Ok(b) => {
                    // The old child is already reaped: dropping it does nothing more.
                    drop(std::mem::replace(self, b));
                    return;
                }
                Err(e) => last_error = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("cannot restart tansu on port {}: {last_error}", self.port);
    }

    fn spawn(dir: &Path, port: u16, attempt: u32) -> Result<Broker, String> {
        let bin = tansu_binary();
        {
            let url = format!("tcp://127.0.0.1:{port}");
            let log = dir.join(format!("tansu-{attempt}.log"));
            let out = File::create(&log).unwrap();
            let err = out.try_clone().unwrap();
            let mut child = Command::new(&bin)
                .current_dir(dir)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                    // Relative: tansu mangles an absolute path.
                    "--storage-engine",
                    "sqlite://tansu.db",
                ])
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "tansu exited ({status}) on port {port}: {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    ));
                }
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    // Still ours (not another process that took the port meanwhile)?
                    std::thread::sleep(Duration::from_millis(100));
                    if let Ok(None) = child.try_wait() {
                        return Ok(Broker {
                            child,
                            port,
                            dir: dir.to_path_buf(),
                        });
                    }
                    continue;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("tansu did not listen on {port} within 30 s"));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `kafka://…` input URL for a topic.
    pub fn url(&self, topic: &str, query: &str) -> String {
        format!("kafka://{}/{topic}?{query}", self.addr())
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(tansu_binary())
            .current_dir(&self.dir)
            .args([
                "topic",
                "create",
                name,
                "--broker",
                &format!("tcp://{}", self.addr()),
                "--partitions",
                &partitions.to_string(),
            ])
            .output()
            .expect("run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {name}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Produces `(key, value, timestamp ms)` records (the partition chosen by the key's hash)
    /// and waits until all are acknowledged.
    pub fn produce<'a>(
        &self,
        topic: &str,
        records: impl IntoIterator<Item = (Option<&'a str>, &'a [u8], Option<i64>)>,
    ) -> usize {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .set("linger.ms", "50")
            .set("batch.num.messages", "5000")
            .create()
            .expect("producer");
        let mut n = 0;
        for (key, value, ts) in records {
            let mut r = BaseRecord::<str, [u8]>::to(topic).payload(value);
            if let Some(k) = key {
                r = r.key(k);
            }
            if let Some(t) = ts {
                r = r.timestamp(t);
            }
            loop {
                match producer.send(r) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        r = back;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => panic!("produce to {topic}: {e}"),
                }
            }
            producer.poll(Duration::ZERO);
            n += 1;
        }
        producer
            .flush(Duration::from_secs(120))
            .expect("flush the test producer");
        n
    }

    /// Produces envelope lines keyed by their charge point id.
    pub fn produce_envelopes(&self, topic: &str, text: &str) -> usize {
        let keyed: Vec<(String, &str)> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("an envelope line");
                let cp = v["charge_point_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (cp, l)
            })
            .collect();
        self.produce(
            topic,
            keyed
                .iter()
                .map(|(k, l)| (Some(k.as_str()), l.as_bytes(), None)),
        )
    }

    /// Every record of `topic`, from the beginning to its end, as `(partition, offset, key,
    /// value)`, in partition and offset order.
    pub fn read_all(&self, topic: &str) -> Vec<(i32, i64, Option<String>, String)> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.addr())
            .set("group.id", "evflow-tests-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .create()
            .expect("consumer");
        let md = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .expect("metadata");
        let partitions = md.topics()[0].partitions().len() as i32;
        assert!(partitions > 0, "topic {topic} has no partitions");
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(topic, p, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).expect("assign");
        let mut ended = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while (ended.len() as i32) < partitions {
            assert!(Instant::now() < deadline, "reading {topic} timed out");
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Ok(m)) => out.push((
                    m.partition(),
                    m.offset(),
                    m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                )),
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    ended.insert(p);
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
            }
        }
        out.sort();
        out
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
