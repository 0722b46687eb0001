// examples/train/cuda.cu — the GPU half of train_gpt2: the trainer of examples/train_gpt2.hpp
// instantiated for ra::nn::CudaGPT2<T> (the GPT-2 model on the CUDA backend) and ra::cuda::AdamW
// (compiled by nvcc, without the CPU backend; examples/CMakeLists.txt adds it to train_gpt2 in
// builds with CUDA).
#include <string>

#include <ra/nn/gpt2_cuda.cuh>

#include "../train_gpt2.hpp"

namespace train_gpt2 {

int train_on_cuda(const Options& o, const ra::nn::Tokenizer& tok) {
  if (o.precision == "bf16") return train<ra::nn::CudaGPT2<ra::bf16>>(o, tok);
  if (o.precision == "fp32") return train<ra::nn::CudaGPT2<float>>(o, tok);
  throw ra::error("train_gpt2: --precision '" + o.precision + "', expected bf16 or fp32");
}

}  // namespace train_gpt2
