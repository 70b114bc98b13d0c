//! What the engine serves: the limits and model facts the API layer and the request checks read.

/// What the engine serves, for the API layer (limits, model facts).
#[derive(Debug, Clone)]
pub struct EngineInfo {
    pub max_model_len: usize,
    pub vocab_size: usize,
    /// Width of the final hidden state (what a pooling request returns).
    pub hidden_size: usize,
    pub num_blocks: usize,
    pub block_size: usize,
    pub eos_ids: Vec<u32>,
    /// Where the model runs, as `cpu` or `cuda:N` ([`crate::device::describe`]).
    pub device: String,
    /// The attention backend `auto` resolved to.
    pub attention_backend: String,
}
