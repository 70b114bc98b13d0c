//! vLLM's KV event batch on the wire: msgpack, as its `msgspec` structs encode with
//! `array_like=True` and tagged events (what vLLM's example subscriber and llm-d's indexer
//! decode): `[ts, [event…], data_parallel_rank]`, each event `[tag, fields…]`:
//! `["BlockStored", [hash], parent_hash | nil, [token…], block_size, lora_id (nil), medium]`,
//! `["BlockRemoved", [hash], medium]`, `["AllBlocksCleared"]`.

use rmp::encode::{write_array_len, write_f64, write_nil, write_str, write_uint};

/// One event, with the stream's block hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvEvent {
    BlockStored {
        hash: u64,
        parent: Option<u64>,
        tokens: Vec<u32>,
    },
    BlockRemoved {
        hash: u64,
    },
    AllBlocksCleared,
}

/// The msgpack payload of one batch.
pub fn encode_batch(ts: f64, events: &[KvEvent], block_size: usize, medium: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + events.len() * 96);
    // Writing into a Vec cannot fail.
    let _ = write_batch(&mut out, ts, events, block_size, medium);
    out
}

fn write_batch(
    out: &mut Vec<u8>,
    ts: f64,
    events: &[KvEvent],
    block_size: usize,
    medium: &str,
) -> std::io::Result<()> {
    write_array_len(out, 3)?;
    write_f64(out, ts)?;
    write_array_len(out, events.len() as u32)?;
    for event in events {
        match event {
            KvEvent::BlockStored {
                hash,
                parent,
                tokens,
            } => {
                write_array_len(out, 7)?;
                write_str(out, "BlockStored")?;
                write_array_len(out, 1)?;
                write_uint(out, *hash)?;
                match parent {
                    Some(p) => {
                        write_uint(out, *p)?;
                    }
                    None => write_nil(out)?,
                }
                write_array_len(out, tokens.len() as u32)?;
                for &t in tokens {
                    write_uint(out, u64::from(t))?;
                }
                write_uint(out, block_size as u64)?;
                write_nil(out)?; // lora_id
                write_str(out, medium)?;
            }
            KvEvent::BlockRemoved { hash } => {
                write_array_len(out, 3)?;
                write_str(out, "BlockRemoved")?;
                write_array_len(out, 1)?;
                write_uint(out, *hash)?;
                write_str(out, medium)?;
            }
            KvEvent::AllBlocksCleared => {
                write_array_len(out, 1)?;
                write_str(out, "AllBlocksCleared")?;
            }
        }
    }
    // data_parallel_rank: one engine, rank 0.
    write_uint(out, 0)?;
    Ok(())
}
