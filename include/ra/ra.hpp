// ra/ra.hpp — the host umbrella: core (views, dtypes, dispatch), expr (lazy nodes), the
// Eigen CPU backend and the nn layers. <ra/cuda.cuh> adds the GPU backend in CUDA units.
#pragma once

#include <ra/core.hpp>
#include <ra/cpu.hpp>
#include <ra/expr.hpp>
#include <ra/nn.hpp>
