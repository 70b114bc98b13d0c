//! vLLM's KV event stream from the engine: a ZeroMQ subscriber receives BlockStored events whose
//! tokens are the prompt's blocks and whose hashes are the chain llm-d's indexer computes from
//! the prompt (so its scorer finds them), and BlockRemoved events for exactly the blocks the
//! pool evicted.

use std::time::{Duration, Instant};

use rmpv::Value;
use tealight::engine::kv_events::KvEventsConfig;
use tealight::engine::kv_events::block_hash::{block_hash, init_hash};
use tealight::engine::{EngineHandle, GenerationRequest};
use tealight::sampling::SamplingParams;
use zeromq::{Socket, SocketRecv};

use crate::common::{collect, start_engine};

const BLOCK: usize = 16;

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Stored {
        hash: u64,
        parent: Option<u64>,
        tokens: Vec<u32>,
    },
    Removed(u64),
    Cleared,
}

fn uint(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("an unsigned integer, got {v:?}"))
}

/// One batch's events, checked against vLLM's array-like layout.
fn decode(payload: &[u8]) -> Vec<Seen> {
    let batch = rmpv::decode::read_value(&mut &payload[..]).unwrap();
    let parts = batch.as_array().expect("a batch is an array");
    assert_eq!(parts.len(), 3, "[ts, events, data_parallel_rank]");
    assert!(parts[0].as_f64().unwrap() > 1.7e9, "a Unix timestamp");
    assert_eq!(uint(&parts[2]), 0);
    parts[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            let fields = event.as_array().unwrap();
            match fields[0].as_str().unwrap() {
                "BlockStored" => {
                    assert_eq!(fields.len(), 7);
                    let hashes = fields[1].as_array().unwrap();
                    assert_eq!(hashes.len(), 1);
                    assert_eq!(uint(&fields[4]) as usize, BLOCK);
                    assert!(fields[5].is_nil(), "no LoRA");
                    assert_eq!(fields[6].as_str(), Some("CPU"));
                    Seen::Stored {
                        hash: uint(&hashes[0]),
                        parent: (!fields[2].is_nil()).then(|| uint(&fields[2])),
                        tokens: fields[3]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|t| uint(t) as u32)
                            .collect(),
                    }
                }
                "BlockRemoved" => {
                    assert_eq!(fields.len(), 3);
                    assert_eq!(fields[2].as_str(), Some("CPU"));
                    Seen::Removed(uint(&fields[1].as_array().unwrap()[0]))
                }
                "AllBlocksCleared" => Seen::Cleared,
                other => panic!("unknown event {other}"),
            }
        })
        .collect()
}

/// What llm-d's indexer computes for a prompt: one hash per full block.
fn llm_d_keys(tokens: &[u32]) -> Vec<u64> {
    let seed = std::env::var("PYTHONHASHSEED").unwrap_or_default();
    let mut parent = init_hash(&seed);
    tokens
        .chunks_exact(BLOCK)
        .map(|chunk| {
            parent = block_hash(parent, chunk, None);
            parent
        })
        .collect()
}

fn run(engine: &EngineHandle, prompt: &[u32]) {
    let mut request = GenerationRequest::new(prompt.to_vec(), SamplingParams::greedy());
    request.max_tokens = Some(4);
    request.ignore_eos = true;
    collect(engine.submit(request).unwrap());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn a_subscriber_sees_stored_and_removed_blocks_as_llm_d_names_them() {
    let port = free_port();
    let config = KvEventsConfig::parse(&format!(
        r#"{{"enable_kv_cache_events": true, "publisher": "zmq",
            "endpoint": "tcp://*:{port}", "topic": "kv@pod-a@tiny"}}"#
    ))
    .unwrap()
    .unwrap();
    let (engine, tok) = start_engine(|c| {
        c.num_blocks = 24;
        c.max_model_len = 24 * BLOCK;
        c.max_num_batched_tokens = 128;
        c.kv_events = Some(config);
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut sub = zeromq::SubSocket::new();
    runtime.block_on(async {
        sub.connect(&format!("tcp://127.0.0.1:{port}"))
            .await
            .unwrap();
        sub.subscribe("kv@").await.unwrap();
        // A PUB socket drops what it sends before the subscription reaches it.
        tokio::time::sleep(Duration::from_millis(500)).await;
    });

    let prompt = |text: &str| {
        let mut ids = tok.encode(&text.repeat(40), false).unwrap();
        ids.truncate(300);
        ids
    };
    let a = prompt("The archive keeps every letter the harbour master wrote. ");
    let b = prompt("Rain fell on the orchard while the beekeeper counted hives. ");
    run(&engine, &a);
    run(&engine, &b); // takes most of A's blocks

    // Everything published for these two requests.
    let mut seen = Vec::new();
    let mut last_seq = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    runtime.block_on(async {
        while Instant::now() < deadline {
            let Ok(Ok(message)) =
                tokio::time::timeout(Duration::from_millis(700), sub.recv()).await
            else {
                break;
            };
            let frames = message.into_vec();
            assert_eq!(frames.len(), 3, "topic, sequence, payload");
            assert_eq!(&frames[0][..], b"kv@pod-a@tiny");
            let seq = u64::from_be_bytes(frames[1][..].try_into().unwrap());
            if let Some(last) = last_seq {
                assert_eq!(seq, last + 1, "no batch lost");
            }
            last_seq = Some(seq);
            seen.extend(decode(&frames[2]));
        }
    });

    let stored: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            Seen::Stored {
                hash,
                parent,
                tokens,
            } => Some((*hash, *parent, tokens.clone())),
            _ => None,
        })
        .collect();
    let removed: Vec<u64> = seen
        .iter()
        .filter_map(|e| match e {
            Seen::Removed(h) => Some(*h),
            _ => None,
        })
        .collect();

    // A's 18 full prompt blocks (the 19th holds generated tokens too), named as llm-d names
    // them, each after its parent, with the prompt's own tokens.
    for (session, ids) in [("A", &a), ("B", &b)] {
        let keys = llm_d_keys(&ids[..18 * BLOCK]);
        for (i, key) in keys.iter().enumerate() {
            let Some((_, parent, tokens)) = stored.iter().find(|(h, ..)| h == key) else {
                panic!("{session}: block {i} was never announced");
            };
            assert_eq!(
                tokens[..],
                ids[i * BLOCK..(i + 1) * BLOCK],
                "{session} block {i}"
            );
            let want_parent = (i > 0).then(|| keys[i - 1]);
            assert_eq!(*parent, want_parent, "{session} block {i}");
        }
    }
    // B needed 19 blocks of a 24-block pool that A had filled: A's blocks went, and each
    // removal names a block announced before.
    let a_keys = llm_d_keys(&a[..18 * BLOCK]);
    let b_keys = llm_d_keys(&b[..18 * BLOCK]);
    for hash in &removed {
        assert!(
            stored.iter().any(|(h, ..)| h == hash),
            "a removal of a block never stored"
        );
        assert!(!b_keys.contains(hash), "B evicts A's blocks, never its own");
    }
    let a_removed = removed.iter().filter(|h| a_keys.contains(h)).count();
    assert!(a_removed >= 10, "A's evicted blocks: {a_removed}");
    drop(engine);
}
