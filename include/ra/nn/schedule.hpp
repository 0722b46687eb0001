// ra/nn/schedule.hpp — the learning-rate schedule: linear warmup, then cosine decay.
//
//   lr(s) = max_lr · (s + 1) / warmup                          s < warmup      (s from 0)
//         = min_lr + ½ (1 + cos(π r)) (max_lr − min_lr)         r = (s − warmup) / (total − warmup)
//         = min_lr                                              s >= total
// A run with a step or token budget knows `total`. A run with only a wall-clock budget does
// not: at_progress() takes the decay fraction r from the elapsed share of the budget instead
// (warmup still counts steps), so the schedule ends with the budget whatever the throughput.
#pragma once

#include <algorithm>
#include <cmath>
#include <numbers>

#include <ra/core/config.hpp>
#include <ra/core/error.hpp>

namespace ra::nn {

/// Warmup + cosine learning rate. min_lr defaults to max_lr / 10 (nanoGPT's choice).
struct CosineSchedule {
  double max_lr = 6e-4;
  double min_lr = 6e-5;
  index_t warmup = 0;  // steps of linear warmup
  index_t total = 1;   // steps until min_lr

  /// Throws ra::error naming a value outside its range.
  void validate(const char* where = "nn::CosineSchedule") const {
    require_arg(max_lr > 0.0, where, "max_lr", max_lr, "a positive learning rate");
    require_arg(min_lr >= 0.0 && min_lr <= max_lr, where, "min_lr", min_lr,
                ra::detail::concat("a value in [0, max_lr = ", max_lr, "]"));
    require_arg(warmup >= 0, where, "warmup", warmup, "a non-negative step count");
    require_arg(total >= 1, where, "total", total, "a positive step count");
  }

  /// The learning rate of step s (0-based).
  double at(index_t s) const {
    if (s < warmup) return max_lr * static_cast<double>(s + 1) / static_cast<double>(warmup);
    if (s >= total) return min_lr;
    const double r = static_cast<double>(s - warmup) / static_cast<double>(total - warmup);
    return decay(r);
  }

  /// The learning rate of step s when the decay follows the elapsed share `progress` of a
  /// wall-clock budget (clamped to [0, 1]) instead of steps.
  double at_progress(index_t s, double progress) const {
    if (s < warmup) return max_lr * static_cast<double>(s + 1) / static_cast<double>(warmup);
    return decay(std::clamp(progress, 0.0, 1.0));
  }

 private:
  double decay(double r) const {
    return min_lr + 0.5 * (1.0 + std::cos(std::numbers::pi * r)) * (max_lr - min_lr);
  }
};

}  // namespace ra::nn
