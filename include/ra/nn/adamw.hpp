// ra/nn/adamw.hpp — the optimizer names of the nn layer: the configuration types of
// ra/model/adamw.hpp and the host optimizer ra::cpu::AdamW (ra/cpu/adamw.hpp) as nn::AdamW.
// The GPU optimizer is ra::cuda::AdamW (ra/cuda/adamw.cuh); a GPT-2 model steps either one
// through GPT2Model::step(optimizer, lr).
#pragma once

#include <ra/cpu/adamw.hpp>
#include <ra/model/adamw.hpp>

namespace ra::nn {

using model::AdamWConfig;
using model::AdamWStep;
using model::decay_mask;
using model::name;
using model::OptimizerKind;
using model::parse_optimizer_kind;
using model::SpamConfig;
using model::SpamPhase;
/// AdamW (or AdamW with SPAM) on the host, in double per element.
using AdamW = cpu::AdamW;

}  // namespace ra::nn
