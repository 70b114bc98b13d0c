//! Qwen3-MoE specifics: the synthetic MoE checkpoints are the bytes transformers ran on. The
//! forward pass against transformers (logits, greedy, chunked, batched = solo) is in
//! model_parity.rs, which runs every shape.

use crate::common;

use common::*;
use sha2::Digest;

#[test]
fn generated_moe_weights_are_the_ones_the_reference_ran_on() {
    for shape in ["moe-tiny", "moe-tiny-b"] {
        let recorded = &model_fixtures(shape).weights_sha256;
        assert!(!recorded.is_empty(), "{shape}: no recorded digests");
        let dir = checkpoint_dir(shape);
        for (file, want) in recorded {
            let bytes = std::fs::read(dir.join(file)).unwrap();
            let got: String = sha2::Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(&got, want, "{shape}/{file}");
        }
    }
}
