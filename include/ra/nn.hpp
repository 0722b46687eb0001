// ra/nn.hpp — layers built from the nodes: the attention block (baseline or RA), LayerNorm,
// MLP, embeddings, the tied LM head with cross-entropy, dropout; the GPT-2 model; AdamW and
// the learning-rate schedule; the byte tokenizer, token files and the batch loader;
// checkpoints and the shared training step.
#pragma once

#include <ra/nn/adamw.hpp>
#include <ra/nn/attention_block.hpp>
#include <ra/nn/checkpoint.hpp>
#include <ra/nn/cross_entropy.hpp>
#include <ra/nn/data.hpp>
#include <ra/nn/dropout.hpp>
#include <ra/nn/embedding.hpp>
#include <ra/nn/gpt2.hpp>
#include <ra/nn/gpt2_config.hpp>
#include <ra/nn/gpt2_model.hpp>
#include <ra/nn/layernorm.hpp>
#include <ra/nn/mlp.hpp>
#include <ra/nn/schedule.hpp>
#include <ra/nn/tokenizer.hpp>
