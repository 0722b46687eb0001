// examples/generation/cuda.cu — the GPU half of examples/generate: the generation loop of
// examples/generation/run.hpp on nn::CudaGPT2<T> (the GPT-2 model on the CUDA backend, decode
// steps replayed as CUDA graphs), compiled by nvcc without the CPU backend;
// examples/CMakeLists.txt adds it to generate in builds with CUDA.
#include <cuda_runtime.h>

#include <string>

#include <ra/nn/gpt2_cuda.cuh>

#include "run.hpp"

namespace generation {

int cuda_device_count(std::string& why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    why = std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e);
    return 0;
  }
  if (n == 0) why = "cudaGetDeviceCount: 0 devices";
  return n;
}

int generate_on_cuda(const ra::nn::Checkpoint& ck, const ra::nn::Tokenizer& tok, const Options& o) {
  if (o.precision == "bf16") return run<ra::nn::CudaGPT2<ra::bf16>>(ck, tok, o);
  if (o.precision == "fp32") return run<ra::nn::CudaGPT2<float>>(ck, tok, o);
  throw ra::error(std::string(kProgram) + ": --precision '" + o.precision +
                  "', expected fp32 or bf16");
}

}  // namespace generation
