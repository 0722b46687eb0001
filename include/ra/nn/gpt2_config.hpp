// ra/nn/gpt2_config.hpp — the GPT-2 configuration, parameter table, initialisation and gate
// statistics of ra/model/gpt2_config.hpp under the nn layer's names (nn::GPT2Config, ...).
#pragma once

#include <ra/model/gpt2_config.hpp>
#include <ra/nn/dropout.hpp>

namespace ra::nn {

using model::Arm;
using model::gpt2_gate_stats;
using model::gpt2_layout;
using model::gpt2_parameter_count;
using model::GPT2Config;
using model::GPT2LayerSlots;
using model::GPT2Layout;
using model::init_gpt2_parameters;
using model::LayerGateStats;
using model::name;
using model::padded_vocab;
using model::ParameterInfo;
using model::parse_arm;
using model::parse_gate_mode;
using model::parse_gate_param;
using model::Summary;

}  // namespace ra::nn
