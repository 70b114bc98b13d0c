//! vLLM's KV event stream (`--kv-events-config`): which blocks this replica's prefix cache
//! holds, published as they are stored and removed, so a cache-aware router (llm-d's precise
//! prefix-cache scorer) sends each prompt where its prefix already is.
//!
//! The blocks are named by the hash chain llm-d computes from prompts ([`block_hash`]); the
//! batches are vLLM's msgpack ([`encode`]) over a ZeroMQ PUB socket ([`publisher`]).

pub mod block_hash;
pub mod encode;
pub mod publisher;

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::block_digest::BlockDigest;
use super::pool_events::PoolEvent;
use crate::error::Result;
use encode::{KvEvent, encode_batch};
use publisher::Publisher;

/// vLLM's `KVEventsConfig`, as `--kv-events-config` takes it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct KvEventsConfig {
    pub enable_kv_cache_events: bool,
    /// `zmq` or `null`; unset: `zmq` when events are enabled.
    pub publisher: Option<String>,
    pub endpoint: String,
    pub replay_endpoint: Option<String>,
    pub buffer_steps: usize,
    pub hwm: usize,
    pub max_queue_size: usize,
    pub topic: String,
}

impl Default for KvEventsConfig {
    fn default() -> Self {
        Self {
            enable_kv_cache_events: false,
            publisher: None,
            endpoint: "tcp://*:5557".into(),
            replay_endpoint: None,
            buffer_steps: 10_000,
            hwm: 100_000,
            max_queue_size: 100_000,
            topic: String::new(),
        }
    }
}

impl KvEventsConfig {
    /// Parses the flag; `None` when it asks for no events.
    pub fn parse(json: &str) -> std::result::Result<Option<Self>, String> {
        let config: Self =
            serde_json::from_str(json).map_err(|e| format!("--kv-events-config: {e}"))?;
        let publisher = config.publisher.clone().unwrap_or_else(|| {
            if config.enable_kv_cache_events {
                "zmq"
            } else {
                "null"
            }
            .into()
        });
        match publisher.as_str() {
            "null" => return Ok(None),
            "zmq" => {}
            other => {
                return Err(format!(
                    "--kv-events-config: publisher {other:?}: only \"zmq\" and \"null\" exist"
                ));
            }
        }
        if !config.enable_kv_cache_events {
            return Ok(None);
        }
        if config.replay_endpoint.is_some() {
            return Err(
                "--kv-events-config: replay_endpoint is not supported; subscribers \
                        resynchronise from the AllBlocksCleared sent at start-up"
                    .into(),
            );
        }
        Ok(Some(config))
    }
}

/// Turns the pool's events into the stream's and publishes one batch a step.
pub struct KvEventSink {
    publisher: Publisher,
    init: u64,
    /// The stream's hash of every block the pool holds registered.
    hashes: HashMap<BlockDigest, u64>,
    block_size: usize,
    medium: &'static str,
}

impl KvEventSink {
    /// Starts the publisher and announces an empty cache (a restarted replica holds nothing
    /// its subscribers may remember). `medium` is vLLM's name for where the pool lives.
    pub fn start(config: &KvEventsConfig, block_size: usize, medium: &'static str) -> Result<Self> {
        let publisher = Publisher::start(&config.endpoint, &config.topic, config.max_queue_size)?;
        // vLLM reads its chain seed from PYTHONHASHSEED; llm-d is configured to match it.
        let seed = std::env::var("PYTHONHASHSEED").unwrap_or_default();
        let sink = Self {
            publisher,
            init: block_hash::init_hash(&seed),
            hashes: HashMap::new(),
            block_size,
            medium,
        };
        sink.send(&[KvEvent::AllBlocksCleared]);
        Ok(sink)
    }

    pub fn publish(&mut self, events: &[PoolEvent]) {
        let mut out = Vec::with_capacity(events.len());
        for event in events {
            match event {
                PoolEvent::Stored {
                    link,
                    tokens,
                    first,
                    salt,
                    ..
                } => {
                    let parent = if *first {
                        None
                    } else {
                        match self.hashes.get(&link.parent) {
                            Some(&p) => Some(p),
                            // Its parent was never announced: the block cannot be named.
                            None => continue,
                        }
                    };
                    let hash = block_hash::block_hash(
                        parent.unwrap_or(self.init),
                        tokens,
                        salt.as_deref(),
                    );
                    self.hashes.insert(link.digest, hash);
                    out.push(KvEvent::BlockStored {
                        hash,
                        parent,
                        tokens: tokens.clone(),
                    });
                }
                PoolEvent::Evicted { link, .. } => {
                    if let Some(hash) = self.hashes.remove(&link.digest) {
                        out.push(KvEvent::BlockRemoved { hash });
                    }
                }
            }
        }
        if !out.is_empty() {
            self.send(&out);
        }
    }

    fn send(&self, events: &[KvEvent]) {
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        self.publisher
            .publish(encode_batch(ts, events, self.block_size, self.medium));
    }
}
