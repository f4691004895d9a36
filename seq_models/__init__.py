"""Sequence models: LOCOST (state-space encoder-decoder for very long inputs).

- ``s4d``: the S4D-Lin kernel (ZOH), chunked over the length, its explicit reference
  and the step-by-step recurrence;
- ``bidirectional_conv``: the bidirectional convolution through one FFT of size
  ``>= 2L`` (any ``L``), its overlap-add form and the direct ``O(L^2)`` reference;
- ``ssm_block``: the gated bidirectional SSM block; ``t5``: RMSNorm, gated-GELU
  feed-forward, relative-position attention, the T5 decoder (and a full-attention T5
  encoder as baseline); ``generation``: greedy and beam search under ``jax.jit``;
- ``locost``: the LOCOST model and its presets; ``long_encoding``: the encoder on
  million-token inputs in bounded memory; ``locost_job``: gap-sentence
  pretraining and summarization fine-tuning on the shared harness;
- ``tokenizer`` (SentencePiece), ``summarization`` (offline documentation
  summarization data), ``rouge`` (ROUGE and the lead-k / random baselines),
  ``gap_sentences`` (the pretraining objective);
- ``chain_causal``: chain-and-causal attention (ChaCAL), its blocked solve, decode step
  and explicit-inverse reference;
- SCOPE: ``generation.noisy_sample`` (noisy decoding), ``preference`` (DPO loss, sequence
  log-probabilities), ``decoder_lm`` (a decoder-only LM), ``data_to_text`` and
  ``faithfulness`` (a task whose hallucinations are counted exactly), ``scope_job``.
"""

from seq_models.bidirectional_conv import (
    bidirectional_conv,
    bidirectional_conv_chunked,
    bidirectional_conv_direct,
)
from seq_models.chain_causal import ChainCausalAttention, chain_causal_attention
from seq_models.decoder_lm import DecoderLM, DecoderLMConfig
from seq_models.generation import beam_search, greedy_search, noisy_sample, sample
from seq_models.locost import LOCOST, LOCOSTConfig, count_parameters, locost_config
from seq_models.long_encoding import encode_in_blocks, encoder_layer_in_blocks
from seq_models.preference import dpo_loss, sequence_logps
from seq_models.s4d import s4d_kernel, s4d_kernel_reference, ssm_recurrence
from seq_models.ssm_block import SSMBlock
from seq_models.t5 import T5Decoder, T5Encoder
from seq_models.tokenizer import Tokenizer, train_tokenizer

__all__ = [
    "ChainCausalAttention",
    "DecoderLM",
    "DecoderLMConfig",
    "LOCOST",
    "LOCOSTConfig",
    "SSMBlock",
    "T5Decoder",
    "T5Encoder",
    "Tokenizer",
    "beam_search",
    "bidirectional_conv",
    "bidirectional_conv_chunked",
    "bidirectional_conv_direct",
    "chain_causal_attention",
    "count_parameters",
    "dpo_loss",
    "encode_in_blocks",
    "encoder_layer_in_blocks",
    "greedy_search",
    "locost_config",
    "noisy_sample",
    "s4d_kernel",
    "s4d_kernel_reference",
    "sample",
    "sequence_logps",
    "ssm_recurrence",
    "train_tokenizer",
]
