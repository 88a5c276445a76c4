//! Real Redis Clusters for the tests: `primaries` primaries (with `replicas` replicas each),
//! slots split evenly, joined with CLUSTER MEET and ready (`cluster_state:ok` on every node)
//! before the test sees them.

use std::time::{Duration, Instant};

use crate::{free_port, Config, Server, Version};

/// A running cluster; every node stops when dropped.
pub struct Cluster {
    /// Every node, primaries first (as started; roles change after a failover).
    pub nodes: Vec<Server>,
}

impl Cluster {
    /// A cluster of `primaries` × (1 + `replicas`) Redis 7.0 nodes, each started with `args`
    /// too (e.g. `--notify-keyspace-events KA`).
    pub fn start(primaries: usize, replicas: usize, args: &[&str]) -> Cluster {
        Self::with(Version::Redis7, primaries, replicas, args)
    }

    /// Like [`Cluster::start`], of `version` nodes (e.g. Valkey 9.1 with
    /// `--cluster-databases 4`).
    pub fn with(version: Version, primaries: usize, replicas: usize, args: &[&str]) -> Cluster {
        let total = primaries * (1 + replicas);
        let nodes: Vec<Server> = (0..total)
            .map(|_| {
                let mut node_args: Vec<String> = [
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                node_args.push(free_port().to_string());
                node_args.extend(args.iter().map(|s| s.to_string()));
                Server::with(Config {
                    version,
                    args: node_args,
                    ..Config::default()
                })
            })
            .collect();
        let cluster = Cluster { nodes };
        let per = 16384 / primaries;
        for (i, node) in cluster.nodes[..primaries].iter().enumerate() {
            let first = i * per;
            let last = if i + 1 == primaries {
                16383
            } else {
                first + per - 1
            };
            let reply = node.cmd(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ]);
            assert_eq!(reply, "+OK", "ADDSLOTSRANGE on {}", node.port);
        }
        let first = &cluster.nodes[0];
        for node in &cluster.nodes[1..] {
            let bus = node.config.args[node
                .config
                .args
                .iter()
                .position(|a| a == "--cluster-port")
                .unwrap()
                + 1]
            .clone();
            let reply = first.cmd(&["CLUSTER", "MEET", "127.0.0.1", &node.port.to_string(), &bus]);
            assert_eq!(reply, "+OK", "CLUSTER MEET {}", node.port);
        }
        cluster.wait(
            |n| n.cmd(&["CLUSTER", "NODES"]).lines().count() == total,
            "every node to know every other",
        );
        for r in 0..replicas {
            for p in 0..primaries {
                let replica = &cluster.nodes[primaries + r * primaries + p];
                let id = cluster.nodes[p].cmd(&["CLUSTER", "MYID"]);
                let reply = replica.cmd(&["CLUSTER", "REPLICATE", &id]);
                assert_eq!(reply, "+OK", "CLUSTER REPLICATE on {}", replica.port);
            }
        }
        cluster.wait(
            |n| n.cmd(&["CLUSTER", "INFO"]).contains("cluster_state:ok"),
            "cluster_state:ok",
        );
        cluster.wait(
            |n| {
                let info = n.cmd(&["INFO", "replication"]);
                info.contains("role:master") || info.contains("master_link_status:up")
            },
            "replicas to sync",
        );
        cluster.wait(
            |n| n.cmd(&["CLUSTER", "SHARDS"]).matches("master").count() == primaries,
            "every node to agree on the primaries",
        );
        cluster
    }

    fn wait(&self, ready: impl Fn(&Server) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.nodes.iter().all(&ready) {
            assert!(Instant::now() < deadline, "cluster: waited 30s for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The URL ferry is given: any node (the first one).
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// The nodes that are primaries now.
    pub fn primaries(&self) -> Vec<&Server> {
        self.nodes
            .iter()
            .filter(|n| n.cmd(&["INFO", "replication"]).contains("role:master"))
            .collect()
    }

    /// The nodes that are replicas now.
    pub fn replicas(&self) -> Vec<&Server> {
        self.nodes
            .iter()
            .filter(|n| n.cmd(&["INFO", "replication"]).contains("role:slave"))
            .collect()
    }

    /// Runs a command on every primary (e.g. FLUSHALL), returning the replies.
    pub fn on_primaries(&self, args: &[&str]) -> Vec<String> {
        self.primaries().iter().map(|n| n.cmd(args)).collect()
    }

    /// Keys held by all primaries together.
    pub fn dbsize(&self) -> u64 {
        self.on_primaries(&["DBSIZE"])
            .iter()
            .map(|r| r.trim_start_matches(':').parse::<u64>().unwrap_or(0))
            .sum()
    }
}
