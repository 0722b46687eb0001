// ra/nn/dropout.hpp — nn::Dropout and nn::mix64: the counter-based dropout of
// ra/model/dropout.hpp under the nn layer's names.
#pragma once

#include <ra/model/dropout.hpp>

namespace ra::nn {

using model::Dropout;
using model::mix64;

}  // namespace ra::nn
