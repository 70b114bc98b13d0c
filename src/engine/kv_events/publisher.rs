//! The ZeroMQ side of the KV event stream: a thread of its own (with a small tokio runtime for
//! the socket) that sends each batch as vLLM does, a multipart message of topic, sequence
//! number (8 bytes, big-endian) and msgpack payload. The engine hands batches over a bounded
//! queue and never waits: when subscribers cannot keep up and the queue is full, batches are
//! dropped and counted (the sequence numbers show the gap, as with vLLM's high-water mark).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{Receiver, Sender, channel};

use bytes::Bytes;
use zeromq::{Socket, SocketSend, ZmqMessage};

use crate::error::{Error, Result};

pub struct Publisher {
    queue: Sender<Vec<u8>>,
    dropped: AtomicU64,
}

impl Publisher {
    /// Binds (an endpoint with `*`, as vLLM decides) or connects a PUB socket to `endpoint`
    /// and starts the sending thread. Fails if the socket cannot be set up.
    pub fn start(endpoint: &str, topic: &str, max_queue: usize) -> Result<Self> {
        let (queue, batches) = channel::<Vec<u8>>(max_queue.max(1));
        let (ready_tx, ready_rx) = sync_channel::<std::result::Result<(), String>>(1);
        let endpoint = endpoint.to_string();
        let topic = Bytes::from(topic.as_bytes().to_vec());
        std::thread::Builder::new()
            .name("kv-events".into())
            .spawn(move || send_loop(&endpoint, topic, batches, ready_tx))
            .map_err(|e| Error::config(format!("kv events: no thread: {e}")))?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                queue,
                dropped: AtomicU64::new(0),
            }),
            Ok(Err(why)) => Err(Error::config(format!("--kv-events-config: {why}"))),
            Err(_) => Err(Error::config("--kv-events-config: the publisher stopped")),
        }
    }

    /// Queues one batch's payload; drops it when the queue is full.
    pub fn publish(&self, payload: Vec<u8>) {
        match self.queue.try_send(payload) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        dropped = n,
                        "KV events: subscribers are behind; batches dropped"
                    );
                }
            }
            Err(TrySendError::Closed(_)) => {}
        }
    }
}

fn send_loop(
    endpoint: &str,
    topic: Bytes,
    mut batches: Receiver<Vec<u8>>,
    ready: SyncSender<std::result::Result<(), String>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return;
        }
    };
    runtime.block_on(async move {
        let mut socket = zeromq::PubSocket::new();
        let opened = if binds(endpoint) {
            socket
                .bind(&endpoint.replace('*', "0.0.0.0"))
                .await
                .map(|_| ())
        } else {
            socket.connect(endpoint).await
        };
        if let Err(e) = opened {
            let _ = ready.send(Err(format!("{endpoint}: {e}")));
            return;
        }
        let _ = ready.send(Ok(()));
        tracing::info!(endpoint, "KV events: publishing");
        let mut seq = 0u64;
        // The engine's end of the queue closes when the engine stops.
        while let Some(payload) = batches.recv().await {
            let frames = vec![
                topic.clone(),
                Bytes::copy_from_slice(&seq.to_be_bytes()),
                Bytes::from(payload),
            ];
            seq += 1;
            let Ok(message) = ZmqMessage::try_from(frames) else {
                continue;
            };
            if let Err(e) = socket.send(message).await {
                tracing::warn!(error = %e, "KV events: a batch was not sent");
            }
        }
    });
}

/// vLLM's rule: bind a wildcard, IPC or in-process endpoint; connect to anything else.
fn binds(endpoint: &str) -> bool {
    endpoint.contains('*')
        || endpoint.contains("::")
        || endpoint.starts_with("ipc://")
        || endpoint.starts_with("inproc://")
}
